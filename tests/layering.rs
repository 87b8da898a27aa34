//! The layering rules of docs/ARCHITECTURE.md, checked on the source:
//!
//! - `http` is a leaf: it knows HTTP and nothing of the application, so it
//!   names no crate module but itself and the shared leaves;
//! - the domain (`store`, `blob`, `model`, `alerts`, `auth`, the ACME
//!   client `acme`, and `backup`) never names the
//!   HTTP layer, the handlers, the router, the application or its config:
//!   its errors are its own, and `handlers` turns them into answers;
//! - no two files of `http` import each other, directly or round a loop.
//!
//! A `use` that breaks a rule fails this test with the file and the line.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Modules with no dependencies of their own that every layer may use.
const LEAVES: &[&str] = &["text", "date", "hex", "sqlite", "group_commit", "peer"];

/// The domain modules and what they must never name.
const DOMAIN: &[&str] = &["store", "blob", "model", "alerts", "auth", "acme", "backup"];
const ABOVE_DOMAIN: &[&str] = &[
    "http", "handlers", "router", "routes", "app", "App", "config", "Config",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, recursively, in a stable order.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The code of a line, without a `//` comment (doc comments included).
fn code(line: &str) -> &str {
    match line.find("//") {
        Some(at) => &line[..at],
        None => line,
    }
}

/// The crate modules a line names, as `crate::NAME` (in a path or a `use`,
/// including `use crate::{a, b}` groups).
fn crate_modules(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            names.extend(group.split(',').map(|item| head(item.trim())));
        } else {
            names.push(head(after));
        }
        rest = after;
    }
    names.retain(|name| !name.is_empty());
    names
}

/// The first path segment of `path`.
fn head(path: &str) -> String {
    path.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

fn relative(path: &Path) -> String {
    path.strip_prefix(src()).unwrap().display().to_string()
}

/// Every line of `files` naming a crate module that `forbidden` refuses, as
/// `src/FILE:LINE: code`.
fn named_where_forbidden(files: &[PathBuf], forbidden: impl Fn(&str) -> bool) -> Vec<String> {
    let mut broken = Vec::new();
    for file in files {
        let text = fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if crate_modules(code(line)).iter().any(|name| forbidden(name)) {
                broken.push(format!("src/{}:{}: {}", relative(file), n + 1, line.trim()));
            }
        }
    }
    broken
}

#[test]
fn http_names_nothing_of_the_application() {
    let files = rust_files(&src().join("http"));
    let broken = named_where_forbidden(&files, |name| name != "http" && !LEAVES.contains(&name));
    assert!(
        broken.is_empty(),
        "http must not name application modules:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_domain_never_names_http_or_what_sits_above_it() {
    let mut files = Vec::new();
    for module in DOMAIN {
        let dir = src().join(module);
        if dir.is_dir() {
            files.extend(rust_files(&dir));
        } else {
            files.push(src().join(format!("{module}.rs")));
        }
    }
    let broken = named_where_forbidden(&files, |name| ABOVE_DOMAIN.contains(&name));
    assert!(
        broken.is_empty(),
        "domain modules must not name http, handlers, router, routes, app or config:\n{}",
        broken.join("\n")
    );
}

/// The `http` module each file of `http` imports: `super::NAME` and
/// `crate::http::NAME`.
fn http_imports(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines().map(code) {
        for prefix in ["super::", "crate::http::"] {
            let mut rest = line;
            while let Some(at) = rest.find(prefix) {
                let after = &rest[at + prefix.len()..];
                if let Some(group) = after.strip_prefix('{') {
                    let group = &group[..group.find('}').unwrap_or(group.len())];
                    names.extend(group.split(',').map(|item| head(item.trim())));
                } else {
                    names.insert(head(after));
                }
                rest = after;
            }
        }
    }
    names.retain(|name| !name.is_empty() && name != "self");
    names
}

#[test]
fn no_import_loops_inside_http() {
    let dir = src().join("http");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&dir) {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "mod" || file.parent() != Some(dir.as_path()) {
            continue;
        }
        let mut text = fs::read_to_string(&file).unwrap();
        // A file's own unit tests may use anything.
        if let Some(at) = text.find("#[cfg(test)]\nmod tests") {
            text.truncate(at);
        }
        let mut imports = http_imports(&text);
        imports.remove(&name);
        graph.insert(name, imports);
    }
    for imports in graph.values_mut() {
        // Names that are not files (items re-exported by mod.rs) are skipped.
        imports.retain(|name| dir.join(format!("{name}.rs")).is_file());
    }
    // Depth-first search for a path back to the start, from every file.
    let mut loops = Vec::new();
    for start in graph.keys() {
        let mut stack = vec![vec![start.clone()]];
        let mut seen = BTreeSet::new();
        while let Some(path) = stack.pop() {
            let last = path.last().unwrap();
            for next in graph.get(last).into_iter().flatten() {
                if next == start {
                    loops.push(format!("{} -> {start}", path.join(" -> ")));
                } else if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push(longer);
                }
            }
        }
    }
    assert!(
        loops.is_empty(),
        "import loops between http files:\n{}",
        loops.join("\n")
    );
}

#[test]
fn the_checks_see_imports() {
    // The parsing the rules rest on: a rule that sees nothing passes anything.
    assert_eq!(
        crate_modules("use crate::{http::ApiError, store::Store};"),
        ["http", "store"]
    );
    assert_eq!(
        crate_modules("let x = crate::text::excerpt(s, 3);"),
        ["text"]
    );
    assert_eq!(code("ok(); // crate::http"), "ok(); ");
    let imports = http_imports("use super::{body::Body, error};\nuse crate::http::head::Head;");
    assert_eq!(
        imports.into_iter().collect::<Vec<_>>(),
        ["body", "error", "head"]
    );
}
