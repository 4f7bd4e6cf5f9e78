//! `mutants`: the mutation kit. Each `examples/mutants/*.patch` is a small, known-bad
//! change to the code the simulator runs; this applies each to a copy of the tree,
//! builds the simulator's binary there, and runs seeds until one fails. A mutant that
//! survives its seed budget means the checkers cannot see that bug: the run fails.
//!
//! ```text
//! cargo run --release --example mutants                      # every mutant, 20,000 seeds each
//! cargo run --release --example mutants -- --seeds 20000 --only figure-8
//! ```
//! A patch may start with free text before its `diff --git` line (git apply ignores it);
//! a line `sim: ARGS` there adds arguments to that mutant's simulator run. The copy
//! lives in `target/mutants/` and is reused, so a second run rebuilds only what the
//! patches touch.

use clap::Parser;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Runs every known-bad patch against the simulator; each must be caught")]
struct Args {
    /// Seeds per mutant before it counts as surviving.
    #[arg(long, default_value_t = 20_000)]
    seeds: u64,
    /// Only the mutants whose file name contains this (repeatable).
    #[arg(long)]
    only: Vec<String>,
}

/// What became of one mutant.
enum Outcome {
    Caught {
        seeds: u64,
        seed: u64,
        violation: String,
    },
    Survived {
        seeds: u64,
    },
    /// The patch no longer applies, or the mutant does not build: the kit is stale.
    Broken(String),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = root.join("target/mutants");
    let tree = work.join("tree");
    let mut patches: Vec<PathBuf> = std::fs::read_dir(root.join("examples/mutants"))
        .expect("examples/mutants exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "patch"))
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy().to_string();
            args.only.is_empty() || args.only.iter().any(|o| name.contains(o.as_str()))
        })
        .collect();
    patches.sort();
    if patches.is_empty() {
        eprintln!("mutants: no patch in examples/mutants matches {:?}", args.only);
        return ExitCode::from(2);
    }
    let files = match tracked_files(&root) {
        Ok(files) => files,
        Err(error) => {
            eprintln!("mutants: cannot list the tree's files with git: {error}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let mut results = Vec::new();
    for patch in &patches {
        let name = patch.file_stem().unwrap_or_default().to_string_lossy().to_string();
        let mutant_started = Instant::now();
        let outcome = run_mutant(&root, &tree, &work, &files, patch, args.seeds);
        let took_s = mutant_started.elapsed().as_secs_f64();
        match &outcome {
            Outcome::Caught { seeds, seed, violation } => {
                println!("caught    {name}: after {seeds} seeds (seed {seed}, {took_s:.0} s): {violation}")
            }
            Outcome::Survived { seeds } => println!("SURVIVED  {name}: {seeds} seeds, no violation ({took_s:.0} s)"),
            Outcome::Broken(why) => println!("BROKEN    {name}: {why}"),
        }
        results.push((name, outcome));
    }
    // Leave the copy as the tree is, so nothing mutated lingers in it.
    if let Err(error) = sync_tree(&root, &tree, &files) {
        eprintln!("mutants: could not restore the copy: {error}");
    }
    let caught = results.iter().filter(|(_, o)| matches!(o, Outcome::Caught { .. })).count();
    println!(
        "mutants={} caught={caught} failed={} in {:.0} s (budget {} seeds each)",
        results.len(),
        results.len() - caught,
        started.elapsed().as_secs_f64(),
        args.seeds
    );
    if caught == results.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The tree's files as git sees them: tracked, and new ones not ignored.
fn tracked_files(root: &Path) -> Result<Vec<PathBuf>, String> {
    let output = Command::new("git")
        .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
        .current_dir(root)
        .output()
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(output
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(String::from_utf8_lossy(p).as_ref()))
        .collect())
}

/// Makes the copy equal to the tree, writing only the files that differ (so cargo
/// rebuilds only what a patch touched).
fn sync_tree(root: &Path, tree: &Path, files: &[PathBuf]) -> std::io::Result<()> {
    for file in files {
        let from = root.join(file);
        let Ok(content) = std::fs::read(&from) else { continue }; // deleted, not yet staged
        let to = tree.join(file);
        if std::fs::read(&to).is_ok_and(|old| old == content) {
            continue;
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&to, content)?;
    }
    Ok(())
}

/// The `sim: ARGS` line of a patch's preamble, split on spaces.
fn sim_args(patch_text: &str) -> Vec<String> {
    patch_text
        .lines()
        .take_while(|l| !l.starts_with("diff --git"))
        .find_map(|l| l.strip_prefix("sim:"))
        .map(|a| a.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

fn run_mutant(root: &Path, tree: &Path, work: &Path, files: &[PathBuf], patch: &Path, seeds: u64) -> Outcome {
    if let Err(error) = sync_tree(root, tree, files) {
        return Outcome::Broken(format!("copying the tree to {}: {error}", tree.display()));
    }
    let Ok(patch_text) = std::fs::read_to_string(patch) else {
        return Outcome::Broken(format!("cannot read {}", patch.display()));
    };
    // The copy sits inside the repository's target/: without a ceiling, git would find
    // the repository above it and apply the patch relative to that.
    let applied = Command::new("git")
        .args(["apply", "--whitespace=nowarn"])
        .arg(patch)
        .current_dir(tree)
        .env("GIT_CEILING_DIRECTORIES", work)
        .output();
    match applied {
        Ok(output) if output.status.success() => {}
        Ok(output) => {
            return Outcome::Broken(format!(
                "the patch no longer applies (update it): {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
        Err(error) => return Outcome::Broken(format!("running git apply: {error}")),
    }
    let target = work.join("target");
    let build = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--bin", "baton-sim"])
        .current_dir(tree)
        .env("CARGO_TARGET_DIR", &target)
        .stdout(Stdio::null())
        .output();
    match build {
        Ok(output) if output.status.success() => {}
        Ok(output) => {
            let text = String::from_utf8_lossy(&output.stderr);
            let first_error = text.lines().find(|l| l.starts_with("error")).unwrap_or("see cargo's output");
            return Outcome::Broken(format!("the mutant does not build: {first_error}"));
        }
        Err(error) => return Outcome::Broken(format!("running cargo: {error}")),
    }
    let run = Command::new(target.join("release/baton-sim"))
        .args(["--seeds", &seeds.to_string(), "--stop-at-first"])
        .args(sim_args(&patch_text))
        .current_dir(tree)
        .output();
    let output = match run {
        Ok(output) => output,
        Err(error) => return Outcome::Broken(format!("running the simulator: {error}")),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value = |key: &str| {
        stdout.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    let ran = value("seeds=").unwrap_or(0);
    match value("first_failing_seed=") {
        Some(seed) => {
            let violation =
                stdout.lines().find_map(|l| l.strip_prefix("  - ")).unwrap_or("").chars().take(160).collect();
            Outcome::Caught { seeds: ran, seed, violation }
        }
        None if output.status.success() => Outcome::Survived { seeds: ran },
        None => Outcome::Broken(format!(
            "the simulator failed without a verdict: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}
