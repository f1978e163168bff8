//! The shape of `src/`, as lib.rs states it: the modules import each other
//! as a tree, never in a cycle, and the modules its invariant names pure do
//! no IO and are not async. Read from the source text: the modules are those lib.rs declares,
//! so a new module or a new import is checked without being listed here.
//! Unit tests (`#[cfg(test)] mod ...`) are left out: like the integration
//! tests, they stand above the code they test and may use any of it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What IO or async looks like in source text. `core::net` holds the
/// address types without the sockets; `std::net` is where the sockets are.
const NOT_PURE: &[&str] = &["async fn", "tokio", "std::process", "std::net"];

/// One file of `src/`, without its comments and literals (lines kept).
struct Source {
    /// As printed: `src/diff/running.rs`.
    path: String,
    /// Its module path: `["diff", "running"]`.
    modules: Vec<String>,
    code: String,
}

/// One import: `from` names `to` at `path:line` in `text`.
#[derive(Debug, Clone)]
struct Import {
    from: String,
    to: String,
    at: String,
    text: String,
}

#[test]
fn src_modules_import_each_other_without_a_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = declared_modules(&read(&root.join("lib.rs")));
    assert!(modules.len() > 5, "lib.rs declares {modules:?}");
    let sources = sources(&root, &modules);
    let cycles = cycles(&imports(&sources, &modules));
    assert!(cycles.is_empty(), "{}", cycles.join("\n"));
}

#[test]
fn pure_modules_do_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib_rs = read(&root.join("lib.rs"));
    let modules = declared_modules(&lib_rs);
    let pure = pure_modules(&lib_rs);
    assert!(pure.len() > 5, "lib.rs names {pure:?} pure");
    for m in &pure {
        assert!(
            modules.contains(m),
            "lib.rs says `{m}` does no IO but declares no such module"
        );
    }
    let found = io_in_pure(&sources(&root, &modules), &pure);
    assert!(
        found.is_empty(),
        "IO or async in a pure module:\n{}",
        found.join("\n")
    );
}

/// No function in src is longer than 120 lines (unit tests and the GUC
/// catalog, a data table, aside): counted from its `fn` line to its
/// closing brace, on the code with comments and strings blanked.
#[test]
fn no_function_is_over_120_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = declared_modules(&read(&root.join("lib.rs")));
    let mut long = Vec::new();
    for s in sources(&root, &modules) {
        if s.path.ends_with("guc/catalog.rs") {
            continue;
        }
        for (name, line, lines) in function_lengths(&s.code) {
            if lines > 120 {
                long.push(format!("{}:{line}: fn {name} is {lines} lines", s.path));
            }
        }
    }
    assert!(long.is_empty(), "{}", long.join("\n"));
    let planted = format!(
        "fn short() {{\n}}\nfn long() {{\n{}}}\n",
        "x;\n".repeat(130)
    );
    assert_eq!(
        function_lengths(&planted),
        [("short".to_string(), 1, 2), ("long".to_string(), 3, 132)]
    );
}

/// (name, first line, lines) of every `fn` with a body in `code`.
fn function_lengths(code: &str) -> Vec<(String, usize, usize)> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 3 < chars.len() {
        let starts_word = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if !(starts_word && chars[i..].starts_with(&['f', 'n', ' '])) {
            i += 1;
            continue;
        }
        let name: String = chars[i + 3..]
            .iter()
            .take_while(|c| c.is_alphanumeric() || **c == '_')
            .collect();
        // The body opens at the first `{` before any `;` (a declaration).
        let mut j = i + 3;
        while j < chars.len() && chars[j] != '{' && chars[j] != ';' {
            j += 1;
        }
        if j >= chars.len() || chars[j] == ';' {
            i = j;
            continue;
        }
        let mut depth = 0;
        let mut k = j;
        while k < chars.len() {
            match chars[k] {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            k += 1;
        }
        let line_of = |at: usize| chars[..at].iter().filter(|c| **c == '\n').count() + 1;
        let first = line_of(i);
        out.push((name, first, line_of(k.min(chars.len() - 1)) - first + 1));
        i = j + 1;
    }
    out
}

/// The checks themselves, on planted files: a cycle through three modules
/// (one import in a `use` group, one through `super::`), and `tokio` in a
/// module lib.rs calls pure, are each found and printed with where they
/// are; what unit tests import is not counted.
#[test]
fn the_checks_find_a_planted_cycle_and_io() {
    let modules: Vec<String> = ["a", "b", "c", "diff"].map(String::from).to_vec();
    let planted = [
        ("src/a.rs", "use crate::{b::Thing, text};\n"),
        ("src/b/mod.rs", "mod inner;\n#[cfg(test)]\nmod tests;\n"),
        ("src/b/tests.rs", "use crate::diff;\n"),
        (
            "src/b/inner.rs",
            "// crate::a in a comment is no import\nfn f() { super::super::c::g() }\n",
        ),
        (
            "src/c.rs",
            "fn g() { let s = \"crate::b\"; crate::a::h(s) }\n#[cfg(test)]\nmod tests {\n    use crate::diff;\n}\n",
        ),
        (
            "src/diff/x.rs",
            "use crate::a;\nasync fn f() { tokio::spawn(async {}); }\n",
        ),
    ];
    let sources: Vec<Source> = planted
        .iter()
        .map(|(path, text)| source(path, text))
        .collect();
    let sources = without_test_files(sources);
    let imports = imports(&sources, &modules);
    assert!(!imports.iter().any(|i| i.to == "diff"), "{imports:?}");
    let cycles = cycles(&imports);
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    let cycle = &cycles[0];
    assert!(
        cycle.starts_with("import cycle: a -> b -> c -> a"),
        "{cycle}"
    );
    assert!(
        cycle.contains("src/b/inner.rs:2 super::super::c::g"),
        "{cycle}"
    );
    let lib_rs = "//! Invariants:\n//! - No cycle.\n//! - `a` and `diff` do no IO\n//!   and are not async.\n//! - Only `c` talks.\npub mod a;\n";
    assert_eq!(pure_modules(lib_rs), ["a", "diff"]);
    let io = io_in_pure(&sources, &["diff".to_string()]);
    assert_eq!(
        io,
        ["src/diff/x.rs:2: async fn", "src/diff/x.rs:2: tokio"],
        "{io:?}"
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `mod NAME;` and `pub mod NAME;` of lib.rs.
fn declared_modules(lib_rs: &str) -> Vec<String> {
    strip(lib_rs)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            l.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_string)
        })
        .collect()
}

/// Every `.rs` file of the declared modules.
fn sources(root: &Path, modules: &[String]) -> Vec<Source> {
    let mut files = Vec::new();
    for m in modules {
        let file = root.join(format!("{m}.rs"));
        if file.is_file() {
            files.push(file);
        }
        collect_rs(&root.join(m), &mut files);
    }
    assert!(!files.is_empty(), "no sources under {}", root.display());
    let base = root.parent().unwrap_or(root);
    let all: Vec<Source> = files
        .iter()
        .map(|f| {
            let path = f
                .strip_prefix(base)
                .unwrap_or(f)
                .to_string_lossy()
                .into_owned();
            source(&path, &read(f))
        })
        .collect();
    without_test_files(all)
}

/// Leaves out the files that a `#[cfg(test)] mod NAME;` declares.
fn without_test_files(all: Vec<Source>) -> Vec<Source> {
    let tests: Vec<Vec<String>> = all
        .iter()
        .flat_map(|s| {
            test_modules(&s.code).into_iter().map(|name| {
                let mut m = s.modules.clone();
                m.push(name);
                m
            })
        })
        .collect();
    all.into_iter()
        .filter(|s| !tests.iter().any(|t| s.modules.starts_with(t)))
        .collect()
}

/// The names of the modules declared `#[cfg(test)] mod NAME;` in `code`.
fn test_modules(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        rest = &rest[at + "#[cfg(test)]".len()..];
        let words: Vec<&str> = rest.split_whitespace().take(2).collect();
        if let ["mod", name] = words[..]
            && let Some(name) = name.strip_suffix(';')
        {
            out.push(name.to_string());
        }
    }
    out
}

/// `code` with every inline `#[cfg(test)] mod NAME { ... }` blanked out
/// (newlines kept).
fn without_inline_tests(code: &str) -> String {
    let mut out = code.to_string();
    let mut from = 0;
    while let Some(at) = out[from..].find("#[cfg(test)]").map(|a| a + from) {
        from = at + "#[cfg(test)]".len();
        let words: Vec<&str> = out[from..].split_whitespace().take(2).collect();
        let (Some(&"mod"), Some(name)) = (words.first(), words.get(1)) else {
            continue;
        };
        if name.ends_with(';') {
            continue;
        }
        let Some(open) = out[from..].find('{').map(|o| o + from) else {
            continue;
        };
        let mut depth = 0;
        let mut end = out.len();
        for (i, c) in out[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        let blank: String = out[at..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(at..end, &blank);
        from = end;
    }
    out
}

fn collect_rs(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect_rs(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn source(path: &str, text: &str) -> Source {
    let rel = path.strip_prefix("src/").unwrap_or(path);
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut modules: Vec<String> = rel.split('/').map(String::from).collect();
    if modules.last().is_some_and(|m| m == "mod") {
        modules.pop();
    }
    Source {
        path: path.to_string(),
        modules,
        code: without_inline_tests(&strip(text)),
    }
}

/// Comments, string and char literals blanked out, newlines kept: what
/// is left is code, so `// crate::x` or `"tokio"` is not taken for it.
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        let ident = |c: char| c.is_alphanumeric() || c == '_';
        let ident_before = i > 0 && ident(chars[i - 1]);
        // `br"..."`: the `b` is part of the literal, not an identifier.
        let byte_raw = i > 0 && chars[i - 1] == 'b' && (i < 2 || !ident(chars[i - 2]));
        let len = if rest.starts_with(&['/', '/']) {
            rest.iter().position(|&c| c == '\n').unwrap_or(rest.len())
        } else if rest.starts_with(&['/', '*']) {
            block_comment_len(rest)
        } else if (!ident_before || byte_raw)
            && (rest.starts_with(&['r', '#']) || rest.starts_with(&['r', '"']))
        {
            raw_string_len(rest)
        } else if rest[0] == '"' {
            string_len(rest)
        } else if rest[0] == '\'' {
            char_len(rest)
        } else {
            0
        };
        if len == 0 {
            out.push(chars[i]);
            i += 1;
        } else {
            out.extend(rest[..len].iter().map(|&c| blank(c)));
            i += len;
        }
    }
    out
}

fn block_comment_len(s: &[char]) -> usize {
    let (mut depth, mut i) = (0, 0);
    while i < s.len() {
        if s[i..].starts_with(&['/', '*']) {
            depth += 1;
            i += 2;
        } else if s[i..].starts_with(&['*', '/']) {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    s.len()
}

/// `r"..."`, `r#"..."#`; 0 when `r` starts an identifier instead.
fn raw_string_len(s: &[char]) -> usize {
    let hashes = s[1..].iter().take_while(|&&c| c == '#').count();
    if s.get(1 + hashes) != Some(&'"') {
        return 0;
    }
    let close: Vec<char> = std::iter::once('"')
        .chain(std::iter::repeat_n('#', hashes))
        .collect();
    let body = 2 + hashes;
    (body..s.len())
        .find(|&i| s[i..].starts_with(&close))
        .map_or(s.len(), |i| i + close.len())
}

fn string_len(s: &[char]) -> usize {
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    s.len()
}

/// A char literal (`'x'`, `'\n'`, `'\u{1F600}'`); 0 for a lifetime (`'a`).
fn char_len(s: &[char]) -> usize {
    match s.get(1) {
        Some('\\') => s[3..].iter().position(|&c| c == '\'').map_or(0, |p| p + 4),
        Some(_) if s.get(2) == Some(&'\'') => 3,
        _ => 0,
    }
}

/// The imports between declared modules: `crate::m`, `crate::{m, ...}`,
/// and `super::` climbing out of the file's own module.
fn imports(sources: &[Source], modules: &[String]) -> Vec<Import> {
    let mut out = Vec::new();
    for src in sources {
        let from = &src.modules[0];
        let inline = inline_modules(&src.code);
        for (n, line) in src.code.lines().enumerate() {
            // Inside `mod tests { ... }`, `super` is the file's own module.
            let mut own = src.modules.clone();
            own.extend((0..inline[n]).map(|_| "(inline)".to_string()));
            for (text, target) in paths_in(line, &own) {
                if modules.contains(&target) && target != *from {
                    out.push(Import {
                        from: from.clone(),
                        to: target,
                        at: format!("{}:{}", src.path, n + 1),
                        text,
                    });
                }
            }
        }
    }
    out
}

/// For each line, how many inline modules (`mod tests { ... }`) enclose it.
fn inline_modules(code: &str) -> Vec<usize> {
    let mut per_line = vec![0];
    let (mut depth, mut open): (usize, Vec<usize>) = (0, Vec::new());
    let mut words: Vec<&str> = Vec::new();
    let mut word = String::new();
    for c in code.chars() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            words.push(if word == "mod" { "mod" } else { "ident" });
            word.clear();
        }
        match c {
            '{' => {
                depth += 1;
                if words.len() >= 2 && words[words.len() - 2] == "mod" {
                    open.push(depth);
                }
                words.clear();
            }
            '}' => {
                if open.last() == Some(&depth) {
                    open.pop();
                }
                depth = depth.saturating_sub(1);
                words.clear();
            }
            ';' => words.clear(),
            '\n' => per_line.push(open.len()),
            _ => {}
        }
    }
    per_line
}

/// The top-level modules a line names, each with the path as written.
fn paths_in(line: &str, own: &[String]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < line.len() {
        let ident_before = i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let after_path = i >= 2 && &line[i - 2..i] == "::";
        if ident_before || after_path {
            i += 1;
            continue;
        }
        let rest = &line[i..];
        let (base, len): (Vec<String>, usize) = if rest.starts_with("crate::") {
            (Vec::new(), "crate::".len())
        } else if rest.starts_with("super::") {
            let mut ups = 0;
            while rest[ups * "super::".len()..].starts_with("super::") {
                ups += 1;
            }
            // A file's own module path, less one level per `super`
            // (the file itself is the last level).
            let keep = own.len().saturating_sub(ups);
            (own[..keep].to_vec(), ups * "super::".len())
        } else {
            i += 1;
            continue;
        };
        let tail = &rest[len..];
        let written = &rest[..len];
        if let Some(top) = base.first() {
            found.push((format!("{written}{}", path_text(tail)), top.clone()));
        } else if let Some(group) = tail.strip_prefix('{') {
            for item in group_items(group) {
                found.push((
                    format!("{written}{}", path_text(&item)),
                    first_segment(&item),
                ));
            }
        } else {
            found.push((format!("{written}{}", path_text(tail)), first_segment(tail)));
        }
        i += len;
    }
    found
}

/// `a::b::C` of `a::b::C::new()`: the path as written, up to what is not.
fn path_text(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect::<String>()
        .trim_end_matches(':')
        .to_string()
}

fn first_segment(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The items of a `{...}` group at its top level, up to its closing brace.
fn group_items(group: &str) -> Vec<String> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(group[start..i].trim().to_string());
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(group[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    items.retain(|s| !s.is_empty() && s != "self");
    items
}

/// Every cycle among the modules (one per strongly connected set), with
/// the imports that close it.
fn cycles(imports: &[Import]) -> Vec<String> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for i in imports {
        graph.entry(&i.from).or_default().insert(&i.to);
        graph.entry(&i.to).or_default();
    }
    let mut out = Vec::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for &start in graph.keys() {
        if seen.contains(start) {
            continue;
        }
        let Some(path) = path_back(&graph, start) else {
            continue;
        };
        // Its strongly connected set: what it reaches that reaches it back.
        seen.extend(
            reachable(&graph, start)
                .into_iter()
                .filter(|&m| reachable(&graph, m).contains(start)),
        );
        let mut text = format!("import cycle: {}", path.join(" -> "));
        for pair in path.windows(2) {
            let first = imports
                .iter()
                .find(|i| i.from == pair[0] && i.to == pair[1])
                .map_or(String::new(), |i| format!("{} {}", i.at, i.text));
            text.push_str(&format!("\n  {} -> {}: {first}", pair[0], pair[1]));
        }
        out.push(text);
    }
    out
}

/// The shortest way from `start` back to itself, as module names.
fn path_back<'a>(
    graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
    start: &'a str,
) -> Option<Vec<&'a str>> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(at) = queue.pop_front() {
        for &next in &graph[at] {
            if next == start {
                let mut path = vec![start, at];
                let mut cur = at;
                while cur != start {
                    cur = came_from[cur];
                    path.push(cur);
                }
                path.reverse();
                return Some(path);
            }
            if next != start && !came_from.contains_key(next) {
                came_from.insert(next, at);
                queue.push_back(next);
            }
        }
    }
    None
}

fn reachable<'a>(
    graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
    start: &'a str,
) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::from([start]);
    let mut todo = vec![start];
    while let Some(at) = todo.pop() {
        for &next in &graph[at] {
            if seen.insert(next) {
                todo.push(next);
            }
        }
    }
    seen
}

/// The modules lib.rs's invariant names as doing no IO: the names in
/// backquotes of the `//! - ` item that says "do no IO".
fn pure_modules(lib_rs: &str) -> Vec<String> {
    let doc: Vec<&str> = lib_rs
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(str::trim)
        .collect();
    let mut items: Vec<String> = Vec::new();
    for line in doc {
        match line.strip_prefix("- ") {
            Some(item) => items.push(item.to_string()),
            None if line.is_empty() => items.push(String::new()),
            None => {
                if let Some(last) = items.last_mut() {
                    last.push(' ');
                    last.push_str(line);
                }
            }
        }
    }
    let Some(item) = items.iter().find(|i| i.contains("do no IO")) else {
        return Vec::new();
    };
    item.split('`')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

/// `path:line: what` for every sign of IO or async in a `pure` module.
fn io_in_pure(sources: &[Source], pure: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for src in sources.iter().filter(|s| pure.contains(&s.modules[0])) {
        for (n, line) in src.code.lines().enumerate() {
            for what in NOT_PURE {
                if line.contains(what) {
                    found.push(format!("{}:{}: {what}", src.path, n + 1));
                }
            }
        }
    }
    found
}
