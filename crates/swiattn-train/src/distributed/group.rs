//! The processes of a data-parallel job, joined, and the collectives the training step needs:
//! sums of gradients and scalars, a vote, a broadcast.
//!
//! This is the TCP path: a star through rank 0, which adds the ranks' buffers **in rank order**
//! (so every rank gets the same bits, and a world of two sums exactly as one process accumulating
//! the same two micro-batches does). Rank 0 carries `(size − 1) ×` the buffer each step, so it is
//! for the CPU backend and for tests; a GPU job reduces through NCCL instead (docs/training.md).
//!
//! Nothing hangs: every read and write has a timeout, and a rank whose connection breaks (it
//! crashed or was killed) ends the job on every other rank with an error naming it. Rank 0, which
//! sees every link, tells the others why it stops before it does.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use swiattn_core::{Error, Result};

/// The marker of a frame that carries rank 0's reason for ending the job instead of data.
const ABORT: u64 = u64::MAX;

/// A joined job (see [`super::rendezvous::join`]).
pub struct Group {
    pub rank: usize,
    pub size: usize,
    /// Rank 0: a link to every other rank, in rank order; any other rank: its link to rank 0.
    links: Vec<Link>,
    /// Collectives done so far; every frame carries it, so ranks that fell out of step are caught.
    op: u64,
    timeout: Duration,
}

pub(super) struct Link {
    pub peer: usize,
    pub stream: TcpStream,
}

/// A value a collective adds up, sent little-endian.
pub trait Summable: Copy + std::ops::AddAssign {
    const BYTES: usize;
    fn put(self, out: &mut Vec<u8>);
    fn get(bytes: &[u8]) -> Self;
}

/// Both float widths, little-endian through their own `to_le_bytes`/`from_le_bytes`.
macro_rules! summable {
    ($($t:ty),*) => {$(
        impl Summable for $t {
            const BYTES: usize = std::mem::size_of::<$t>();
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn get(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("one value's bytes"))
            }
        }
    )*};
}

summable!(f32, f64);

impl Group {
    pub(super) fn new(rank: usize, size: usize, links: Vec<Link>, timeout: Duration) -> Result<Group> {
        for link in &links {
            let set = link
                .stream
                .set_read_timeout(Some(timeout))
                .and_then(|_| link.stream.set_write_timeout(Some(timeout)))
                .and_then(|_| link.stream.set_nodelay(true));
            set.map_err(|e| Error::Invalid(format!("rank {rank}: the link to rank {}: {e}", link.peer)))?;
        }
        Ok(Group { rank, size, links, op: 0, timeout })
    }

    /// Replace every rank's `values` by their element-wise sum over the ranks (added in rank
    /// order, so all ranks hold the same bits). `what` names the collective in errors.
    pub fn all_reduce<T: Summable>(&mut self, what: &str, values: &mut [T]) -> Result<()> {
        self.op += 1;
        let bytes = |values: &[T]| {
            let mut frame = Vec::with_capacity(values.len() * T::BYTES);
            values.iter().for_each(|v| v.put(&mut frame));
            frame
        };
        if self.rank == 0 {
            let summed = self.gather_sum(what, values).map(|_| bytes(values));
            self.answer(what, summed).map(|_| ())
        } else {
            self.send(0, what, self.op, &bytes(values))?;
            let sum = self.receive(0, what, values.len() * T::BYTES)?;
            for (v, chunk) in values.iter_mut().zip(sum.chunks_exact(T::BYTES)) {
                *v = T::get(chunk);
            }
            Ok(())
        }
    }

    /// Whether any rank says `yes` (e.g. "stop after this step": every rank stops at the same one).
    pub fn any(&mut self, what: &str, yes: bool) -> Result<bool> {
        let mut votes = [f64::from(u8::from(yes))];
        self.all_reduce(what, &mut votes)?;
        Ok(votes[0] > 0.0)
    }

    /// Rank 0's `bytes` on every rank (the others' argument is ignored).
    pub fn broadcast(&mut self, what: &str, bytes: Vec<u8>) -> Result<Vec<u8>> {
        self.op += 1;
        if self.rank == 0 {
            self.answer(what, Ok(bytes))
        } else {
            let len = self.receive_len(0, what)?;
            self.read_payload(0, what, len)
        }
    }

    /// Rank 0: its own `sum` plus every other rank's buffer, in rank order.
    fn gather_sum<T: Summable>(&mut self, what: &str, sum: &mut [T]) -> Result<()> {
        for i in 0..self.links.len() {
            let theirs = self.receive(i, what, sum.len() * T::BYTES)?;
            for (s, chunk) in sum.iter_mut().zip(theirs.chunks_exact(T::BYTES)) {
                *s += T::get(chunk);
            }
        }
        Ok(())
    }

    /// Rank 0: send `result` to every other rank, or, if it is an error, the error itself (so the
    /// others end with rank 0's reason), and return it.
    fn answer(&mut self, what: &str, result: Result<Vec<u8>>) -> Result<Vec<u8>> {
        match result {
            Ok(frame) => {
                for i in 0..self.links.len() {
                    self.send(i, what, self.op, &frame)?;
                }
                Ok(frame)
            }
            Err(e) => {
                self.abort(&e.to_string());
                Err(e)
            }
        }
    }

    /// Rank 0: tell every rank still reachable that the job ends, and why (best effort).
    pub fn abort(&mut self, why: &str) {
        if self.rank != 0 {
            return;
        }
        let message = format!("rank 0 ended the job: {why}");
        for link in &mut self.links {
            let mut frame = ABORT.to_le_bytes().to_vec();
            frame.extend_from_slice(&(message.len() as u64).to_le_bytes());
            frame.extend_from_slice(message.as_bytes());
            let _ = link.stream.write_all(&frame);
        }
    }

    /// Send one frame (`op`, length, payload) on link `i`.
    fn send(&mut self, i: usize, what: &str, op: u64, payload: &[u8]) -> Result<()> {
        let mut head = op.to_le_bytes().to_vec();
        head.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        let link = &mut self.links[i];
        let sent = link.stream.write_all(&head).and_then(|_| link.stream.write_all(payload));
        sent.map_err(|e| self.broken(i, what, e))
    }

    /// Receive one frame of `len` payload bytes on link `i`.
    fn receive(&mut self, i: usize, what: &str, len: usize) -> Result<Vec<u8>> {
        let got = self.receive_len(i, what)?;
        if got != len {
            return Err(Error::Invalid(format!(
                "{what}: rank {} sent {got} bytes where rank {} has {len}: the ranks train different models or configs",
                self.links[i].peer, self.rank
            )));
        }
        self.read_payload(i, what, len)
    }

    /// Read a frame's header on link `i`: check its collective number, return its payload length
    /// (or rank 0's reason for ending the job, as an error).
    fn receive_len(&mut self, i: usize, what: &str) -> Result<usize> {
        let mut head = [0u8; 16];
        self.links[i].stream.read_exact(&mut head).map_err(|e| self.broken(i, what, e))?;
        let op = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let len = u64::from_le_bytes(head[8..].try_into().expect("8 bytes")) as usize;
        if op == ABORT {
            let message = self.read_payload(i, what, len)?;
            return Err(Error::Invalid(String::from_utf8_lossy(&message).into_owned()));
        }
        if op != self.op {
            return Err(Error::Invalid(format!(
                "{what}: rank {} is at collective {op}, rank {} at {}: the ranks fell out of step",
                self.links[i].peer, self.rank, self.op
            )));
        }
        Ok(len)
    }

    fn read_payload(&mut self, i: usize, what: &str, len: usize) -> Result<Vec<u8>> {
        let mut payload = vec![0u8; len];
        self.links[i].stream.read_exact(&mut payload).map_err(|e| self.broken(i, what, e))?;
        Ok(payload)
    }

    /// The error of a link that failed: the peer left (crashed or killed) or went silent.
    fn broken(&self, i: usize, what: &str, e: std::io::Error) -> Error {
        let peer = self.links[i].peer;
        let why = match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!(
                "sent nothing for {} s (it hangs or is far behind; SWIATTN_COLLECTIVE_TIMEOUT sets the limit in seconds)",
                self.timeout.as_secs()
            ),
            _ => format!("left the job ({e}): it failed or was killed, see its own output"),
        };
        Error::Invalid(format!("{what}: rank {peer} {why}"))
    }
}
