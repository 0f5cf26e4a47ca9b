//! SIGINT and SIGTERM while training. The first signal asks the step loop to stop after the step
//! in flight: it writes a checkpoint of that step and returns an error saying how to resume (the
//! resumed run is bitwise the uninterrupted one, as after any checkpoint). A second signal ends
//! the process at once; the last checkpoint written stands, as after a kill.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use swiattn_core::{Error, Result};

static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Route SIGINT and SIGTERM to the stop flag (idempotent; the CLI's `train` and `sweep` call it).
pub fn install() -> Result<()> {
    if STOP.get().is_some() {
        return Ok(());
    }
    let flag = STOP.get_or_init(Arc::default);
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registered first, so it sees the flag as the earlier signal left it: set means a second
        // signal, which exits with the conventional status 128 + signal.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(flag))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(flag)))
            .map_err(|e| Error::Invalid(format!("cannot install the handler of signal {signal}: {e}")))?;
    }
    Ok(())
}

/// Whether a stop was asked for (never, without [`install`]).
pub fn requested() -> bool {
    STOP.get().is_some_and(|flag| flag.load(Ordering::Relaxed))
}
