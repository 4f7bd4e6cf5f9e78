//! Holds a local cluster's nodes to the size of a small device (`baton bench --profile
//! pi`): each node pinned to one core with `taskset`, and, where this process may create
//! control groups (root, cgroup v2 or v1), its memory and its share of that core
//! limited. What could not be applied is said, never silently skipped.
//!
//! A node is started through `sh`, which puts itself in the node's groups and then
//! becomes `taskset`, which becomes the node: one process id throughout, so killing the
//! child kills the node.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A small device's limits per node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceProfile {
    pub name: &'static str,
    pub memory_max_bytes: u64,
    /// Of the one core the node is pinned to.
    pub cpu_percent: u64,
}

/// A Raspberry Pi 3 or Zero 2 W: 512 MiB to 1 GiB for everything, and Cortex-A53 cores
/// about half as fast as one core of this kind of host at the work a node does.
pub const PI: DeviceProfile = DeviceProfile { name: "pi", memory_max_bytes: 256 << 20, cpu_percent: 50 };

pub fn profile_named(name: &str) -> Result<DeviceProfile, String> {
    match name {
        "pi" => Ok(PI),
        other => Err(format!("unknown profile {other:?}: the one profile is pi")),
    }
}

/// CFS period the CPU share is expressed in.
const CPU_PERIOD_US: u64 = 100_000;

/// The groups made for one node, removed by [`Groups::remove`].
#[derive(Debug, Default)]
pub struct Groups {
    dirs: Vec<PathBuf>,
}

impl Groups {
    /// Removes the groups (they must hold no process by now).
    pub fn remove(&self) {
        for dir in &self.dirs {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// How nodes are confined, and what was applied.
#[derive(Debug)]
pub struct Confinement {
    pub profile: DeviceProfile,
    cores: usize,
    /// What the limits are, as applied, in words.
    pub applied: String,
    cgroups: Option<CgroupLayout>,
}

#[derive(Debug, Clone)]
enum CgroupLayout {
    /// The unified hierarchy: one directory per node.
    V2(PathBuf),
    /// Separate memory and cpu hierarchies.
    V1 { memory: PathBuf, cpu: PathBuf },
}

impl Confinement {
    pub fn new(profile: DeviceProfile) -> Confinement {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cgroups = writable_cgroups();
        let applied = match &cgroups {
            Some(_) => format!(
                "each node on one core (taskset), with {} MiB of memory and {} % of that core (cgroup)",
                profile.memory_max_bytes >> 20,
                profile.cpu_percent
            ),
            None => "each node on one core (taskset); memory and CPU share not limited: this process \
                     cannot create control groups (run as root to apply them)"
                .to_string(),
        };
        Confinement { profile, cores, applied, cgroups }
    }

    /// Makes `node`'s groups (named after this process and the node) and returns the
    /// command that starts `exe args` confined: node `index` goes on core `index` mod the
    /// cores there are.
    pub fn command(&self, index: usize, node: &str, exe: &Path, args: &[String]) -> Result<(Command, Groups), String> {
        let core = index % self.cores;
        let mut groups = Groups::default();
        let mut joins = Vec::new();
        let name = format!("baton-bench-{}-{node}", std::process::id());
        let profile = self.profile;
        let quota_us = CPU_PERIOD_US * profile.cpu_percent / 100;
        let made = |dir: PathBuf, files: &[(&str, String)], groups: &mut Groups| -> Result<PathBuf, String> {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            groups.dirs.push(dir.clone());
            for (file, value) in files {
                let path = dir.join(file);
                std::fs::write(&path, value).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            Ok(dir.join("cgroup.procs"))
        };
        match &self.cgroups {
            Some(CgroupLayout::V2(root)) => joins.push(made(
                root.join(&name),
                &[
                    ("memory.max", profile.memory_max_bytes.to_string()),
                    ("cpu.max", format!("{quota_us} {CPU_PERIOD_US}")),
                ],
                &mut groups,
            )?),
            Some(CgroupLayout::V1 { memory, cpu }) => {
                joins.push(made(
                    memory.join(&name),
                    &[("memory.limit_in_bytes", profile.memory_max_bytes.to_string())],
                    &mut groups,
                )?);
                joins.push(made(
                    cpu.join(&name),
                    &[("cpu.cfs_period_us", CPU_PERIOD_US.to_string()), ("cpu.cfs_quota_us", quota_us.to_string())],
                    &mut groups,
                )?);
            }
            None => {}
        }
        // `sh -c SCRIPT exe args…`: the script joins the groups, then execs taskset.
        let mut script = String::new();
        for join in &joins {
            script.push_str(&format!("echo $$ > '{}' && ", join.display()));
        }
        script.push_str(&format!("exec taskset -c {core} \"$0\" \"$@\""));
        let mut command = Command::new("sh");
        command.arg("-c").arg(script).arg(exe).args(args);
        Ok((command, groups))
    }
}

/// Where this process may create control groups, if anywhere.
fn writable_cgroups() -> Option<CgroupLayout> {
    let root = Path::new("/sys/fs/cgroup");
    let probe = |dir: &Path| {
        let test = dir.join(format!("baton-probe-{}", std::process::id()));
        let made = std::fs::create_dir(&test).is_ok();
        if made {
            let _ = std::fs::remove_dir(&test);
        }
        made
    };
    if root.join("cgroup.controllers").exists() {
        let controllers = std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap_or_default();
        let both =
            controllers.split_whitespace().any(|c| c == "memory") && controllers.split_whitespace().any(|c| c == "cpu");
        return (both && probe(root)).then(|| CgroupLayout::V2(root.to_path_buf()));
    }
    let (memory, cpu) = (root.join("memory"), root.join("cpu"));
    (probe(&memory) && probe(&cpu)).then_some(CgroupLayout::V1 { memory, cpu })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a confined command runs the program pinned to one core, with its arguments
    /// intact, as the same process (sh and taskset exec into it), and its groups, where
    /// made, hold it and are removed afterwards.
    #[test]
    fn a_confined_command_runs_pinned_with_its_arguments() {
        let confinement = Confinement::new(PI);
        let script = "grep Cpus_allowed_list /proc/self/status; echo \"$1\"; cat /proc/self/cgroup";
        let args = ["-c".to_string(), script.to_string(), "sh".to_string(), "two words".to_string()];
        let (mut command, groups) = confinement.command(0, "t1", Path::new("/bin/sh"), &args).unwrap();
        let output = command.output().unwrap();
        groups.remove();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{text} {}", String::from_utf8_lossy(&output.stderr));
        assert!(text.lines().any(|line| line.starts_with("Cpus_allowed_list:") && line.ends_with("\t0")), "{text}");
        assert!(text.lines().any(|line| line == "two words"), "{text}");
        if confinement.cgroups.is_some() {
            assert!(text.contains(&format!("baton-bench-{}-t1", std::process::id())), "{text}");
            assert!(groups.dirs.iter().all(|dir| !dir.exists()), "groups removed");
        }
        assert!(profile_named("pi").is_ok() && profile_named("pdp11").is_err());
    }
}
