//! `baton`'s offline commands. (Also makes `cargo test --workspace` build `baton` for
//! the cluster tests.)

use std::process::Command;

/// Goal: `baton certs` writes a CA, node, operator and client certificates, with keys
/// readable by their owner only.
#[test]
fn certs_writes_a_cluster() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let status = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["certs", "--out", out.to_str().unwrap(), "--nodes", "n1,n2,n3"])
        .status()
        .unwrap();
    assert!(status.success());
    for name in ["ca", "n1", "n2", "n3", "operator", "client"] {
        assert!(out.join(format!("{name}.pem")).exists(), "{name}.pem");
        let mode = std::fs::metadata(out.join(format!("{name}.key"))).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{name}.key must not be readable by others");
    }
}

/// Goal: a bad node name is refused with a clear message and a non-zero exit.
#[test]
fn certs_refuses_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["certs", "--out", dir.path().to_str().unwrap(), "--nodes", "n1,bad name"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a valid node id"));
}
