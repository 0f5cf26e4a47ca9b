//! The multi-process job's plumbing in one process: ranks as threads on localhost, joined through
//! the real rendezvous, summing through the real collectives; then the failures a job must survive
//! without hanging: a rank that dies, one of another job, one that never comes.

use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use swiattn_core::Result;
use swiattn_train::distributed::{Group, Timeouts, World, join};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Rank `rank` of a `size`-rank job meeting on this host at `port`.
fn local(rank: usize, size: usize, port: u16) -> World {
    World { rank, size, local_rank: rank, address: "127.0.0.1".into(), port }
}

fn timeouts(seconds: u64) -> Timeouts {
    Timeouts { rendezvous: Duration::from_secs(seconds), collective: Duration::from_secs(seconds) }
}

/// Run `work` as every rank of a `size`-rank job on one port; each rank's result, in rank order.
/// `job(rank)` is the fingerprint rank `rank` presents.
fn job<T: Send + 'static>(
    size: usize,
    job: impl Fn(usize) -> String,
    work: impl Fn(usize, Result<Group>) -> T + Send + Sync + Clone + 'static,
) -> Vec<T> {
    let port = free_port();
    let ranks: Vec<_> = (0..size)
        .map(|rank| {
            let world = local(rank, size, port);
            let (fingerprint, work) = (job(rank), work.clone());
            thread::spawn(move || work(rank, join(&world, &fingerprint, timeouts(10))))
        })
        .collect();
    ranks.into_iter().map(|r| r.join().expect("no rank panics")).collect()
}

#[test]
fn all_reduce_sums_in_rank_order_and_every_rank_gets_the_same_bits() {
    // Values whose float sum depends on the order: only rank order gives `expected` bitwise.
    let values = |rank: usize| -> Vec<f32> {
        (0..1000).map(|i| ((i * 7 + rank * 13) % 17) as f32 * 0.1 + 1e-7 * rank as f32).collect()
    };
    let expected: Vec<f32> = (0..1000)
        .map(|i| {
            let mut sum = values(0)[i];
            for r in 1..4 {
                sum += values(r)[i];
            }
            sum
        })
        .collect();
    let results = job(
        4,
        |_| "same".into(),
        move |rank, group| {
            let mut group = group.unwrap();
            let mut mine = values(rank);
            group.all_reduce("test sums", &mut mine).unwrap();
            let mut scalars = [rank as f64, 1.0];
            group.all_reduce("test scalars", &mut scalars).unwrap();
            let vote = group.any("test vote", rank == 2).unwrap();
            let quiet = group.any("test quiet vote", false).unwrap();
            let said = group.broadcast("test broadcast", format!("from {rank}").into_bytes()).unwrap();
            (mine, scalars, vote, quiet, said)
        },
    );
    for (rank, (sum, scalars, vote, quiet, said)) in results.into_iter().enumerate() {
        assert!(sum.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits()), "rank {rank}");
        assert_eq!(scalars, [6.0, 4.0]);
        assert!(vote && !quiet);
        assert_eq!(said, b"from 0");
    }
}

#[test]
fn a_rank_that_leaves_ends_every_other_rank_with_its_name() {
    let started = Instant::now();
    let results = job(
        3,
        |_| "same".into(),
        |rank, group| {
            let mut group = group.unwrap();
            let mut v = [1.0f32; 8];
            group.all_reduce("step 1", &mut v).unwrap();
            if rank == 2 {
                return None; // leaves: its link closes
            }
            Some(group.all_reduce("step 2", &mut v).unwrap_err().to_string())
        },
    );
    let rank0 = results[0].clone().unwrap();
    let rank1 = results[1].clone().unwrap();
    assert!(rank0.contains("step 2: rank 2 left the job"), "{rank0}");
    assert!(rank1.contains("rank 0 ended the job") && rank1.contains("rank 2 left the job"), "{rank1}");
    assert!(started.elapsed() < Duration::from_secs(8), "noticed at once, not by a timeout");
}

#[test]
fn a_silent_rank_is_named_after_the_timeout() {
    let port = free_port();
    let short = Timeouts { rendezvous: Duration::from_secs(10), collective: Duration::from_secs(1) };
    let peer = thread::spawn(move || {
        let group = join(&local(1, 2, port), "j", short).unwrap();
        thread::sleep(Duration::from_secs(3)); // alive, silent
        drop(group);
    });
    let mut group = join(&local(0, 2, port), "j", short).unwrap();
    let e = group.all_reduce("step 7", &mut [0.0f64]).unwrap_err().to_string();
    assert!(e.contains("step 7: rank 1 sent nothing for 1 s"), "{e}");
    peer.join().unwrap();
}

#[test]
fn ranks_of_another_job_or_a_duplicate_rank_are_refused_by_name() {
    let errors = job(
        3,
        |rank| if rank == 2 { "other".into() } else { "same".into() },
        |_, group| group.err().map(|e| e.to_string()),
    );
    for (rank, e) in errors.iter().enumerate() {
        let e = e.as_ref().expect("the job does not start");
        // Rank 1 hears the reason if rank 0 had let it into the rendezvous before rank 2 came.
        let told = e.contains("rank 2") && e.contains("another job");
        assert!(told || (rank == 1 && e.contains("rank 0 closed the rendezvous")), "{e}");
    }

    let port = free_port();
    let ranks: Vec<_> = [0, 1, 1]
        .into_iter()
        .map(|rank| {
            let world = local(rank, 3, port);
            thread::spawn(move || join(&world, "same", timeouts(10)).err().map(|e| e.to_string()))
        })
        .collect();
    let errors: Vec<Option<String>> = ranks.into_iter().map(|r| r.join().unwrap()).collect();
    assert!(errors[0].as_ref().unwrap().contains("two processes claim it"), "{errors:?}");
}

#[test]
fn a_rank_that_never_comes_times_the_rendezvous_out() {
    let port = free_port();
    let world = local(0, 3, port);
    let short = Timeouts { rendezvous: Duration::from_secs(1), collective: Duration::from_secs(1) };
    let peer = thread::spawn(move || join(&local(1, 3, port), "j", short).err().map(|e| e.to_string()));
    let e = join(&world, "j", short).err().unwrap().to_string();
    assert!(e.contains("ranks 2 did not join within 1 s"), "{e}");
    let theirs = peer.join().unwrap().unwrap();
    assert!(theirs.contains("refused by rank 0") && theirs.contains("ranks 2 did not join"), "{theirs}");
    // And a rank without a rank 0 gives up too.
    let lonely = local(1, 2, free_port());
    let e = join(&lonely, "j", short).err().unwrap().to_string();
    assert!(e.contains("rank 0 did not answer within 1 s"), "{e}");
}
