//! End to end: the real `baton` console in tmux against a real 3-node cluster. It
//! selects a follower, presses `s`, confirms with `y`, then checks through
//! `baton status --json` that the leader changed and with `tmux capture-pane` that the
//! screen shows the new leader; then that `q`, and a closed terminal, end the console
//! process. tmux runs on a private socket and is killed at the end.

mod support;

use std::process::Command;
use std::time::Duration;
use support::{binaries, Cluster};

struct Tmux {
    socket: String,
    /// Console processes started in panes, killed at the end if still running.
    consoles: std::cell::RefCell<Vec<u32>>,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("run tmux");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "console"])
    }

    /// Starts `command` in a new detached session and returns its process id.
    fn start(&self, session: &str, command: &str) -> u32 {
        // The server stays up when its last session ends: otherwise a session started
        // right after the previous one closed can meet the server on its way out
        // ("no server running") and never start.
        self.run(&[
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "100",
            "-y",
            "30",
            command,
            ";",
            "set-option",
            "-s",
            "exit-empty",
            "off",
        ]);
        let pid = self.run(&["display-message", "-p", "-t", session, "#{pane_pid}"]);
        let pid = pid.trim().parse().unwrap_or_else(|_| panic!("no pane pid for {session}: {pid:?}"));
        self.consoles.borrow_mut().push(pid);
        pid
    }

    fn keys(&self, keys: &[&str]) {
        for key in keys {
            self.run(&["send-keys", "-t", "console", key]);
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
        for pid in self.consoles.borrow().iter() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// Whether process `pid` still runs (a zombie has stopped running).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(") ").next().is_some_and(|rest| !rest.starts_with('Z')))
}

fn baton_status(cluster: &str, certs: &str) -> serde_json::Value {
    let output = Command::new(binaries().join("baton"))
        .args(["--cluster", cluster, "--certs", certs, "status", "--json"])
        .output()
        .expect("run baton status");
    serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
}

/// Goal: `s` on a follower and `y` in the console hand leadership to that follower, as
/// `baton status --json` and the console's own screen both show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_from_the_console_in_tmux() {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "tmux is missing; .ci/run installs it");
        eprintln!("SKIPPED: tmux is not installed (apt-get install tmux)");
        return;
    }
    let cluster = Cluster::start(3, &[]);
    let mut client = cluster.client();
    let leader = cluster.wait_for_leader(&mut client, Duration::from_secs(10)).await;
    let addrs = cluster.addrs().iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let certs = cluster.certs.display().to_string();
    let (row, target) =
        cluster.nodes.iter().enumerate().find(|(_, n)| n.id != leader).map(|(i, n)| (i, n.id.clone())).unwrap();

    let tmux = Tmux { socket: format!("baton-test-{}", std::process::id()), consoles: Default::default() };
    let console = format!("{} --cluster {addrs} --certs {certs} console", binaries().join("baton").display());
    let console_pid = tmux.start("console", &console);
    let shown = wait_until!(Duration::from_secs(15), tmux.screen().contains(&format!("leader {leader}")).then_some(()));
    assert!(shown.is_some(), "the console never showed leader {leader}:\n{}", tmux.screen());

    for _ in 0..row {
        tmux.keys(&["Down"]);
    }
    tmux.keys(&["s"]);
    let eligible = wait_until!(Duration::from_secs(10), tmux.screen().contains("is eligible").then_some(()));
    assert!(eligible.is_some(), "no eligible verdict for {target}:\n{}", tmux.screen());
    tmux.keys(&["y"]);

    let moved = wait_until!(Duration::from_secs(15), {
        let status = baton_status(&addrs, &certs);
        (status["leader"].as_str() == Some(target.as_str())).then_some(status)
    });
    assert!(moved.is_some(), "baton status --json never showed {target} leading\n{}", tmux.screen());
    let on_screen =
        wait_until!(Duration::from_secs(10), tmux.screen().contains(&format!("leader {target}")).then_some(()));
    let screen = tmux.screen();
    assert!(on_screen.is_some(), "the console does not show the new leader {target}:\n{screen}");
    println!("{screen}");
    tmux.keys(&["q"]);
    let quit = wait_until!(Duration::from_secs(5), (!running(console_pid)).then_some(()));
    assert!(quit.is_some(), "the console still runs 5 s after q");

    // A closed terminal ends the console too: it must never linger, spinning on a dead tty.
    let hung_up_pid = tmux.start("hangup", &console);
    let shown = wait_until!(Duration::from_secs(15), {
        let screen = tmux.run(&["capture-pane", "-p", "-t", "hangup"]);
        screen.contains(&format!("leader {target}")).then_some(())
    });
    assert!(shown.is_some(), "the second console never drew");
    // q and the terminal closing at once, as when a test or an ssh session ends.
    tmux.run(&["send-keys", "-t", "hangup", "q"]);
    tmux.run(&["kill-session", "-t", "hangup"]);
    let gone = wait_until!(Duration::from_secs(5), (!running(hung_up_pid)).then_some(()));
    assert!(gone.is_some(), "the console still runs 5 s after its terminal closed");
}
