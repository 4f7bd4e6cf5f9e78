//! No module of the node (`node/src`) or its host (`node/host/src`) imports, directly or
//! through others, a module that imports it back (issue 18: the types passed between
//! modules live in a module of their own). Reads the sources' `use` declarations and
//! `crate::`/`super::` paths in code (comments and unit-test modules aside) and looks for
//! a cycle in the graph they make.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`driver::log`, "" for the crate root) to the modules it names.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The module path of `file` under the crate's `src`.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("under src").with_extension("");
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("readable entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a source file without comments and without its unit-test module.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path a `use` declaration names, with one level of braces expanded
/// (`a::{b, c::d}` is `a::b` and `a::c::d`).
fn use_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let starts_word =
            at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric() && rest.as_bytes()[at - 1] != b'_';
        rest = &rest[at + 4..];
        let Some(end) = rest.find(';') else { break };
        if !starts_word {
            continue;
        }
        let declaration: String = rest[..end].chars().filter(|c| !c.is_whitespace()).collect();
        match declaration.split_once("::{") {
            Some((prefix, items)) => {
                let items = items.strip_suffix('}').unwrap_or(items);
                let mut depth = 0;
                let mut item = String::new();
                for c in items.chars().chain(std::iter::once(',')) {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            let head = item.split("::{").next().unwrap_or_default();
                            paths.push(format!("{prefix}::{head}"));
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    item.push(c);
                }
            }
            None => paths.push(declaration),
        }
    }
    paths
}

/// Paths in code that start at the crate or a parent (`crate::a::b`, `super::c`).
fn inline_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for start in ["crate::", "super::"] {
        let mut rest = code;
        while let Some(at) = rest.find(start) {
            let path: String =
                rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
            rest = &rest[at + start.len()..];
            paths.push(path.trim_end_matches(':').to_string());
        }
    }
    paths
}

/// The module `path` (named in module `from`) lands in: the longest known prefix.
fn resolve(modules: &BTreeSet<String>, from: &str, path: &str) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<&str> = if from.is_empty() { Vec::new() } else { from.split("::").collect() };
    match segments.first().copied() {
        Some("crate") => {
            base.clear();
            segments.remove(0);
        }
        Some("super") => {
            while segments.first() == Some(&"super") {
                base.pop();
                segments.remove(0);
            }
        }
        Some("self") => {
            segments.remove(0);
        }
        Some(first) => {
            let child = base.iter().copied().chain([first]).collect::<Vec<_>>().join("::");
            if !modules.contains(&child) {
                return None; // Another crate, or an item in scope.
            }
        }
        None => return None,
    }
    (0..=segments.len()).rev().find_map(|take| {
        let candidate = base.iter().chain(&segments[..take]).copied().collect::<Vec<_>>().join("::");
        modules.contains(&candidate).then_some(candidate)
    })
}

fn graph_of(sources: &[(String, String)]) -> Graph {
    let modules: BTreeSet<String> = sources.iter().map(|(module, _)| module.clone()).collect();
    let mut graph = Graph::new();
    for (module, text) in sources {
        let code = code_of(text);
        let named = use_paths(&code).into_iter().chain(inline_paths(&code));
        let targets = named.filter_map(|path| resolve(&modules, module, &path)).filter(|t| t != module);
        graph.entry(module.clone()).or_default().extend(targets);
    }
    graph
}

fn graph_of_crate(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let sources: Vec<(String, String)> = files
        .iter()
        .map(|file| (module_of(src, file), std::fs::read_to_string(file).expect("readable source")))
        .collect();
    graph_of(&sources)
}

/// A cycle in `graph`, if it has one: the modules along it, first repeated last.
fn cycle_in(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        graph: &Graph,
        at: &str,
        marks: &mut BTreeMap<String, Mark>,
        trail: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(at.to_string(), Mark::Open);
        trail.push(at.to_string());
        for next in graph.get(at).into_iter().flatten() {
            match marks.get(next) {
                Some(Mark::Open) => {
                    let from = trail.iter().position(|m| m == next).expect("open modules are on the trail");
                    let mut cycle = trail[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(cycle) = visit(graph, next, marks, trail) {
                        return Some(cycle);
                    }
                }
            }
        }
        trail.pop();
        marks.insert(at.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    graph.keys().find_map(|module| {
        if marks.contains_key(module) {
            return None;
        }
        visit(graph, module, &mut marks, &mut Vec::new())
    })
}

/// Goal: neither the node nor its host has an import cycle.
#[test]
fn no_module_of_the_node_or_its_host_imports_in_a_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for src in ["node/src", "node/host/src"] {
        let graph = graph_of_crate(&root.join(src));
        assert!(graph.len() > 10, "{src}: read {} modules", graph.len());
        assert!(graph.values().any(|targets| !targets.is_empty()), "{src}: found no imports at all");
        if let Some(cycle) = cycle_in(&graph) {
            panic!("{src}: modules import in a circle: {}", cycle.join(" -> "));
        }
    }
}

/// Goal: the check sees a cycle through `use`, through `super::`, and through a path in
/// code, and not one named only in a comment or a unit-test module.
#[test]
fn the_check_catches_a_cycle_and_ignores_comments_and_tests() {
    let source = |module: &str, text: &str| (module.to_string(), text.to_string());
    let through_use = [
        source("", "mod a;\nmod b;"),
        source("a", "use crate::b::{Thing, other::{X, Y}};"),
        source("b", "pub fn f() {}\nuse super::a::Item;"),
    ];
    let cycle = cycle_in(&graph_of(&through_use)).expect("a -> b -> a");
    assert!(cycle.contains(&"a".to_string()) && cycle.contains(&"b".to_string()), "{cycle:?}");
    let parent_and_child = [source("driver", "mod log;\nuse log::Wal;"), source("driver::log", "use super::Driver;")];
    assert!(cycle_in(&graph_of(&parent_and_child)).is_some(), "a parent importing from its child that imports it");
    let inline = [source("a", "fn f() { crate::b::g() }"), source("b", "fn g() { let _ = crate::a::f; }")];
    assert!(cycle_in(&graph_of(&inline)).is_some(), "paths in code count");
    let harmless = [
        source("a", "use crate::b::Thing;"),
        source("b", "/// See [`crate::a::f`].\nfn g() {}\n#[cfg(test)]\nmod tests {\n    use crate::a::f;\n}"),
    ];
    assert_eq!(cycle_in(&graph_of(&harmless)), None, "a comment and a unit test are no import");
}
