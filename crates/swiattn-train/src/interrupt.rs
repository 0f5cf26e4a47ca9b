//! SIGINT and SIGTERM while training or scoring. The first signal asks the run to stop at its next
//! safe point: training after the step in flight, with a checkpoint of that step and an error
//! saying how to resume (the resumed run is bitwise the uninterrupted one, as after any
//! checkpoint); `swiattn eval` after the task in flight, its results saved. A second signal ends
//! the process at once (status 128 + signal; the last checkpoint or results file stands, as after
//! a kill) — unless it comes within [`SAME_REQUEST`] of the first: `timeout(1)` sends its signal to
//! the process *and* to its process group, so one request arrives twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use swiattn_core::{Error, Result};

static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Signals this soon after the first are the same request delivered twice, not a second one.
pub const SAME_REQUEST: Duration = Duration::from_secs(1);

/// Route SIGINT and SIGTERM to the stop flag (idempotent; the CLI's `train`, `sweep` and `eval`
/// call it). The signals are read by a thread of their own, outside the signal handler.
pub fn install() -> Result<()> {
    if STOP.get().is_some() {
        return Ok(());
    }
    let flag = Arc::clone(STOP.get_or_init(Arc::default));
    let mut signals = Signals::new([SIGINT, SIGTERM])
        .map_err(|e| Error::Invalid(format!("cannot install the handlers of SIGINT and SIGTERM: {e}")))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut first: Option<Instant> = None;
            for signal in signals.forever() {
                match first {
                    None => {
                        first = Some(Instant::now());
                        flag.store(true, Ordering::Relaxed);
                    }
                    Some(at) if at.elapsed() >= SAME_REQUEST => signal_hook::low_level::exit(128 + signal),
                    Some(_) => {}
                }
            }
        })
        .map_err(|e| Error::Invalid(format!("cannot start the signal thread: {e}")))?;
    Ok(())
}

/// Whether a stop was asked for (never, without [`install`]).
pub fn requested() -> bool {
    STOP.get().is_some_and(|flag| flag.load(Ordering::Relaxed))
}
