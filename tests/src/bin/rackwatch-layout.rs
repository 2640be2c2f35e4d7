//! The layout check (tests/layout.sh runs it): import circles between a crate's modules, and files over
//! 600 lines, in the source folders given.
//!
//! A module is a file (`foo.rs`, or `foo/mod.rs` for the folder `foo`). Its edges are the module files
//! its paths name: `crate::a::b::Item` (longest prefix that is a module), `super::...`, `self::...`, and
//! `use child::...` for a child it declares with `mod child;`. Doc comments and comments are not
//! imports. The crate root (`lib.rs`, `main.rs`) only lists and re-exports modules, so its own edges
//! are left out (every module would otherwise sit in a circle with it); edges into it count.
//! Test code is not layout: files named `tests.rs` or `*_tests.rs`, files under a `tests/` folder, and a
//! `#[cfg(test)] mod tests { ... }` block that ends its file are left out of both checks.
//!
//! Written in Rust rather than shell because `use` trees nest (`use crate::{a::B, c::{D, E}}`) and
//! circles need a graph search; both are short and testable here, and the binary builds with the
//! rest of the test crate.
//!
//! Usage: `rackwatch-layout [--report] FOLDER...`: prints each circle by its files and each long file;
//! exits 1 if there is any, unless `--report` (print only).

#![allow(
    clippy::print_stdout,
    reason = "a command-line check: its report is its output"
)]
#![allow(
    clippy::indexing_slicing,
    reason = "reads the repository's own source; every slice bound comes from a find on the same text"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Files longer than this (test code left out) are reported.
const MAX_LINES: usize = 600;

type ModPath = Vec<String>;

/// Files that reach each other through imports (a strongly connected component of the module graph).
#[derive(Debug)]
struct Circle {
    members: Vec<PathBuf>,
    example: Vec<PathBuf>,
}

/// What the check found in one source folder.
#[derive(Debug, Default)]
struct Findings {
    /// Each set of files that import each other in a circle, with one shortest circle through the
    /// first of them (its first file repeated at the end).
    circles: Vec<Circle>,
    /// Files over [`MAX_LINES`], with their line count.
    long_files: Vec<(PathBuf, usize)>,
}

fn main() -> ExitCode {
    let mut report_only = false;
    let mut folders = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--report" => report_only = true,
            "-h" | "--help" => {
                println!("usage: rackwatch-layout [--report] FOLDER...");
                return ExitCode::SUCCESS;
            }
            _ => folders.push(PathBuf::from(arg)),
        }
    }
    if folders.is_empty() {
        eprintln!("usage: rackwatch-layout [--report] FOLDER...");
        return ExitCode::from(2);
    }
    let mut offending = false;
    for folder in &folders {
        let findings = match check(folder) {
            Ok(findings) => findings,
            Err(error) => {
                eprintln!("layout: cannot read {}: {error}", folder.display());
                return ExitCode::from(2);
            }
        };
        for circle in &findings.circles {
            let show = |files: &[PathBuf], separator: &str| {
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(separator)
            };
            println!(
                "layout: {}: import circle among {} files: {} (for example {})",
                folder.display(),
                circle.members.len(),
                show(&circle.members, ", "),
                show(&circle.example, " -> ")
            );
        }
        for (file, lines) in &findings.long_files {
            println!(
                "layout: {}: {} has {lines} lines (over {MAX_LINES})",
                folder.display(),
                file.display()
            );
        }
        if findings.circles.is_empty() && findings.long_files.is_empty() {
            println!(
                "layout: {}: no import circle, no file over {MAX_LINES} lines",
                folder.display()
            );
        }
        offending |= !findings.circles.is_empty() || !findings.long_files.is_empty();
    }
    if offending && !report_only {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Reads every module file under `root` and finds its circles and long files.
fn check(root: &Path) -> std::io::Result<Findings> {
    let mut files = Vec::new();
    collect_rs(root, root, &mut files)?;
    let mut modules: BTreeMap<ModPath, PathBuf> = BTreeMap::new();
    let mut sources: Vec<(PathBuf, ModPath, String)> = Vec::new();
    let mut findings = Findings::default();
    for relative in files {
        if is_test_file(&relative) {
            continue;
        }
        let text = std::fs::read_to_string(root.join(&relative))?;
        let code = without_trailing_tests(&text);
        let lines = code.lines().count();
        if lines > MAX_LINES {
            findings.long_files.push((relative.clone(), lines));
        }
        let path = module_path(&relative);
        modules.insert(path.clone(), relative.clone());
        sources.push((relative, path, strip_comments(code)));
    }
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for (file, path, code) in &sources {
        let targets = edges.entry(file.clone()).or_default();
        if path.is_empty() {
            continue;
        }
        let children = declared_children(code);
        for named in referenced_paths(code) {
            if let Some(target) = resolve(&named, path, &children, &modules)
                && target != *path
                && let Some(target_file) = modules.get(&target)
            {
                targets.insert(target_file.clone());
            }
        }
    }
    if std::env::var_os("LAYOUT_EDGES").is_some() {
        for (file, targets) in &edges {
            for target in targets {
                println!("edge {} -> {}", file.display(), target.display());
            }
        }
    }
    findings.circles = circles(&edges);
    Ok(findings)
}

fn collect_rs(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            // `src/bin/*` are crates of their own.
            if dir == root && entry.file_name() == "bin" {
                continue;
            }
            collect_rs(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs")
            && let Ok(relative) = path.strip_prefix(root)
        {
            out.push(relative.to_path_buf());
        }
    }
    Ok(())
}

fn is_test_file(relative: &Path) -> bool {
    let name = relative.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name == "tests.rs"
        || name.ends_with("_tests.rs")
        || relative
            .parent()
            .is_some_and(|p| p.components().any(|c| c.as_os_str() == "tests"))
}

/// `a/b.rs` is `a::b`, `a/mod.rs` is `a`, `lib.rs` and `main.rs` are the crate root.
fn module_path(relative: &Path) -> ModPath {
    let mut path: ModPath = relative
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect();
    if path.last().is_some_and(|l| l == "mod") || (path.len() == 1 && (path[0] == "lib" || path[0] == "main"))
    {
        path.pop();
    }
    path
}

/// The text before a `#[cfg(test)] mod tests { ... }` block that runs to the end of the file.
fn without_trailing_tests(text: &str) -> &str {
    let marker = "#[cfg(test)]\nmod tests {";
    let Some(start) = text.rfind(marker) else {
        return text;
    };
    let block = &text[start + marker.len() - 1..];
    let mut depth = 0i32;
    for (index, c) in block.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return if block[index + 1..].trim().is_empty() {
                        &text[..start]
                    } else {
                        text
                    };
                }
            }
            _ => {}
        }
    }
    text
}

/// Drops `//` comments (doc comments included) and `/* */` blocks; string contents are not paths
/// anyway, so a `//` inside a string only shortens what is searched.
fn strip_comments(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        rest = rest[start..]
            .find("*/")
            .map_or("", |end| &rest[start + end + 2..]);
    }
    out.push_str(rest);
    out.lines()
        .map(|line| line.find("//").map_or(line, |at| &line[..at]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Children declared with `mod name;` (inline `mod name { }` bodies belong to this file).
fn declared_children(code: &str) -> BTreeSet<String> {
    code.lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line
                .strip_prefix("pub ")
                .or_else(|| line.strip_prefix("pub(crate) "))
                .unwrap_or(line);
            let name = line.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_string())
        })
        .collect()
}

/// Every path the code names: each leaf of each `use` tree, and each `crate::`/`super::`/`self::`
/// path written inline.
fn referenced_paths(code: &str) -> Vec<ModPath> {
    let mut paths = Vec::new();
    let bytes = code.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut at = 0;
    while let Some(found) = code[at..].find("use ") {
        let start = at + found;
        at = start + 4;
        if start > 0 && is_ident(bytes[start - 1]) {
            continue;
        }
        let Some(end) = code[at..].find(';') else { break };
        expand_use_tree(&code[at..at + end], &mut Vec::new(), &mut paths);
        at += end;
    }
    for root in ["crate::", "super::", "self::"] {
        let mut at = 0;
        while let Some(found) = code[at..].find(root) {
            let start = at + found;
            at = start + root.len();
            if start > 0 && (is_ident(bytes[start - 1]) || bytes[start - 1] == b':') {
                continue;
            }
            let end = code[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| start + e);
            paths.push(
                code[start..end]
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            );
        }
    }
    paths
}

/// Appends the full path of each leaf of a `use` tree (`a::{b, c::{d, e}}` gives `a::b`, `a::c::d`, `a::c::e`).
fn expand_use_tree(tree: &str, prefix: &mut ModPath, out: &mut Vec<ModPath>) {
    for item in split_top_level(tree) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let depth = prefix.len();
        match item.find('{') {
            Some(open) => {
                let head = &item[..open];
                prefix.extend(
                    head.split("::")
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from),
                );
                let inner = item[open + 1..].trim_end().trim_end_matches('}');
                expand_use_tree(inner, prefix, out);
            }
            None => {
                let item = item.split(" as ").next().unwrap_or(item);
                let mut path = prefix.clone();
                path.extend(
                    item.split("::")
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from),
                );
                out.push(path);
            }
        }
        prefix.truncate(depth);
    }
}

fn split_top_level(tree: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (index, c) in tree.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&tree[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&tree[start..]);
    parts
}

/// The module a path names, seen from module `from`: the longest prefix that is a module file.
fn resolve(
    named: &ModPath,
    from: &ModPath,
    children: &BTreeSet<String>,
    modules: &BTreeMap<ModPath, PathBuf>,
) -> Option<ModPath> {
    let mut segments = named.iter().peekable();
    let mut base: ModPath = match segments.peek().map(|s| s.as_str()) {
        Some("crate") => {
            segments.next();
            Vec::new()
        }
        Some("self") => {
            segments.next();
            from.clone()
        }
        Some("super") => {
            let mut base = from.clone();
            while segments.peek().is_some_and(|s| s.as_str() == "super") {
                segments.next();
                base.pop();
            }
            base
        }
        Some(first) if children.contains(first) => from.clone(),
        _ => return None,
    };
    let mut found = modules.contains_key(&base).then(|| base.clone());
    for segment in segments {
        base.push(segment.clone());
        if modules.contains_key(&base) {
            found = Some(base.clone());
        } else {
            break;
        }
    }
    found
}

/// Each strongly connected component of more than one file, with a shortest circle through its first file.
fn circles(edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Circle> {
    let nodes: Vec<&PathBuf> = edges.keys().collect();
    let index_of: BTreeMap<&PathBuf, usize> = nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let successors: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| {
            edges[*n]
                .iter()
                .filter_map(|t| index_of.get(t).copied())
                .collect()
        })
        .collect();
    // Tarjan's algorithm, iterative.
    let count = nodes.len();
    let (mut index, mut low, mut on_stack) = (vec![usize::MAX; count], vec![0; count], vec![false; count]);
    let (mut stack, mut next, mut components) = (Vec::new(), 0, Vec::new());
    for start in 0..count {
        if index[start] != usize::MAX {
            continue;
        }
        let mut work = vec![(start, 0usize)];
        while let Some(&mut (node, ref mut child)) = work.last_mut() {
            if *child == 0 && index[node] == usize::MAX {
                index[node] = next;
                low[node] = next;
                next += 1;
                stack.push(node);
                on_stack[node] = true;
            }
            if let Some(&succ) = successors[node].get(*child) {
                *child += 1;
                if index[succ] == usize::MAX {
                    work.push((succ, 0));
                } else if on_stack[succ] {
                    low[node] = low[node].min(index[succ]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[node]);
            }
            if low[node] == index[node] {
                let mut component = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort_unstable();
                    components.push(component);
                }
            }
        }
    }
    components
        .into_iter()
        .map(|component| {
            let members: BTreeSet<usize> = component.iter().copied().collect();
            let cycle = shortest_cycle(component[0], &members, &successors);
            Circle {
                members: component.iter().map(|&i| nodes[i].clone()).collect(),
                example: cycle.into_iter().map(|i| nodes[i].clone()).collect(),
            }
        })
        .collect()
}

/// A shortest path from `start` back to itself inside `members` (breadth first).
fn shortest_cycle(start: usize, members: &BTreeSet<usize>, successors: &[Vec<usize>]) -> Vec<usize> {
    let mut came_from: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for &succ in &successors[node] {
            if !members.contains(&succ) {
                continue;
            }
            if succ == start {
                let mut path = vec![start];
                let mut at = node;
                let mut back = Vec::new();
                while at != start {
                    back.push(at);
                    at = came_from.get(&at).copied().unwrap_or(start);
                }
                path.extend(back.into_iter().rev());
                path.push(start);
                return path;
            }
            if let std::collections::btree_map::Entry::Vacant(entry) = came_from.entry(succ) {
                entry.insert(node);
                queue.push_back(succ);
            }
        }
    }
    vec![start, start]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    /// A crate in a fresh temporary folder, from `(relative path, text)` pairs.
    fn crate_of(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let root = std::env::temp_dir().join(format!("rackwatch-layout-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (path, text) in files {
            let file = root.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        }
        root
    }

    #[test]
    fn a_circle_through_a_folder_module_and_a_use_tree_is_named_by_its_files() {
        let root = crate_of(
            "circle",
            &[
                ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
                ("a.rs", "use crate::{b::{Thing, Other}, c};\n"),
                ("b/mod.rs", "mod inner;\nuse inner::X;\n"),
                (
                    "b/inner.rs",
                    "// use crate::c::Never; a comment is not an import\npub fn f() { super::super::a::g() }\n",
                ),
                (
                    "c.rs",
                    "/// [`crate::a`] in a doc comment is not an import\npub struct C;\n",
                ),
            ],
        );
        let findings = check(&root).unwrap();
        assert_eq!(findings.circles.len(), 1, "{findings:?}");
        let members: Vec<_> = findings.circles[0]
            .members
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(members, ["a.rs", "b/inner.rs", "b/mod.rs"]);
        assert_eq!(
            findings.circles[0].example.first(),
            findings.circles[0].example.last()
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn lines_of_a_trailing_test_module_and_of_test_files_do_not_count() {
        let body = "pub fn f() {}\n".repeat(590);
        let tests = format!(
            "#[cfg(test)]\nmod tests {{\n{}}}\n",
            "    #[test]\n    fn t() {}\n".repeat(20)
        );
        let long = "pub fn f() {}\n".repeat(601);
        let root = crate_of(
            "long",
            &[
                ("lib.rs", "pub mod short;\npub mod long;\n"),
                ("short.rs", &format!("{body}{tests}")),
                ("long.rs", &long),
                ("short/tests.rs", &long),
                ("long_tests.rs", &long),
            ],
        );
        let findings = check(&root).unwrap();
        assert_eq!(findings.long_files, [(PathBuf::from("long.rs"), 601)]);
        assert!(findings.circles.is_empty(), "{findings:?}");
        std::fs::remove_dir_all(root).unwrap();
    }
}
