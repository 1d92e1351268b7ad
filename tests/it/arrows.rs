//! The arrows of the data flow, kept: (1) each crate depends only on the frugal crates below it
//! (the compiler forbids crate cycles; this forbids upward arrows, such as the formats crate
//! importing the model crate), read from the crates' Cargo.toml; (2) inside every crate, the
//! top-level modules' references to one another (`crate::m`, `super::m` from a file directly
//! under src/, or an item the crate root re-exports from `m`) form no cycle.
//!
//! `cargo test --release --test it arrows -- --nocapture` prints the graphs checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which frugal crates each crate may depend on: the arrows, bottom to top.
const ALLOWED: &[(&str, &[&str])] = &[
    ("frugal-tensor", &[]),
    ("frugal-quant", &["frugal-tensor"]),
    ("frugal-kernels", &["frugal-tensor", "frugal-quant"]),
    ("frugal-formats", &["frugal-tensor"]),
    ("frugal-tokenizer", &["frugal-formats"]),
    (
        "frugal-model",
        &[
            "frugal-tensor",
            "frugal-quant",
            "frugal-kernels",
            "frugal-formats",
        ],
    ),
    (
        "frugal-engine",
        &[
            "frugal-tensor",
            "frugal-quant",
            "frugal-kernels",
            "frugal-formats",
            "frugal-tokenizer",
            "frugal-model",
        ],
    ),
    (
        "frugal-cli",
        &[
            "frugal-tensor",
            "frugal-quant",
            "frugal-kernels",
            "frugal-formats",
            "frugal-tokenizer",
            "frugal-model",
            "frugal-engine",
        ],
    ),
];

fn crates() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates");
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    v.sort();
    assert!(v.len() >= 8, "expected the workspace's crates");
    v
}

/// The package name and its `frugal-*` dependencies (dev-dependencies aside).
fn deps(cargo: &Path) -> (String, BTreeSet<String>) {
    let (mut name, mut section, mut out) = (String::new(), String::new(), BTreeSet::new());
    for line in std::fs::read_to_string(cargo).unwrap().lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_string();
        } else if section == "package" && line.starts_with("name") {
            name = line.split('"').nth(1).unwrap_or("").to_string();
        } else if section == "dependencies" && line.starts_with("frugal-") {
            let dep: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            out.insert(dep);
        }
    }
    (name, out)
}

/// Source text without comments (doc links are not imports).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    let mut block = false;
    for line in text.lines() {
        let mut l = line;
        if block {
            match l.find("*/") {
                Some(i) => {
                    l = &l[i + 2..];
                    block = false;
                }
                None => continue,
            }
        }
        if let Some(i) = l.find("/*") {
            block = !l[i..].contains("*/");
            l = &l[..i];
        }
        // A `//` outside a string literal starts a comment.
        if let Some(i) = l.find("//") {
            if l[..i].matches('"').count() % 2 == 0 {
                l = &l[..i];
            }
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}

fn ident(s: &str) -> &str {
    let n = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..n]
}

/// The names a path after `prefix::` reaches: one identifier, or each of a `{...}` group.
fn paths_after<'t>(text: &'t str, prefix: &str) -> Vec<&'t str> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices(prefix) {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &text[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(
                group
                    .split(',')
                    .map(|p| ident(p.trim()))
                    .filter(|p| !p.is_empty()),
            );
        } else {
            out.push(ident(rest));
        }
    }
    out
}

/// Top-level module -> the top-level modules its files reference.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut mods = BTreeSet::new();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        let stem = p.file_stem().unwrap().to_str().unwrap().to_string();
        if p.is_dir() || (p.extension().is_some_and(|x| x == "rs") && stem != "lib") {
            mods.insert(stem);
        }
    }
    // Items the crate root re-exports from its modules (`pub use m::{A, B};`).
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let lib = code(&src.join("lib.rs"));
    for stmt in lib.split(';') {
        let Some(i) = stmt.find("use ") else { continue };
        let path = stmt[i + 4..].trim();
        let path = path
            .strip_prefix("crate::")
            .or_else(|| path.strip_prefix("self::"))
            .unwrap_or(path);
        let m = ident(path);
        if mods.contains(m) {
            for n in path[m.len()..]
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|n| !n.is_empty())
            {
                names.insert(n.to_string(), m.to_string());
            }
        }
    }
    let mut graph = BTreeMap::new();
    for m in &mods {
        let mut files = vec![];
        let file = src.join(format!("{m}.rs"));
        if file.is_file() {
            files.push((file, true));
        }
        let dir = src.join(m);
        if dir.is_dir() {
            let mut stack = vec![dir];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(d).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if p.extension().is_some_and(|x| x == "rs") {
                        files.push((p, false));
                    }
                }
            }
        }
        let mut refs = BTreeSet::new();
        for (f, top) in files {
            let text = code(&f);
            let mut found = paths_after(&text, "crate::");
            if top {
                // A file directly under src/: `super::` is the crate root.
                found.extend(paths_after(&text, "super::"));
            }
            for n in found {
                let target = names.get(n).map_or(n, |s| s.as_str());
                if mods.contains(target) && target != m {
                    refs.insert(target.to_string());
                }
            }
        }
        graph.insert(m.clone(), refs);
    }
    graph
}

/// A cycle of the graph, if any.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for d in &g[n] {
            match state.get(d) {
                Some(1) => {
                    let i = stack.iter().position(|s| s == d).unwrap();
                    let mut c = stack[i..].to_vec();
                    c.push(d.clone());
                    return Some(c);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(d, g, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if !state.contains_key(n) {
            if let Some(c) = visit(n, graph, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn crates_depend_only_downwards() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(c, d)| (*c, d.iter().copied().collect()))
        .collect();
    for dir in crates() {
        let (name, ds) = deps(&dir.join("Cargo.toml"));
        println!("{name} -> {ds:?}");
        let ok = allowed
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name}: no entry in tests/it/arrows.rs ALLOWED"));
        let up: Vec<&String> = ds.iter().filter(|d| !ok.contains(d.as_str())).collect();
        assert!(
            up.is_empty(),
            "{name} must not depend on {up:?}: an arrow pointing up"
        );
    }
}

#[test]
fn no_module_cycles() {
    for dir in crates() {
        let (name, _) = deps(&dir.join("Cargo.toml"));
        let g = module_graph(&dir.join("src"));
        for (m, refs) in &g {
            if !refs.is_empty() {
                println!("{name}::{m} -> {refs:?}");
            }
        }
        assert_eq!(cycle(&g), None, "{name}: a module cycle");
    }
}

/// The checks can fail: a cycle and a re-exported reference are found in a made-up crate.
#[test]
fn a_cycle_is_found() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\npub use b::Thing;\n").unwrap();
    std::fs::write(
        src.join("a.rs"),
        "use crate::Thing; // crate::c in a comment\n",
    )
    .unwrap();
    std::fs::write(src.join("b.rs"), "fn f() { super::a::g() }\n").unwrap();
    let g = module_graph(src);
    assert_eq!(g["a"], BTreeSet::from(["b".to_string()]));
    assert_eq!(g["b"], BTreeSet::from(["a".to_string()]));
    assert!(cycle(&g).is_some());
}
