//! Process hardening at start: no core dumps, not ptrace-attachable by other users, and no
//! running as root unless configured.

/// Turns off core dumps (`RLIMIT_CORE` 0) and marks the process not dumpable, so neither a
/// crash nor another process of the same user can read key material out of its memory.
pub fn no_core_dumps() -> Result<(), String> {
    use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};

    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )
    .map_err(|e| format!("cannot disable core dumps: {e}"))?;
    set_dumpable_behavior(DumpableBehavior::NotDumpable)
        .map_err(|e| format!("cannot mark the process not dumpable: {e}"))
}

/// Whether the process runs as root.
pub fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Locks the process's memory (current and future pages, as they are touched) so keys never
/// reach swap. Allowed only when the memory-lock limit is unlimited or the process runs as
/// root; otherwise locking everything would make later allocations fail, so nothing is locked
/// and the reason is returned.
pub fn lock_memory() -> Result<(), String> {
    use rustix::mm::{MlockAllFlags, mlockall};
    use rustix::process::{Resource, getrlimit};

    let limit = getrlimit(Resource::Memlock);
    if limit.current.is_some() && !running_as_root() {
        return Err(format!(
            "RLIMIT_MEMLOCK is {} bytes, too little to lock the daemon's memory; set LimitMEMLOCK=infinity (systemd) or grant CAP_IPC_LOCK",
            limit.current.unwrap_or_default()
        ));
    }
    mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT)
        .map_err(|e| format!("mlockall failed: {e}"))
}
