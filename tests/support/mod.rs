//! Shared by the cluster tests: real `baton-node` processes on 127.0.0.1 in a temporary
//! directory, killed when the test ends, and waits on conditions with deadlines.
#![allow(dead_code)]

use baton_node::certs::Identity;
use baton_node::client::Client;
use baton_node::status::NodeStatus;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The directory holding `baton-node` and `baton`. `cargo test --workspace` builds both
/// (their crates have integration tests) in the same run; when a binary is missing or
/// older than the sources, as when this test runs alone, it is built here once.
pub fn binaries() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // target/<profile>/deps/<test> -> target/<profile>
        let exe = std::env::current_exe().expect("test path");
        let dir = exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let sources = newest_modification(&[root.join("common/src"), root.join("node/src"), root.join("console/src")]);
        let fresh = |name: &str| {
            std::fs::metadata(dir.join(name)).and_then(|m| m.modified()).is_ok_and(|built| built >= sources)
        };
        if !(fresh("baton-node") && fresh("baton")) {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build.args(["build", "--quiet", "-p", "baton-node", "-p", "baton-console", "--bins"]);
            if !cfg!(debug_assertions) {
                build.arg("--release");
            }
            let status = build.current_dir(root).status().expect("run cargo build");
            assert!(status.success(), "building the binaries failed");
        }
        dir
    })
}

fn newest_modification(dirs: &[PathBuf]) -> std::time::SystemTime {
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    let mut pending: Vec<PathBuf> = dirs.to_vec();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                newest = newest.max(modified);
            }
        }
    }
    newest
}

/// A free UDP port on 127.0.0.1 (QUIC runs over UDP), never one this test process has
/// handed out before: the kernel may give a just-released port again, so two nodes of one
/// cluster (or of two tests running side by side) could otherwise be told the same port,
/// and the second would fail to bind.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    const ATTEMPTS_MAX: usize = 1000;
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for _ in 0..ATTEMPTS_MAX {
        let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
    panic!("no UDP port this process has not used in {ATTEMPTS_MAX} attempts");
}

pub struct Node {
    pub id: String,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub args: Vec<String>,
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Node {
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.id);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(binaries().join("baton-node"))
            .args(&self.args)
            .env("BATON_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start baton-node");
        self.child = Some(child);
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal by name (STOP, CONT, TERM) to this node's process.
    pub fn signal(&self, signal: &str) {
        // The shell's built-in kill: present on every machine, unlike /usr/bin/kill.
        let command = format!("kill -{signal} {}", self.pid());
        let status = Command::new("sh").args(["-c", &command]).status().unwrap();
        assert!(status.success(), "kill -{signal} {}", self.id);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub certs: PathBuf,
}

impl Cluster {
    /// Starts `count` nodes with `extra` flags (e.g. `--mode all`).
    pub fn start(count: usize, extra: &[&str]) -> Cluster {
        Cluster::start_at(count, extra, None)
    }

    /// The same, but the nodes know each other by host name (`HOST:PORT` in `--peer`
    /// and `--advertise`), as on a LAN with DNS or mDNS; they still listen on 127.0.0.1.
    pub fn start_by_name(count: usize, extra: &[&str], host: &str) -> Cluster {
        Cluster::start_at(count, extra, Some(host))
    }

    fn start_at(count: usize, extra: &[&str], host: Option<&str>) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let ids: Vec<String> = (1..=count).map(|i| format!("n{i}")).collect();
        baton_node::certs::generate_cluster(&certs, &ids).unwrap();
        let addrs: Vec<SocketAddr> = ids.iter().map(|_| SocketAddr::from(([127, 0, 0, 1], free_port()))).collect();
        let mut nodes = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let data_dir = dir.path().join(id);
            let mut args = vec![
                "--id".to_string(),
                id.clone(),
                "--listen".into(),
                addrs[i].to_string(),
                "--data-dir".into(),
                data_dir.display().to_string(),
                "--certs".into(),
                certs.display().to_string(),
            ];
            let named = |addr: SocketAddr| match host {
                Some(host) => format!("{host}:{}", addr.port()),
                None => addr.to_string(),
            };
            if host.is_some() {
                args.push("--advertise".into());
                args.push(named(addrs[i]));
            }
            for (j, other) in ids.iter().enumerate() {
                if i != j {
                    args.push("--peer".into());
                    args.push(format!("{other}={}", named(addrs[j])));
                }
            }
            args.extend(extra.iter().map(|s| s.to_string()));
            let log = dir.path().join(format!("{id}.log"));
            let mut node = Node { id: id.clone(), addr: addrs[i], data_dir, args, child: None, log };
            node.start();
            nodes.push(node);
        }
        Cluster { dir, nodes, certs }
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }

    pub fn client(&self) -> Client {
        Client::new(self.addrs(), &self.certs, &Identity::Operator("operator".into())).unwrap()
    }

    pub fn node(&mut self, id: &str) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).expect("known node")
    }

    /// Every node's status that answers.
    pub async fn statuses(&self, client: &mut Client) -> Vec<NodeStatus> {
        let mut statuses = Vec::new();
        for addr in self.addrs() {
            if let Ok(status) = client.status_of(addr).await {
                statuses.push(status);
            }
        }
        statuses
    }

    /// Waits until one node leads (seen by a majority of answers), returning its id.
    pub async fn wait_for_leader(&self, client: &mut Client, timeout: Duration) -> String {
        let found = crate::wait_until!(timeout, {
            let statuses = self.statuses(client).await;
            statuses.iter().find(|s| s.role == "leader").map(|s| s.id.clone())
        });
        found.unwrap_or_else(|| panic!("no leader within {timeout:?}; logs in {}", self.dir.path().display()))
    }

    /// Writes `<prefix><i>` keys for `duration` from a task of its own, returning each
    /// acknowledged write's number and when it was acknowledged.
    pub fn spawn_writer(
        &self,
        prefix: &str,
        duration: Duration,
    ) -> tokio::task::JoinHandle<Vec<(u64, std::time::Instant)>> {
        let mut client = self.client();
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let started = std::time::Instant::now();
            let mut i = 0;
            while started.elapsed() < duration {
                if client.put(format!("{prefix}{i}").as_bytes(), b"x").await.is_ok() {
                    acknowledged.push((i, std::time::Instant::now()));
                }
                i += 1;
            }
            acknowledged
        })
    }

    /// The nodes' logs, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- {} ---\n{}", n.id, std::fs::read_to_string(&n.log).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Re-evaluates `$check` (an expression that may `.await`) every 20 ms until it yields
/// `Some`, or `$timeout` passes (then `None`).
#[macro_export]
macro_rules! wait_until {
    ($timeout:expr, $check:expr) => {{
        let deadline = std::time::Instant::now() + $timeout;
        loop {
            if let Some(value) = $check {
                break Some(value);
            }
            if std::time::Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }};
}

/// A UDP relay between one client and one node, on 127.0.0.1, that can drop everything
/// the node sends back: the node gets every request and its answers are lost, as when a
/// reply path fails. QUIC is encrypted end to end, so the relay sees only datagrams.
pub struct ReplyDropper {
    /// Where the client sends: the relay's front socket.
    pub addr: SocketAddr,
    dropping: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Datagrams from the node dropped so far.
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl ReplyDropper {
    pub async fn start(node: SocketAddr) -> ReplyDropper {
        use std::sync::atomic::Ordering;
        let front = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let back = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        back.connect(node).await.unwrap();
        let addr = front.local_addr().unwrap();
        let dropping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (dropping_in_task, dropped_in_task) = (dropping.clone(), dropped.clone());
        let task = tokio::spawn(async move {
            let mut client = None;
            let (mut up, mut down) = (vec![0u8; 65_536], vec![0u8; 65_536]);
            loop {
                tokio::select! {
                    Ok((bytes, from)) = front.recv_from(&mut up) => {
                        client = Some(from);
                        let _ = back.send(&up[..bytes]).await;
                    }
                    Ok(bytes) = back.recv(&mut down) => {
                        if dropping_in_task.load(Ordering::SeqCst) {
                            dropped_in_task.fetch_add(1, Ordering::SeqCst);
                        } else if let Some(client) = client {
                            let _ = front.send_to(&down[..bytes], client).await;
                        }
                    }
                }
            }
        });
        ReplyDropper { addr, dropping, dropped, task }
    }

    pub fn drop_replies(&self, on: bool) {
        self.dropping.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for ReplyDropper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
