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

/// Goal: a `baton bench` stopped by SIGTERM (or Ctrl-C) stops its local cluster's nodes
/// and deletes its directory, and says so; it used to leave both behind.
#[test]
fn an_interrupted_bench_leaves_nothing_behind() {
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let mut bench = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["bench", "--clients", "1", "--duration", "120"])
        .env("TMPDIR", tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let cluster_dir = || {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|entry| entry.path())
            .find(|path| path.file_name().unwrap().to_string_lossy().starts_with("baton-demo-"))
    };
    // Nodes whose command line names a directory under this test's TMPDIR.
    let nodes_running = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
            std::fs::read(entry.path().join("cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(&*tmp.path().to_string_lossy()))
        })
    };
    let started = Instant::now();
    while !(cluster_dir().is_some_and(|dir| dir.join("n3").exists()) && nodes_running()) {
        assert!(started.elapsed() < Duration::from_secs(30), "the bench's cluster never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = bench.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = bench.try_wait().unwrap() {
            break status;
        }
        assert!(stopped.elapsed() < Duration::from_secs(20), "the bench did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(bench.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(5), "not done: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(cluster_dir().is_none(), "the cluster's directory is gone");
    assert!(!nodes_running(), "no node is left running");
}
