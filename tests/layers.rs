//! The one-way flow of `src/`, checked on the source: every `crate::<module>` path names a
//! module of a lower layer than the one it is written in (README, "How it is built"). A module
//! that reaches up, or a new top-level module left out of the table, fails here with the file
//! and the path that did it. No circle can form between top-level modules while this passes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level modules of `src/`, lowest layer first. Modules on one line share a layer and may
/// not import each other.
const LAYERS: &[&[&str]] = &[
    &["types", "metrics"],
    &["coin"],
    &["config", "store"],
    &["rest"],
    &["daemon"],
    &["mempool"],
    &["index"],
    &["query"],
    &["protocol"],
    &["sessions", "peers"],
    &["net"],
    &["admin"],
    &["app", "cli", "fuzzing"],
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's text without `//` comments (doc links may name any module).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a piece of code names through `crate::`, including grouped imports
/// (`crate::{a::X, b}`).
fn imports(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(std::mem::take(&mut item));
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.push(item);
        } else {
            out.push(rest.to_string());
        }
    }
    out.iter()
        .map(|s| {
            s.trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn every_module_imports_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut unknown = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel.iter().next().unwrap().to_string_lossy();
        let top = top.trim_end_matches(".rs").to_string();
        // The crate root and the binaries sit above every module.
        if matches!(top.as_str(), "lib" | "main" | "bin") {
            continue;
        }
        if rank(&top).is_none() {
            unknown.push(top.clone());
        }
        let text = std::fs::read_to_string(file).unwrap();
        for to in imports(&code(&text)) {
            if to != top {
                edges
                    .entry((top.clone(), to))
                    .or_insert_with(|| rel.display().to_string());
            }
        }
    }
    unknown.sort();
    unknown.dedup();
    assert!(
        unknown.is_empty(),
        "top-level modules missing from LAYERS: {unknown:?}"
    );
    let upward: Vec<String> = edges
        .iter()
        .filter(|((from, to), _)| match (rank(from), rank(to)) {
            (Some(f), Some(t)) => t >= f,
            // A path that is not a module (a macro or a re-export) is not an import edge.
            _ => false,
        })
        .map(|((from, to), file)| format!("{file}: {from} imports {to}"))
        .collect();
    assert!(
        upward.is_empty(),
        "imports against the flow:\n{}",
        upward.join("\n")
    );
    // The check saw the real tree: the composition root imports most of it.
    assert!(edges.keys().filter(|(from, _)| from == "app").count() >= 8);
}

#[test]
fn grouped_and_nested_paths_are_read() {
    let found = imports(
        "use crate::{coin::Chain, store::{Store, Mode}};\nlet x = crate::types::Height(1);",
    );
    assert_eq!(found, vec!["coin", "store", "types"]);
    assert_eq!(
        imports(&code("// see crate::app\nuse crate::index;")),
        vec!["index"]
    );
}
