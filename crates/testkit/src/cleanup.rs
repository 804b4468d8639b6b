//! Process-exit cleanup for the statics (template and shared cluster),
//! which Rust never drops.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

/// Registers the exit hook once. The test harness leaves `main` normally or
/// through `process::exit`, both of which run `atexit` handlers.
pub(crate) fn register() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        // SAFETY: `at_exit` is a plain `extern "C" fn()` that never unwinds.
        let rc = unsafe { nix::libc::atexit(at_exit) };
        if rc != 0 {
            tracing::warn!("atexit registration failed; the watchdog will clean up instead");
        }
    });
}

extern "C" fn at_exit() {
    // Unwinding out of an `extern "C"` function aborts, so contain any panic.
    let _ = panic::catch_unwind(AssertUnwindSafe(|| {
        crate::cluster::stop_shared_at_exit();
        crate::template::remove_at_exit();
    }));
}
