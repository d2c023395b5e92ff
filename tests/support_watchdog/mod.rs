//! A watchdog for the servers the tests start: a server that no destructor
//! stops (one held by a region in a static, or a test process that dies) is
//! killed once the test process is gone.

use std::process::{Command, Stdio};

/// Kills `pid` once this test process is gone.
pub fn watchdog(pid: u32) {
    let me = std::process::id();
    let script = format!(
        "while kill -0 {me} 2>/dev/null && kill -0 {pid} 2>/dev/null; do sleep 0.3; done; kill -9 {pid} 2>/dev/null"
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
