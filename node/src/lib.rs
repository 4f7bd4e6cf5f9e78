//! # baton-node
//!
//! The edge daemon around Baton's replication core: it owns the disk, the network and the
//! clock, and carries out what the core decides. This crate also holds the Rust client
//! library.

pub mod addr;
pub mod answers;
pub mod backoff;
pub mod certs;
pub mod client;
pub mod config;
pub mod congestion;
pub mod cost;
pub mod discarded;
pub mod driver;
pub mod forward;
pub mod frame;
pub mod handoff;
pub mod membership;
pub mod metrics;
pub mod revocation;
pub mod server;
pub mod status;
pub mod storage;
pub mod tls;
pub mod transfer;
pub mod transport;
pub mod watch_stream;
pub mod watching;

/// The replicated state machine, its map and its client sessions live in the sans-IO
/// host (`baton-host`), which the simulator runs too.
pub use baton_host::{kv, map, session};

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    /// Each top-level module of this crate and the top-level modules its code (not its
    /// tests) names through `crate::`; `storage/*.rs` counts as `storage`.
    fn imports() -> BTreeMap<String, BTreeSet<String>> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&src).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().flatten().map(|e| e.path()));
            } else {
                files.push(path);
            }
        }
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for path in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "rs")) {
            let relative = path.strip_prefix(&src).unwrap();
            let module = relative.iter().next().unwrap().to_string_lossy().trim_end_matches(".rs").to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            let uses = graph.entry(module.clone()).or_default();
            for line in code.lines().filter(|line| !line.trim_start().starts_with("//")) {
                for (at, _) in line.match_indices("crate::") {
                    let name: String =
                        line[at + 7..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                    if !name.is_empty() && name != module {
                        uses.insert(name);
                    }
                }
            }
        }
        graph
    }

    /// A cycle back to the first module of `path`, if there is one.
    fn cycle(graph: &BTreeMap<String, BTreeSet<String>>, path: &mut Vec<String>) -> Option<Vec<String>> {
        let last = path.last().unwrap().clone();
        for next in graph.get(&last).into_iter().flatten() {
            if next == &path[0] {
                return Some(path.clone());
            }
            if !path.contains(next) {
                path.push(next.clone());
                if let Some(found) = cycle(graph, path) {
                    return Some(found);
                }
                path.pop();
            }
        }
        None
    }

    /// Goal (STYLE, issue 18): no module imports in a circle: the types passed between
    /// modules live in modules of their own (`handoff`, `revocation`, `session`, ...).
    #[test]
    fn no_module_imports_in_a_circle() {
        let graph = imports();
        assert!(graph["driver"].contains("handoff") && graph["transport"].contains("handoff"), "{graph:?}");
        for module in graph.keys() {
            let found = cycle(&graph, &mut vec![module.clone()]);
            assert!(found.is_none(), "modules import each other in a circle: {found:?}");
        }
    }
}
