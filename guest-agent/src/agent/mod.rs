//! The agent's parts, one per concern.

pub mod container;
pub mod mounts;
pub mod network;
pub mod reaper;
pub mod server;
pub mod session;
pub mod stdio;
pub mod vsock;

/// Writes a diagnostic line to the console (the VM's serial log on the host).
pub fn log(msg: &str) {
    eprintln!("hull-agent: {msg}");
}

/// Like [`log`], only when the kernel command line asked for `hull.debug`.
pub fn debug(msg: &str) {
    if debug_enabled() {
        log(msg);
    }
}

fn debug_enabled() -> bool {
    static DEBUG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DEBUG.get_or_init(|| {
        std::fs::read_to_string("/proc/cmdline")
            .map(|c| c.split_whitespace().any(|w| w == "hull.debug"))
            .unwrap_or(false)
    })
}
