//! Scheduling policy of the calling thread.

use std::io;

/// Put the calling thread under `SCHED_BATCH`: same weight as `SCHED_OTHER` (no priority
/// is gained, so no privilege is needed), but the scheduler treats it as a CPU-bound
/// thread that does not preempt others when it wakes up. For the switch's forwarding
/// threads, which wake each other and the namespaces' receivers at every frame, that
/// means fewer context switches.
///
/// Raw libc: neither rustix nor nix wraps `sched_setscheduler`.
pub fn set_batch_scheduling() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler only reads one sched_param through the pointer, which
    // points at a live, initialised local for the duration of the call; pid 0 means the
    // calling thread, so no other thread or process is affected.
    let ret = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
