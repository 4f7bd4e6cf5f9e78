//! The real cluster under test: `baton-node` processes on their own loopback addresses
//! (see `net`), each with its log file, started, killed (-9), paused (SIGSTOP) and
//! resumed by PID, and killed on every exit path (`Drop`). With libfaketime installed,
//! each node runs under it with a clock offset file the clock nemesis rewrites (wall
//! clock only: monotonic time is left alone, as the node must use it for every timer).

use baton_node::certs::Identity;
use baton_node::client::Client;
use baton_node::status::NodeStatus;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Port every node listens on, at its own address.
const NODE_PORT: u16 = 7100;
/// Where Debian's libfaketime lives.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

pub struct Node {
    pub id: String,
    pub addr: SocketAddr,
    args: Vec<String>,
    log: PathBuf,
    clock_file: PathBuf,
    child: Option<Child>,
    paused: bool,
}

pub struct Cluster {
    pub certs: PathBuf,
    pub nodes: Vec<Node>,
    bin_dir: PathBuf,
    /// Where data, certificates and logs live.
    dir: PathBuf,
    mode: String,
    pub faketime: bool,
}

/// The flags every node starts with.
fn node_args(id: &str, addr: SocketAddr, data_dir: &Path, certs: &Path, mode: &str) -> Vec<String> {
    let args = ["--id", id, "--listen", &addr.to_string(), "--data-dir", &data_dir.display().to_string()];
    let mut args: Vec<String> = args.map(String::from).to_vec();
    args.extend(["--certs".to_string(), certs.display().to_string(), "--mode".into(), mode.into()]);
    args
}

impl Cluster {
    /// Starts `count` nodes in `mode` with their data, certificates and logs in `dir`.
    pub fn start(dir: &Path, bin_dir: &Path, count: usize, mode: &str) -> Result<Cluster, String> {
        for binary in ["baton-node", "baton"] {
            if !bin_dir.join(binary).exists() {
                return Err(format!(
                    "{} is missing: build it first (cargo build --release -p baton-node -p baton-console)",
                    bin_dir.join(binary).display()
                ));
            }
        }
        let ids: Vec<String> = (1..=count).map(|i| format!("n{i}")).collect();
        let certs = dir.join("certs");
        baton_node::certs::generate_cluster(&certs, &ids).map_err(|e| e.to_string())?;
        let addrs: Vec<SocketAddr> =
            (0..count).map(|i| SocketAddr::from((super::net::node_ip(i), NODE_PORT))).collect();
        let faketime = Path::new(LIBFAKETIME).exists();
        let mut nodes = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let data_dir = dir.join(id);
            let mut args = node_args(id, addrs[i], &data_dir, &certs, mode);
            for (j, peer) in ids.iter().enumerate().filter(|(j, _)| *j != i) {
                args.push("--peer".into());
                args.push(format!("{peer}={}", addrs[j]));
            }
            let clock_file = dir.join(format!("{id}.clock"));
            std::fs::write(&clock_file, "+0\n").map_err(|e| e.to_string())?;
            nodes.push(Node {
                id: id.clone(),
                addr: addrs[i],
                args,
                log: dir.join(format!("{id}.log")),
                clock_file,
                child: None,
                paused: false,
            });
        }
        let mut cluster = Cluster {
            certs,
            nodes,
            bin_dir: bin_dir.to_path_buf(),
            dir: dir.to_path_buf(),
            mode: mode.into(),
            faketime,
        };
        for i in 0..count {
            cluster.start_node(i)?;
        }
        Ok(cluster)
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }

    pub fn client(&self, deadline: Duration) -> Result<Client, String> {
        let mut client = Client::new(self.addrs(), &self.certs, &Identity::Operator("operator".into()))
            .map_err(|e| e.to_string())?;
        client.deadline = deadline;
        Ok(client)
    }

    pub fn start_node(&mut self, i: usize) -> Result<(), String> {
        let node = &mut self.nodes[i];
        if node.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&node.log).map_err(|e| e.to_string())?;
        // setpriv: the node gets SIGKILL when the harness dies, however it dies (its
        // main thread starts every node), so no node outlives a run.
        let mut command = Command::new("setpriv");
        command
            .args(["--pdeathsig", "KILL", "--"])
            .arg(self.bin_dir.join("baton-node"))
            .args(&node.args)
            .env("BATON_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        if self.faketime {
            command
                .env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME_TIMESTAMP_FILE", &node.clock_file)
                .env("FAKETIME_CACHE_DURATION", "1")
                .env("DONT_FAKE_MONOTONIC", "1");
        }
        node.child = Some(command.spawn().map_err(|e| format!("cannot start baton-node: {e}"))?);
        node.paused = false;
        Ok(())
    }

    /// A new machine in slot `i`'s place: the old process is killed and its data left
    /// behind, and the slot (same address) gets the name `name`, a certificate from the
    /// cluster's CA, an empty data directory and `--join` through the other slots. It
    /// is started by the caller, once it has been added.
    pub fn replace_node(&mut self, i: usize, name: &str) -> Result<(), String> {
        self.kill_node(i);
        baton_node::certs::generate_cluster(&self.certs, &[name.to_string()]).map_err(|e| e.to_string())?;
        let others: Vec<SocketAddr> =
            self.nodes.iter().filter(|n| n.addr != self.nodes[i].addr).map(|n| n.addr).collect();
        let node = &mut self.nodes[i];
        node.id = name.to_string();
        node.log = self.dir.join(format!("{name}.log"));
        // A name of its own, so a data directory of its own.
        node.args = node_args(name, node.addr, &self.dir.join(name), &self.certs, &self.mode);
        for other in others {
            node.args.extend(["--join".to_string(), other.to_string()]);
        }
        Ok(())
    }

    /// kill -9.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.nodes[i].paused = false;
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`).
    pub fn pause_node(&mut self, i: usize, pause: bool) {
        let node = &mut self.nodes[i];
        let Some(child) = &node.child else { return };
        let signal = if pause { "STOP" } else { "CONT" };
        let _ = Command::new("sh").args(["-c", &format!("kill -{signal} {}", child.id())]).status();
        node.paused = pause;
    }

    /// Moves node `i`'s wall clock by `offset` (libfaketime's syntax: "+2h", "-3h", "+0").
    pub fn set_clock(&self, i: usize, offset: &str) -> Result<(), String> {
        std::fs::write(&self.nodes[i].clock_file, format!("{offset}\n")).map_err(|e| e.to_string())
    }

    /// The node that says it leads in the highest term, among those that answer, and
    /// that term.
    pub async fn leader(&self, client: &mut Client) -> Option<(usize, u64)> {
        leading(&self.statuses(client).await).map(|(i, status)| (i, status.term))
    }

    /// Each node's status, `None` where it does not answer within a second.
    pub async fn statuses(&self, client: &mut Client) -> Vec<Option<NodeStatus>> {
        let mut statuses = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.paused || !self.is_running(i) {
                statuses.push(None);
                continue;
            }
            let status = tokio::time::timeout(Duration::from_secs(1), client.status_of(node.addr)).await;
            statuses.push(status.ok().and_then(Result::ok));
        }
        statuses
    }
}

/// Which of `statuses` says it leads in the highest term.
pub fn leading(statuses: &[Option<NodeStatus>]) -> Option<(usize, &NodeStatus)> {
    statuses
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.as_ref().filter(|s| s.role == "leader").map(|s| (i, s)))
        .max_by_key(|(_, s)| s.term)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused {
                self.pause_node(i, false);
            }
            self.kill_node(i);
        }
    }
}
