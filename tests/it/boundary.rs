//! The boundary to the nodes, checked on the source tree (pure, no lab):
//! - only `transport/` and `node/` know tokio-postgres, only `transport/`
//!   knows openssh;
//! - every remote shell script is a file under `src/node/scripts/`, loaded
//!   by `src/node/scripts.rs`: no script text as a string anywhere else,
//!   and no `sh -c` built anywhere else;
//! - `node/remote.rs` is the one place a remote command line is made;
//! - transport imports nothing above it (gather, node, apply, cli).
//!
//! Test modules (`#[cfg(test)] mod ... { }`) are left out: they run local
//! fakes, not remote scripts.

use std::path::{Path, PathBuf};

/// One token of Rust source, as far as these checks need: comments are
/// dropped, string literals kept whole (their value), everything else is
/// words and punctuation.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Punct(char),
}

/// Tokens of `src`: comments dropped, strings (plain, raw, byte) read as
/// their text, char literals skipped, lifetimes as words.
fn tokens(src: &str) -> Vec<Token> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if ch == '"' {
            let (s, next) = plain_string(&c, i + 1);
            out.push(Token::Str(s));
            i = next;
        } else if (ch == 'r' || ch == 'b') && raw_string_start(&c, i).is_some() {
            let (hashes, body) = raw_string_start(&c, i).unwrap_or((0, i));
            let close: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let rest: String = c[body..].iter().collect();
            let end = rest.find(&close).unwrap_or(rest.len());
            out.push(Token::Str(rest[..end].to_string()));
            i = body + rest[..end].chars().count() + close.chars().count();
        } else if ch == 'b' && c.get(i + 1) == Some(&'"') {
            let (s, next) = plain_string(&c, i + 2);
            out.push(Token::Str(s));
            i = next;
        } else if ch == '\'' {
            // A char literal ('x', '\n', '\''), or a lifetime ('a).
            if c.get(i + 1) == Some(&'\\') {
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(Token::Word(c[start..i].iter().collect()));
        } else {
            if !ch.is_whitespace() {
                out.push(Token::Punct(ch));
            }
            i += 1;
        }
    }
    out
}

/// `r"`, `r#"`, `br##"`...: the number of hashes and where the body starts.
fn raw_string_start(c: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if c.get(j) == Some(&'b') {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    // Not the end of an identifier (`for"`, `bar"`).
    if i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while c.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (c.get(j) == Some(&'"')).then_some((hashes, j + 1))
}

/// A `"..."` string's text from `start` (after the quote), escapes kept
/// as written but for `\"` and `\\n`-style newlines; where it ends.
fn plain_string(c: &[char], start: usize) -> (String, usize) {
    let mut s = String::new();
    let mut i = start;
    while i < c.len() && c[i] != '"' {
        if c[i] == '\\' && i + 1 < c.len() {
            match c[i + 1] {
                'n' => s.push('\n'),
                't' => s.push('\t'),
                '"' => s.push('"'),
                '\\' => s.push('\\'),
                '\n' => {
                    // A line continuation: the next line's indentation is dropped.
                    i += 2;
                    while i < c.len() && c[i].is_whitespace() {
                        i += 1;
                    }
                    continue;
                }
                other => {
                    s.push('\\');
                    s.push(other);
                }
            }
            i += 2;
        } else {
            s.push(c[i]);
            i += 1;
        }
    }
    (s, i + 1)
}

/// The tokens outside `#[cfg(test)] mod NAME { ... }` blocks.
fn without_test_modules(tokens: &[Token]) -> Vec<Token> {
    let p = |ch| Token::Punct(ch);
    let w = |s: &str| Token::Word(s.to_string());
    let cfg_test = [
        p('#'),
        p('['),
        w("cfg"),
        p('('),
        w("test"),
        p(')'),
        p(']'),
        w("mod"),
    ];
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i..].starts_with(&cfg_test) {
            // `mod name;` (a file of its own, checked apart) or `mod name { .. }`.
            let mut j = i + cfg_test.len() + 1;
            if tokens.get(j) == Some(&p('{')) {
                let mut depth = 0;
                while j < tokens.len() {
                    match tokens[j] {
                        Token::Punct('{') => depth += 1,
                        Token::Punct('}') => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
            }
            i = j + 1;
            continue;
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out
}

/// What in a string literal marks it as shell script text: positional
/// parameters as a shell uses them, expansions, and compound commands.
/// (SQL's `$1` placeholders and prose with "; then" are none of these.)
fn shell_marks(s: &str) -> Vec<&'static str> {
    const MARKS: [&str; 14] = [
        "=$1", "=$2", "\"$1\"", "\"$2\"", "\"$@\"", "${", "$(", "$$", "]; then", "\nfi", "; fi\n",
        "esac", "; do\n", "\ndone",
    ];
    let mut found: Vec<&'static str> = MARKS.into_iter().filter(|m| s.contains(m)).collect();
    if s.ends_with("; fi") {
        found.push("; fi");
    }
    found
}

/// A file of `src/`, its path relative to `src/`.
struct SourceFile {
    rel: String,
    text: String,
}

fn source_files() -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let rel = path
                    .strip_prefix(&root)
                    .expect("under src")
                    .to_string_lossy()
                    .into_owned();
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                out.push(SourceFile { rel, text });
            }
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    out
}

fn in_dir(rel: &str, dir: &str) -> bool {
    rel.starts_with(dir)
}

/// Where a crate may be used.
const CRATES: [(&str, &[&str]); 2] = [
    ("tokio_postgres", &["transport/", "node/"]),
    ("openssh", &["transport/"]),
];

/// Every way a file can break the boundary, one line each.
fn violations(rel: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    if rel.ends_with(".sh") && !in_dir(rel, "node/scripts/") {
        found.push(format!("{rel}: a shell script outside src/node/scripts/"));
    }
    if !rel.ends_with(".rs") {
        return found;
    }
    let all = tokens(text);
    let scripts_home = rel == "node/scripts.rs" || in_dir(rel, "node/scripts/");
    let code = if scripts_home {
        all.clone()
    } else {
        without_test_modules(&all)
    };
    for (i, t) in all.iter().enumerate() {
        if let Token::Word(w) = t {
            for (krate, allowed) in CRATES {
                let used = w == krate
                    && (all.get(i + 1) == Some(&Token::Punct(':'))
                        || matches!(i.checked_sub(1).map(|j| &all[j]), Some(Token::Word(u)) if u == "use" || u == "crate"));
                if used && !allowed.iter().any(|d| in_dir(rel, d)) {
                    found.push(format!(
                        "{rel}: uses {krate}, which only {} may use",
                        allowed.join(" and ")
                    ));
                }
            }
        }
    }
    if !scripts_home {
        for t in &code {
            if let Token::Str(s) = t {
                if s == "-c" {
                    found.push(format!(
                        "{rel}: builds `sh -c` itself; remote scripts are run by node::scripts"
                    ));
                }
                let marks = shell_marks(s);
                if !marks.is_empty() {
                    let head: String = s.chars().take(40).collect();
                    found.push(format!(
                        "{rel}: a string holds shell script text ({}): {head:?}...",
                        marks.join(" ")
                    ));
                }
            }
        }
    }
    // A struct literal `RemoteCommand { .. }` (not its definition, not a
    // return type before a body).
    if rel != "node/remote.rs" {
        for w in code.windows(3) {
            if w[1] == Token::Word("RemoteCommand".into())
                && w[2] == Token::Punct('{')
                && w[0] != Token::Word("struct".into())
                && w[0] != Token::Punct('>')
            {
                found.push(format!(
                    "{rel}: makes a remote command line; only node/remote.rs does"
                ));
            }
        }
    }
    if in_dir(rel, "transport/") {
        for w in code.windows(4) {
            if let [
                Token::Word(c),
                Token::Punct(':'),
                Token::Punct(':'),
                Token::Word(m),
            ] = w
                && c == "crate"
                && ["gather", "node", "apply", "cli", "diff", "plan"].contains(&m.as_str())
            {
                found.push(format!(
                    "{rel}: transport imports crate::{m}, which is above it"
                ));
            }
        }
    }
    found.dedup();
    found
}

#[test]
fn only_transport_and_node_reach_the_nodes() {
    let files = source_files();
    assert!(
        files.iter().any(|f| f.rel == "node/scripts.rs"),
        "src/node/scripts.rs is where the scripts are loaded"
    );
    let found: Vec<String> = files
        .iter()
        .flat_map(|f| violations(&f.rel, &f.text))
        .collect();
    assert!(
        found.is_empty(),
        "the boundary to the nodes is broken:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_script_file_is_loaded_by_the_scripts_module() {
    let files = source_files();
    let loader = files
        .iter()
        .find(|f| f.rel == "node/scripts.rs")
        .expect("src/node/scripts.rs");
    for f in files.iter().filter(|f| f.rel.ends_with(".sh")) {
        let name = f.rel.trim_start_matches("node/");
        assert!(
            loader.text.contains(&format!("include_str!(\"{name}\")")),
            "src/{} is not loaded by src/node/scripts.rs",
            f.rel
        );
    }
}

/// The checks catch what they are for (each example would fail the test
/// above).
#[test]
fn the_checks_catch_each_kind_of_breach() {
    let cases: [(&str, &str, &str); 8] = [
        (
            "gather/mod.rs",
            "use tokio_postgres::Client;\nfn f() {}",
            "uses tokio_postgres",
        ),
        (
            "apply/exec.rs",
            "async fn f(c: &tokio_postgres::Client) {}",
            "uses tokio_postgres",
        ),
        (
            "node/lock.rs",
            "fn f(s: openssh::Session) {}",
            "uses openssh",
        ),
        (
            "apply/exec.rs",
            "const S: &str = r#\"D=$1\nrm -rf \"$D\"\"#;",
            "shell script text",
        ),
        (
            "gather/mod.rs",
            "fn f() { let a = [\"sh\", \"-c\", SCRIPT]; }",
            "builds `sh -c`",
        ),
        (
            "apply/exec.rs",
            "fn f() -> RemoteCommand { let c = RemoteCommand { line: x, program: y }; c }",
            "only node/remote.rs",
        ),
        (
            "transport/ssh.rs",
            "fn f() { crate::gather::digest(\"x\"); }",
            "transport imports crate::gather",
        ),
        ("apply/fix.sh", "rm -rf /", "outside src/node/scripts/"),
    ];
    for (rel, text, want) in cases {
        let found = violations(rel, text);
        assert!(
            found.iter().any(|f| f.contains(want)),
            "{rel}: {text:?} should break the boundary ({want}); found {found:?}"
        );
    }
    // What is allowed: SQL placeholders, the same crates in their own
    // places, a test module's local fake, a mention in a comment.
    let fine = [
        (
            "node/sql/mod.rs",
            "use tokio_postgres::Client;\nconst Q: &str = \"SELECT 1 FROM t WHERE a = $1 AND b = ANY($2)\";",
        ),
        (
            "gather/mod.rs",
            "// tokio_postgres:: is not used here\nfn f() {}\n#[cfg(test)]\nmod tests {\n    const FAKE: &str = \"#!/bin/sh\\nexec \\\"$1\\\"\";\n}\n",
        ),
        (
            "transport/ssh.rs",
            "use openssh::Session;\nuse crate::config::Node;",
        ),
        ("node/scripts.rs", "const S: &str = \"D=$1\";"),
    ];
    for (rel, text) in fine {
        assert_eq!(
            violations(rel, text),
            Vec::<String>::new(),
            "{rel}: {text:?}"
        );
    }
}
