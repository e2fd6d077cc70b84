//! `api`'s modules import each other without a cycle, so each can be read knowing only the
//! ones below it: `error`, `clock`, `keys` at the bottom, then `state`, the use cases of
//! `service`, the `reactor`, and `http` on top.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `src/http/router.rs` → `http::router`; `src/http/mod.rs` → `http`.
fn module_name(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_str().unwrap().to_owned())
        .collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    parts.join("::")
}

fn files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, found);
        } else if path.extension().and_then(|e| e.to_str()) == Some("rs") {
            found.push(path);
        }
    }
}

/// The paths a source names after `crate::`, with one level of `{a, b}` groups expanded.
fn crate_paths(source: &str) -> Vec<String> {
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut paths = Vec::new();
    for (at, _) in source.match_indices("crate::") {
        let rest = &source[at + "crate::".len()..];
        let head: String = rest.chars().take_while(|c| is_path_char(*c)).collect();
        let after = &rest[head.len()..];
        if head.ends_with("::") && after.starts_with('{') {
            let group = &after[1..after.find('}').unwrap_or(after.len())];
            for member in group.split(',') {
                let member: String = member
                    .trim()
                    .chars()
                    .take_while(|c| is_path_char(*c))
                    .collect();
                paths.push(format!("{head}{member}"));
            }
        } else {
            paths.push(head);
        }
    }
    paths
}

/// Module → the modules its source names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
    let mut all = Vec::new();
    files(src, &mut all);
    let names: BTreeSet<String> = all.iter().map(|file| module_name(src, file)).collect();
    let mut graph = BTreeMap::new();
    for file in &all {
        let name = module_name(src, file);
        if name == "lib" || name == "main" {
            continue;
        }
        let source = std::fs::read_to_string(file).unwrap();
        // Test modules may look anywhere; comments (doc links) are not imports.
        let source: String = source
            .split("#[cfg(test)]")
            .next()
            .unwrap()
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let source = source.as_str();
        let used: BTreeSet<String> = crate_paths(source)
            .into_iter()
            .filter_map(|path| {
                // The longest module the path starts with.
                let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
                (1..=segments.len())
                    .rev()
                    .map(|n| segments[..n].join("::"))
                    .find(|candidate| names.contains(candidate))
            })
            .filter(|module| *module != name)
            .collect();
        graph.insert(name, used);
    }
    graph
}

#[test]
fn api_modules_form_no_cycle() {
    let graph = imports();
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(module) {
            return;
        }
        if let Some(start) = path.iter().position(|seen| seen == module) {
            panic!("module cycle: {} -> {module}", path[start..].join(" -> "));
        }
        path.push(module.to_owned());
        for next in graph.get(module).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(module.to_owned());
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        visit(module, &graph, &mut Vec::new(), &mut done);
    }
    assert!(graph.contains_key("http::router") && graph.contains_key("service::payments"));
}

#[test]
fn only_http_knows_http() {
    for (module, used) in imports() {
        if module.starts_with("http") || module == "server" {
            continue;
        }
        assert!(
            used.iter().all(|used| !used.starts_with("http")),
            "{module} uses {used:?}"
        );
    }
}
