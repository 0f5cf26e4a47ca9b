//! Where the processes of a job meet: rank 0 listens on `MASTER_ADDR:MASTER_PORT`, every other
//! rank connects (retrying while rank 0 starts) and says who it is and which job it runs; rank 0
//! checks that the ranks are distinct, agree on the world size and run the same job (a fingerprint
//! of the resolved config), then lets all of them in at once. A rank that is refused, or that no
//! rank 0 answers within the timeout, gets an error saying why; no process waits forever.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use swiattn_core::{Error, Result};

use super::World;
use super::group::{Group, Link};

/// What a rank tells rank 0 when it connects.
#[derive(Serialize, Deserialize)]
struct Hello {
    protocol: String,
    rank: usize,
    size: usize,
    job: String,
}

/// Rank 0's answer: in, or refused with the reason.
#[derive(Serialize, Deserialize)]
struct Answer {
    refused: Option<String>,
}

const PROTOCOL: &str = concat!("swiattn-rendezvous/1 ", env!("CARGO_PKG_VERSION"));
/// Longest hello or answer accepted (anything longer is not one of ours).
const MAX_MESSAGE: u64 = 64 * 1024;

/// Timeouts of a job: how long the ranks wait for each other to start, and how long a collective
/// waits for a silent rank.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub rendezvous: Duration,
    pub collective: Duration,
}

impl Timeouts {
    /// `SWIATTN_RENDEZVOUS_TIMEOUT` and `SWIATTN_COLLECTIVE_TIMEOUT` (seconds; defaults 300 and
    /// 1,800: a collective also waits out rank 0's held-out evaluations and checkpoints).
    pub fn from_env() -> Result<Timeouts> {
        let seconds = |name: &str, default: u64| -> Result<Duration> {
            match std::env::var(name) {
                Err(_) => Ok(Duration::from_secs(default)),
                Ok(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|&s| s > 0)
                    .map(Duration::from_secs)
                    .ok_or_else(|| Error::Invalid(format!("{name}={v:?}: a positive number of seconds"))),
            }
        };
        Ok(Timeouts {
            rendezvous: seconds("SWIATTN_RENDEZVOUS_TIMEOUT", 300)?,
            collective: seconds("SWIATTN_COLLECTIVE_TIMEOUT", 1800)?,
        })
    }
}

/// Join the job of `world`. `job` fingerprints what every rank must agree on (the resolved config).
pub fn join(world: &World, job: &str, timeouts: Timeouts) -> Result<Group> {
    let links = match world.rank {
        0 => host(world, job, timeouts.rendezvous)?,
        _ => vec![visit(world, job, timeouts.rendezvous)?],
    };
    Group::new(world.rank, world.size, links, timeouts.collective)
}

/// Rank 0: accept the other `size − 1` ranks, check them, and let them in together.
fn host(world: &World, job: &str, timeout: Duration) -> Result<Vec<Link>> {
    let port = world.port;
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
        .map_err(|e| Error::Invalid(format!("rank 0 cannot listen on port {port} (MASTER_PORT): {e}")))?;
    listener.set_nonblocking(true).map_err(|e| Error::Invalid(format!("rank 0: port {port}: {e}")))?;
    let deadline = Instant::now() + timeout;
    let mut joined: Vec<Option<TcpStream>> = (0..world.size).map(|_| None).collect();
    while joined.iter().skip(1).any(Option::is_none) {
        let (mut stream, from) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    let missing: Vec<String> =
                        (1..world.size).filter(|&r| joined[r].is_none()).map(|r| r.to_string()).collect();
                    let refusal = format!(
                        "ranks {} did not join within {} s (SWIATTN_RENDEZVOUS_TIMEOUT)",
                        missing.join(", "),
                        timeout.as_secs()
                    );
                    refuse_all(&mut joined, &refusal);
                    return Err(Error::Invalid(format!("rank 0 at {}: {refusal}", world.master())));
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => return Err(Error::Invalid(format!("rank 0 at {}: accepting a rank: {e}", world.master()))),
        };
        let hello = stream
            .set_nonblocking(false)
            .and_then(|_| stream.set_read_timeout(Some(Duration::from_secs(30))))
            .map_err(|e| e.to_string())
            .and_then(|_| read_message::<Hello>(&mut stream));
        // A stranger (a port scan, another program) is dropped; a rank of another job is refused.
        let hello = match hello {
            Ok(h) => h,
            Err(why) => {
                eprintln!("rendezvous: ignored a connection from {from}: {why}");
                continue;
            }
        };
        let refusal = if hello.protocol != PROTOCOL {
            Some(format!("it speaks {:?}, rank 0 {PROTOCOL:?} (different swiattn builds)", hello.protocol))
        } else if hello.size != world.size {
            Some(format!("its world size is {}, rank 0's {}", hello.size, world.size))
        } else if hello.job != job {
            Some("it runs another job (its resolved config differs from rank 0's)".to_string())
        } else if hello.rank == 0 || hello.rank >= world.size {
            Some(format!("rank {} is not one of 1..{}", hello.rank, world.size))
        } else if joined[hello.rank].is_some() {
            Some(format!("rank {} has joined already: two processes claim it", hello.rank))
        } else {
            None
        };
        if let Some(why) = refusal {
            let why = format!("rank {} from {from} refused: {why}", hello.rank);
            let _ = write_message(&mut stream, &Answer { refused: Some(why.clone()) });
            refuse_all(&mut joined, &why);
            return Err(Error::Invalid(format!("rank 0 at {}: {why}", world.master())));
        }
        joined[hello.rank] = Some(stream);
    }
    let mut links = Vec::new();
    for (peer, stream) in joined.into_iter().enumerate().skip(1) {
        let mut stream = stream.expect("every rank joined");
        write_message(&mut stream, &Answer { refused: None })
            .map_err(|e| Error::Invalid(format!("rank 0: letting rank {peer} in: {e}")))?;
        links.push(Link { peer, stream });
    }
    Ok(links)
}

/// Tell the ranks that joined so far that the job will not start.
fn refuse_all(joined: &mut [Option<TcpStream>], why: &str) {
    for stream in joined.iter_mut().flatten() {
        let _ = write_message(stream, &Answer { refused: Some(why.to_string()) });
    }
}

/// Any other rank: connect to rank 0 (retrying until it listens), introduce itself, wait to be let in.
fn visit(world: &World, job: &str, timeout: Duration) -> Result<Link> {
    let deadline = Instant::now() + timeout;
    let fail = |why: String| Error::Invalid(format!("rank {}: rendezvous at {}: {why}", world.rank, world.master()));
    let mut stream = loop {
        let attempt = world
            .master()
            .to_socket_addrs()
            .and_then(|mut addrs| addrs.next().ok_or_else(|| std::io::Error::other("the address resolves to nothing")))
            .and_then(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(5)));
        match attempt {
            Ok(stream) => break stream,
            Err(e) if Instant::now() > deadline => {
                return Err(fail(format!(
                    "rank 0 did not answer within {} s (SWIATTN_RENDEZVOUS_TIMEOUT): {e}",
                    timeout.as_secs()
                )));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let hello = Hello { protocol: PROTOCOL.into(), rank: world.rank, size: world.size, job: job.into() };
    write_message(&mut stream, &hello).map_err(&fail)?;
    // Rank 0 answers once every rank has joined, or the rendezvous timed out there.
    stream.set_read_timeout(Some(timeout + Duration::from_secs(30))).map_err(|e| fail(e.to_string()))?;
    let answer: Answer = read_message(&mut stream).map_err(|e| {
        fail(format!(
            "rank 0 closed the rendezvous without an answer ({e}): it refused the job or failed, see its output"
        ))
    })?;
    match answer.refused {
        Some(why) => Err(fail(format!("refused by rank 0: {why}"))),
        None => Ok(Link { peer: 0, stream }),
    }
}

fn write_message<T: Serialize>(stream: &mut TcpStream, message: &T) -> std::result::Result<(), String> {
    let body = serde_json::to_vec(message).expect("serializes");
    let mut frame = (body.len() as u64).to_le_bytes().to_vec();
    frame.extend_from_slice(&body);
    stream.write_all(&frame).map_err(|e| e.to_string())
}

fn read_message<T: for<'de> Deserialize<'de>>(stream: &mut TcpStream) -> std::result::Result<T, String> {
    let mut len = [0u8; 8];
    stream.read_exact(&mut len).map_err(|e| e.to_string())?;
    let len = u64::from_le_bytes(len);
    if len > MAX_MESSAGE {
        return Err(format!("a {len}-byte message is not a rendezvous message"));
    }
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body).map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| format!("not a rendezvous message: {e}"))
}
