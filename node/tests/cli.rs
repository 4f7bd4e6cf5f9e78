//! The daemon's command line: version, and clear refusals for bad settings. (Also makes
//! `cargo test --workspace` build `baton-node` for the cluster tests.)

use std::process::Command;

fn node() -> Command {
    Command::new(env!("CARGO_BIN_EXE_baton-node"))
}

/// Goal: `--version` works (CI also runs it under qemu for the Pi build).
#[test]
fn version() {
    let output = node().arg("--version").output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// Goal: missing settings and unreadable certificates refuse to start with exit code 2
/// and a message that names what to fix.
#[test]
fn refuses_to_start_with_a_clear_message() {
    let output = node().args(["--id", "n1"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing --listen"));

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let certs = dir.path().join("no-certs");
    let output = node()
        .args([
            "--id",
            "n1",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--certs",
            certs.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ca.pem"), "{stderr}");
}
