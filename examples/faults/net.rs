//! The network the fault suite runs in: a private network namespace of its own (the
//! harness re-executes itself under `unshare --net`), so its firewall rules never touch
//! the host and vanish with its last process; inside it, `iptables` rules that drop
//! packets between node addresses. Clients reach the nodes from 127.0.0.1, which no
//! rule names, so a partition cuts nodes from each other, not from their clients.

use std::net::Ipv4Addr;
use std::process::Command;

/// Set in the re-executed harness: it already runs in its own namespace.
pub const INSIDE_ENV: &str = "BATON_FAULTS_INSIDE_NETNS";

/// Node `i` (from 0) listens on this address.
pub fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 11 + i as u8)
}

/// Re-executes this program in a new network namespace and returns its exit code, or
/// `None` when it already runs in one.
pub fn enter_private_namespace() -> Result<Option<i32>, String> {
    if std::env::var_os(INSIDE_ENV).is_some() {
        return Ok(None);
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let status = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(INSIDE_ENV, "1")
        .status()
        .map_err(|e| format!("cannot run unshare (util-linux): {e}"))?;
    Ok(Some(status.code().unwrap_or(1)))
}

fn run(args: &[&str]) -> Result<(), String> {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e} (install it: apt-get install iproute2 iptables)", args[0]))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// Brings the namespace's loopback up and checks that iptables works in it.
pub fn set_up() -> Result<(), String> {
    run(&["ip", "link", "set", "lo", "up"])?;
    run(&["iptables", "-F", "INPUT"])
}

/// Drops every packet from `from` to `to` (one direction).
pub fn block(from: Ipv4Addr, to: Ipv4Addr) -> Result<(), String> {
    run(&["iptables", "-A", "INPUT", "-s", &from.to_string(), "-d", &to.to_string(), "-j", "DROP"])
}

/// Drops each packet between any two of `nodes` with probability `percent` / 100.
pub fn lose(nodes: &[Ipv4Addr], percent: u32) -> Result<(), String> {
    let probability = format!("{:.2}", f64::from(percent) / 100.0);
    for from in nodes {
        for to in nodes.iter().filter(|to| *to != from) {
            run(&[
                "iptables",
                "-A",
                "INPUT",
                "-s",
                &from.to_string(),
                "-d",
                &to.to_string(),
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &probability,
                "-j",
                "DROP",
            ])?;
        }
    }
    Ok(())
}

/// Removes every rule: the network is whole again.
pub fn heal() -> Result<(), String> {
    run(&["iptables", "-F", "INPUT"])
}
