//! A throwaway local cluster for `baton demo` and `baton bench`: certificates and data in
//! a temporary directory, nodes as real child processes (this binary's hidden `node`
//! command) on free loopback ports. Dropping it kills every node and deletes the
//! directory, so quitting leaves nothing behind.

use crate::tui::DemoControl;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long `k` in the demo keeps a node down.
const RESTART_AFTER: Duration = Duration::from_secs(5);

struct LocalNode {
    id: String,
    /// Its position in the cluster (which core a confined node is pinned to).
    index: usize,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    groups: crate::confine::Groups,
}

pub struct LocalCluster {
    /// Held so the directory is deleted when the cluster is dropped.
    _dir: tempfile::TempDir,
    pub certs: PathBuf,
    pub addrs: Vec<SocketAddr>,
    nodes: Mutex<Vec<LocalNode>>,
    /// Where the nodes are held to a small device's size (`baton bench --profile`).
    pub confinement: Option<crate::confine::Confinement>,
}

/// `count` distinct free UDP ports on 127.0.0.1. Every socket stays bound until all are
/// chosen, so the kernel cannot hand the same port out twice.
fn free_ports(count: usize) -> Result<Vec<u16>, String> {
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        sockets.push(std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?);
    }
    sockets.iter().map(|socket| Ok(socket.local_addr().map_err(|e| e.to_string())?.port())).collect()
}

impl LocalCluster {
    /// Starts `count` nodes with `extra` node flags (e.g. `--mode async`).
    pub fn start(count: usize, extra: &[String]) -> Result<Arc<LocalCluster>, String> {
        LocalCluster::start_confined(count, extra, None)
    }

    /// [`LocalCluster::start`], each node confined as `confinement` says.
    pub fn start_confined(
        count: usize,
        extra: &[String],
        confinement: Option<crate::confine::Confinement>,
    ) -> Result<Arc<LocalCluster>, String> {
        let dir = tempfile::Builder::new().prefix("baton-demo-").tempdir().map_err(|e| e.to_string())?;
        let certs = dir.path().join("certs");
        let ids: Vec<String> = (1..=count).map(|i| format!("n{i}")).collect();
        baton_node::certs::generate_cluster(&certs, &ids).map_err(|e| e.to_string())?;
        let addrs: Vec<SocketAddr> =
            free_ports(ids.len())?.into_iter().map(|port| SocketAddr::from(([127, 0, 0, 1], port))).collect();
        let mut nodes = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let mut args = vec![
                "node".to_string(),
                "--id".into(),
                id.clone(),
                "--listen".into(),
                addrs[i].to_string(),
                "--data-dir".into(),
                dir.path().join(id).display().to_string(),
                "--certs".into(),
                certs.display().to_string(),
            ];
            for (j, other) in ids.iter().enumerate().filter(|(j, _)| *j != i) {
                args.push("--peer".into());
                args.push(format!("{other}={}", addrs[j]));
            }
            args.extend(extra.iter().cloned());
            let log = dir.path().join(format!("{id}.log"));
            nodes.push(LocalNode { id: id.clone(), index: i, args, log, child: None, groups: Default::default() });
        }
        for node in &mut nodes {
            spawn(node, confinement.as_ref())?;
        }
        Ok(Arc::new(LocalCluster { _dir: dir, certs, addrs, nodes: Mutex::new(nodes), confinement }))
    }

    /// Kills one node with SIGKILL (no handover, no flush: a crash).
    pub fn kill(&self, id: &str) -> Result<(), String> {
        let mut nodes = self.nodes.lock().expect("never poisoned");
        let node = nodes.iter_mut().find(|n| n.id == id).ok_or_else(|| format!("no node {id}"))?;
        let mut child = node.child.take().ok_or_else(|| format!("{id} is already down"))?;
        child.kill().map_err(|e| e.to_string())?;
        let _ = child.wait();
        Ok(())
    }

    /// Deletes a stopped node's data directory: it starts again empty, as a new device.
    pub fn wipe(&self, id: &str) -> Result<(), String> {
        let nodes = self.nodes.lock().expect("never poisoned");
        let node = nodes.iter().find(|n| n.id == id).ok_or_else(|| format!("no node {id}"))?;
        if node.child.is_some() {
            return Err(format!("{id} is running: stop it before deleting its data"));
        }
        let data_dir = self._dir.path().join(id);
        std::fs::remove_dir_all(&data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))
    }

    pub fn restart(&self, id: &str) -> Result<(), String> {
        let mut nodes = self.nodes.lock().expect("never poisoned");
        let node = nodes.iter_mut().find(|n| n.id == id).ok_or_else(|| format!("no node {id}"))?;
        if node.child.is_some() {
            return Ok(());
        }
        spawn(node, self.confinement.as_ref())
    }

    /// The node id at `addr`.
    pub fn id_at(&self, addr: SocketAddr) -> Option<String> {
        let position = self.addrs.iter().position(|a| *a == addr)?;
        Some(self.nodes.lock().expect("never poisoned")[position].id.clone())
    }
}

fn spawn(node: &mut LocalNode, confinement: Option<&crate::confine::Confinement>) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&node.log).map_err(|e| e.to_string())?;
    let mut command = match confinement {
        Some(confinement) => {
            node.groups.remove();
            let (command, groups) = confinement.command(node.index, &node.id, &exe, &node.args)?;
            node.groups = groups;
            command
        }
        None => {
            let mut command = Command::new(exe);
            command.args(&node.args);
            command
        }
    };
    let child = command
        .env("BATON_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", node.id))?;
    node.child = Some(child);
    Ok(())
}

impl LocalCluster {
    /// Kills every node and deletes the directory, whoever still holds the cluster.
    pub fn shutdown(&self) {
        for node in self.nodes.lock().expect("never poisoned").iter_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            node.groups.remove();
        }
        let _ = std::fs::remove_dir_all(self._dir.path());
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The demo's `k`: kill now, restart after [`RESTART_AFTER`].
pub struct DemoHandle(pub Arc<LocalCluster>);

impl DemoControl for DemoHandle {
    fn kill_and_restart(&self, id: &str) -> Result<(), String> {
        self.0.kill(id)?;
        let cluster = Arc::downgrade(&self.0);
        let id = id.to_string();
        std::thread::spawn(move || {
            std::thread::sleep(RESTART_AFTER);
            if let Some(cluster) = cluster.upgrade() {
                let _ = cluster.restart(&id);
            }
        });
        Ok(())
    }
}
