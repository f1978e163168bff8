//! The user docs cannot drift from the schemas, the loader or the binary:
//! - every key of `schemas/pgrepl.schema.json` is a row of its section of
//!   `docs/cluster-file.md`, with the schema's type, default, required-ness
//!   and enum values, and every row names a key the schema has;
//! - the schema accepts exactly the keys the loader accepts, and a key set
//!   to the schema's default loads as if it were left out;
//! - every op, resource address and JSON field of `schemas/plan.schema.json`
//!   is named in `docs/plan-and-apply.md`, and every exit code of
//!   `pgrepl --help` is in its table;
//! - every cluster file a user reads (`examples/*.toml`, every ```toml block
//!   of README.md and docs/) passes the schema and `pgrepl validate`;
//! - links between the docs resolve, and nothing points outside the repository.
//!
//! Each check returns the problems it found, so the tests at the end can
//! show that it fails on a broken doc. Pure: no node is contacted.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use pgrepl::config;
use serde_json::Value;

use crate::config::FakeSources;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn json(relative: &str) -> Value {
    serde_json::from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The Markdown files users read: README.md and docs/*.md, repository-relative.
fn user_docs() -> Vec<String> {
    let mut docs: Vec<String> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| {
            format!(
                "docs/{}",
                p.file_name().unwrap_or_default().to_string_lossy()
            )
        })
        .collect();
    docs.sort();
    docs.insert(0, "README.md".into());
    docs
}

fn assert_none(what: &str, problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

// ---- the schema as a list of tables

/// One table of the cluster file as the schema describes it. A key whose
/// value has several forms (`{ env = ... }` or `{ file = ... }`) gives one
/// `SchemaTable` per form, all at the same path, marked `form`.
struct SchemaTable<'a> {
    /// `ssh`, `nodes.NAME.ssh`, `hba`, `replication.password`; `` at the top.
    path: String,
    keys: Vec<(&'a str, &'a Value)>,
    required: Vec<&'a str>,
    /// Unknown keys are refused (`additionalProperties: false`).
    closed: bool,
    form: bool,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Follows a local `$ref` (`#/definitions/x`).
fn deref<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(r) => root
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("unresolved $ref {r}")),
        None => node,
    }
}

fn tables(schema: &Value) -> Vec<SchemaTable<'_>> {
    fn walk<'a>(
        root: &'a Value,
        node: &'a Value,
        path: &str,
        form: bool,
        out: &mut Vec<SchemaTable<'a>>,
    ) {
        let node = deref(root, node);
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            out.push(SchemaTable {
                path: path.to_string(),
                keys: props
                    .iter()
                    .map(|(k, v)| (k.as_str(), deref(root, v)))
                    .collect(),
                required: node
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default(),
                closed: node.get("additionalProperties") == Some(&Value::Bool(false)),
                form,
            });
            for (k, v) in props {
                walk(root, v, &join(path, k), false, out);
            }
        }
        if let Some(each) = node.get("additionalProperties").filter(|v| v.is_object()) {
            walk(root, each, &join(path, "NAME"), false, out);
        }
        if let Some(items) = node.get("items") {
            walk(root, items, path, false, out);
        }
        for f in forms(node) {
            walk(root, f, path, true, out);
        }
    }
    let mut out = Vec::new();
    walk(schema, schema, "", false, &mut out);
    out
}

/// The forms of a key with several (`oneOf`, `anyOf`).
fn forms(schema: &Value) -> impl Iterator<Item = &Value> {
    ["oneOf", "anyOf"]
        .into_iter()
        .filter_map(|k| schema.get(k).and_then(Value::as_array))
        .flatten()
}

/// The schema of a dotted path (`nodes.NAME.ssh`), through arrays and `NAME`.
fn resolve<'a>(schema: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = schema;
    for seg in path.split('.') {
        node = deref(schema, node);
        if let Some(items) = node.get("items") {
            node = deref(schema, items);
        }
        node = match node.get("properties").and_then(|p| p.get(seg)) {
            Some(v) => v,
            None if seg == "NAME" => node.get("additionalProperties").filter(|v| v.is_object())?,
            None => return None,
        };
    }
    Some(deref(schema, node))
}

/// How the docs' type column names a schema type.
fn type_words(schema: &Value) -> BTreeSet<&'static str> {
    let word = |t: &str| match t {
        "string" => "string",
        "integer" => "integer",
        "number" => "number",
        "boolean" => "boolean",
        "object" => "table",
        "array" => "array",
        other => panic!("schema type {other}"),
    };
    let mut out = BTreeSet::new();
    match schema.get("type") {
        Some(Value::String(t)) => {
            out.insert(word(t));
        }
        Some(Value::Array(ts)) => out.extend(ts.iter().filter_map(Value::as_str).map(word)),
        _ => {}
    }
    if schema.get("enum").is_some() || schema.get("const").is_some_and(Value::is_string) {
        out.insert("string");
    }
    if schema.get("properties").is_some() {
        out.insert("table");
    }
    for f in forms(schema) {
        out.extend(type_words(f));
    }
    out
}

/// The string values a key may take: `enum`, and `const` forms.
fn enum_values(schema: &Value) -> Vec<&str> {
    let mut out: Vec<&str> = schema
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for f in forms(schema) {
        out.extend(f.get("const").and_then(Value::as_str));
    }
    out
}

// ---- Markdown

/// A heading and the tables under it whose first column is named `first`
/// (`key`, `address`).
struct Section {
    heading: String,
    /// The tables it documents: `[ssh]`, `[[hba]]`, `replication.password`.
    paths: Vec<String>,
    rows: Vec<Row>,
}

struct Row {
    key: String,
    /// Cells by the table's column names.
    cells: HashMap<String, String>,
    line: String,
}

/// Text between backticks, in order.
fn code_spans(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

/// A table path named in a heading: `[x.y]`, `[[x]]`, or a dotted `x.y`.
fn heading_path(span: &str) -> Option<String> {
    let bare = span.trim_start_matches('[').trim_end_matches(']');
    let is_path = !bare.is_empty()
        && bare
            .split('.')
            .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    (is_path && (bare.len() < span.len() || bare.contains('.'))).then(|| bare.to_string())
}

/// Splits a table row at the `|` outside backticks.
fn cells(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut code = false;
    for c in line
        .trim()
        .trim_start_matches('|')
        .trim_end_matches('|')
        .chars()
    {
        match c {
            '`' => {
                code = !code;
                out.last_mut().expect("one cell").push(c);
            }
            '|' if !code => out.push(String::new()),
            _ => out.last_mut().expect("one cell").push(c),
        }
    }
    out.into_iter().map(|c| c.trim().to_string()).collect()
}

/// Lines outside fenced code blocks, with their 1-based numbers.
fn prose_lines(md: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in md.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            out.push((i + 1, line));
        }
    }
    out
}

fn sections(md: &str, first: &str) -> Vec<Section> {
    let mut out = vec![Section {
        heading: String::new(),
        paths: Vec::new(),
        rows: Vec::new(),
    }];
    let mut header: Option<Vec<String>> = None;
    for (_, line) in prose_lines(md) {
        if line.starts_with('#') {
            out.push(Section {
                heading: line.trim_start_matches('#').trim().to_string(),
                paths: code_spans(line)
                    .into_iter()
                    .filter_map(heading_path)
                    .collect(),
                rows: Vec::new(),
            });
        }
        if !line.starts_with('|') {
            header = None;
            continue;
        }
        let row = cells(line);
        match &header {
            None => header = Some(row),
            Some(_)
                if row
                    .iter()
                    .all(|c| c.chars().all(|ch| ch == '-' || ch == ':')) => {}
            Some(h) if h.first().is_some_and(|c| c == first) => {
                let section = out.last_mut().expect("a section");
                section.rows.push(Row {
                    key: row[0].trim_matches('`').to_string(),
                    cells: h.iter().cloned().zip(row).collect(),
                    line: line.to_string(),
                });
            }
            Some(_) => {}
        }
    }
    out
}

/// A cell holding one literal in backticks (`` `"postgres"` ``, `` `22` ``), as JSON.
fn literal(cell: &str) -> Option<Value> {
    let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
    if inner.contains('`') {
        return None;
    }
    let table: toml::Table = toml::from_str(&format!("v = {inner}")).ok()?;
    serde_json::to_value(table.get("v")?).ok()
}

// ---- docs/cluster-file.md against schemas/pgrepl.schema.json

fn check_cluster_file(schema: &Value, md: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let sections = sections(md, "key");
    let all = tables(schema);
    let mut by_path: HashMap<&str, Vec<&SchemaTable>> = HashMap::new();
    for t in &all {
        by_path.entry(t.path.as_str()).or_default().push(t);
    }
    for s in &sections {
        for p in &s.paths {
            if resolve(schema, p).is_none() {
                problems.push(format!(
                    "heading \"{}\" names `{p}`, which the schema does not have",
                    s.heading
                ));
            }
        }
        if !s.rows.is_empty() && !s.paths.iter().any(|p| by_path.contains_key(p.as_str())) {
            problems.push(format!(
                "heading \"{}\" lists keys but names no table of the schema",
                s.heading
            ));
        }
        for p in s.paths.iter().filter(|p| by_path.contains_key(p.as_str())) {
            let known: Vec<&str> = by_path[p.as_str()]
                .iter()
                .flat_map(|t| t.keys.iter().map(|(k, _)| *k))
                .collect();
            for row in s.rows.iter().filter(|r| !known.contains(&r.key.as_str())) {
                problems.push(format!(
                    "the docs list `{}`, which the schema does not have",
                    join(p, &row.key)
                ));
            }
        }
    }
    // The top-level tables are sections of their own.
    let root = by_path
        .get("")
        .and_then(|t| t.first())
        .expect("the schema's top level");
    for (key, _) in &root.keys {
        let documented = sections
            .iter()
            .flat_map(|s| &s.paths)
            .any(|p| p.split('.').next() == Some(key));
        if !documented {
            problems.push(format!("no heading names the table `[{key}]`"));
        }
    }
    for t in all.iter().filter(|t| !t.path.is_empty()) {
        let rows: Vec<&Row> = sections
            .iter()
            .filter(|s| s.paths.contains(&t.path))
            .flat_map(|s| &s.rows)
            .collect();
        if rows.is_empty() {
            problems.push(format!("no heading with a key table names `{}`", t.path));
            continue;
        }
        for (key, prop) in &t.keys {
            let name = join(&t.path, key);
            match rows.iter().find(|r| r.key == *key) {
                None => problems.push(format!("`{name}` is not documented")),
                Some(row) => check_row(&name, key, prop, t, row, &mut problems),
            }
        }
    }
    problems
}

/// One key's row against its schema: type, default, required, enum values.
fn check_row(
    name: &str,
    key: &str,
    prop: &Value,
    table: &SchemaTable,
    row: &Row,
    problems: &mut Vec<String>,
) {
    let cell = |c: &str| row.cells.get(c).map(String::as_str).unwrap_or("");
    let written = cell("type");
    for word in type_words(prop) {
        if !written.contains(word) {
            problems.push(format!(
                "`{name}`: the type column says \"{written}\", the schema says {word}"
            ));
        }
    }
    let default = cell("default");
    match (prop.get("default"), literal(default)) {
        (Some(want), Some(got)) if *want != got => problems.push(format!(
            "`{name}`: the docs' default is {got}, the schema's {want}"
        )),
        (Some(want), None) => problems.push(format!(
            "`{name}`: the docs state no default, the schema's is {want}"
        )),
        (None, Some(got)) => problems.push(format!(
            "`{name}`: the docs' default is {got}, the schema has none"
        )),
        _ => {}
    }
    if !table.form && (default == "required") != table.required.contains(&key) {
        problems.push(format!(
            "`{name}`: the docs say \"{default}\", the schema {} it",
            if table.required.contains(&key) {
                "requires"
            } else {
                "does not require"
            }
        ));
    }
    for v in enum_values(prop) {
        if !row.line.contains(&format!("`{v}`")) && !row.line.contains(&format!("\"{v}\"")) {
            problems.push(format!(
                "`{name}`: the value \"{v}\" is not named in its row"
            ));
        }
    }
}

// ---- the schema against the loader

/// A cluster file with every table present, valid with `FakeSources`.
const EVERY_TABLE: &str = r#"
[cluster]
name = "t"
primary = "db1"
[ssh]
[postgres]
[nodes.db1]
host = "10.0.0.1"
[nodes.db2]
host = "10.0.0.2"
[nodes.db2.ssh]
[nodes.db2.postgres]
[nodes.db2.settings]
[replication]
user = "replicator"
password = { env = "REPL_PW" }
synchronous = { standbys = ["db2"] }
[rewind]
user = "pgrepl_rewind"
password = { env = "PGREPL_REWIND_PASSWORD" }
[settings]
[[hba]]
type = "host"
database = "app"
user = "app"
address = "10.0.3.0/24"
method = "scram-sha-256"
[[slots]]
name = "barman"
"#;

/// The table at a schema path (`NAME` is node db2, an array its first entry).
fn table_at<'a>(root: &'a mut toml::Table, path: &str) -> &'a mut toml::Table {
    let mut t = root;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let seg = if seg == "NAME" { "db2" } else { seg };
        let entry = t
            .entry(seg)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = match entry {
            toml::Value::Table(x) => x,
            toml::Value::Array(a) => a
                .first_mut()
                .and_then(toml::Value::as_table_mut)
                .unwrap_or_else(|| panic!("{path}: no table in the array")),
            other => panic!("{path}: {seg} is a {}", other.type_str()),
        };
    }
    t
}

fn load(doc: &toml::Table) -> Result<config::Config, config::ConfigError> {
    let text = toml::to_string(doc).expect("TOML");
    config::load_str(&text, Path::new("pgrepl.toml"), &FakeSources::default())
}

fn check_loader(schema: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let base: toml::Table = toml::from_str(EVERY_TABLE).expect("TOML");
    let loaded = match load(&base) {
        Ok(cfg) => format!("{cfg:?}"),
        Err(e) => return vec![format!("the base file does not load:\n{e}")],
    };
    const UNKNOWN: &str = "qqqqqqqqqqqqqqqq";
    for t in tables(schema).iter().filter(|t| t.closed && !t.form) {
        // The loader's unknown-key error lists the keys it accepts there.
        let mut doc = base.clone();
        table_at(&mut doc, &t.path).insert(UNKNOWN.into(), toml::Value::Integer(1));
        let accepted: Option<BTreeSet<String>> = load(&doc).err().and_then(|e| {
            e.diagnostics
                .iter()
                .find(|d| d.message.starts_with(&format!("unknown key `{UNKNOWN}`")))
                .and_then(|d| d.help.as_deref()?.split_once("the keys allowed here are: "))
                .map(|(_, list)| list.split(", ").map(String::from).collect())
        });
        let schema_keys: BTreeSet<String> = t.keys.iter().map(|(k, _)| k.to_string()).collect();
        match accepted {
            None => problems.push(format!(
                "the loader did not refuse an unknown key in `[{}]`",
                t.path
            )),
            Some(a) if a != schema_keys => problems.push(format!(
                "`[{}]`: the loader accepts {a:?}, the schema {schema_keys:?}",
                t.path
            )),
            Some(_) => {}
        }
        // A key written with the schema's default loads as if left out.
        for (key, prop) in t.keys.iter().filter(|(_, p)| p.get("default").is_some()) {
            let mut doc = base.clone();
            let value = toml::Value::try_from(&prop["default"]).expect("a TOML value");
            table_at(&mut doc, &t.path).insert(key.to_string(), value);
            match load(&doc) {
                Ok(cfg) if format!("{cfg:?}") == loaded => {}
                Ok(_) => problems.push(format!(
                    "`{}`: the schema's default {} is not the loader's",
                    join(&t.path, key),
                    prop["default"]
                )),
                Err(e) => problems.push(format!(
                    "`{}`: the schema's default {} does not load:\n{e}",
                    join(&t.path, key),
                    prop["default"]
                )),
            }
        }
    }
    problems
}

// ---- docs/plan-and-apply.md against schemas/plan.schema.json and the binary

fn check_plan_doc(schema: &Value, md: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let step = &schema["definitions"]["step"]["properties"];
    let named = |word: &str| md.contains(&format!("`{word}`"));
    let lists = [
        ("op", &step["op"]["enum"]),
        ("action", &step["action"]["enum"]),
    ];
    for (what, values) in lists {
        for v in values
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !named(v) {
                problems.push(format!("the {what} `{v}` is not named"));
            }
        }
    }
    let objects = [
        ("plan", &schema["properties"]),
        ("summary", &schema["properties"]["summary"]["properties"]),
        ("node", &schema["definitions"]["node"]["properties"]),
        ("message", &schema["definitions"]["message"]["properties"]),
        ("step", step),
    ];
    for (what, props) in objects {
        for field in props.as_object().into_iter().flatten().map(|(k, _)| k) {
            if !named(field) {
                problems.push(format!("the {what} field `{field}` is not named"));
            }
        }
    }
    let plans = jsonschema::validator_for(schema).expect("the plan schema");
    for (line, text) in code_blocks(md, "json") {
        match serde_json::from_str::<Value>(&text) {
            Ok(plan) if plans.is_valid(&plan) => {}
            Ok(_) => problems.push(format!("the JSON at line {line} fails the plan schema")),
            Err(e) => problems.push(format!("the JSON at line {line} is not JSON: {e}")),
        }
    }
    // Resources: the address table against the schema's address pattern and list.
    let address = &step["address"];
    let pattern = serde_json::json!({ "type": "string", "pattern": address["pattern"] });
    let matches = jsonschema::validator_for(&pattern).expect("a valid pattern");
    let example = |a: &str| a.replace("NODE", "db1").replace("NAME", "x");
    let documented: Vec<String> = sections(md, "address")
        .into_iter()
        .flat_map(|s| s.rows)
        .map(|r| r.key)
        .collect();
    for a in documented
        .iter()
        .filter(|a| !matches.is_valid(&Value::String(example(a))))
    {
        problems.push(format!(
            "the docs list the address `{a}`, which the schema's pattern refuses"
        ));
    }
    let described: Vec<&str> = address["description"]
        .as_str()
        .unwrap_or("")
        .split(|c: char| c.is_whitespace() || c == ',' || c == ':')
        .map(|w| w.trim_end_matches('.'))
        .filter(|w| {
            ["NODE.", "role.", "cluster."]
                .iter()
                .any(|p| w.starts_with(p))
        })
        .collect();
    if described.is_empty() {
        problems.push("the schema's address description lists no resources".into());
    }
    for kind in described {
        if !matches.is_valid(&Value::String(example(kind))) {
            problems.push(format!(
                "the schema describes `{kind}`, which its own pattern refuses"
            ));
        }
        if !documented.iter().any(|d| d == kind) {
            problems.push(format!("the resource `{kind}` is not in the address table"));
        }
    }
    problems
}

/// Every exit code `pgrepl --help` names is a row of the docs' table.
fn check_exit_codes(help: &str, md: &str) -> Vec<String> {
    let Some((_, codes)) = help.split_once("Exit codes:") else {
        return vec!["`pgrepl --help` names no exit codes".into()];
    };
    let codes = codes.split("\n\n").next().unwrap_or("");
    codes
        .split(|c: char| !c.is_ascii_digit())
        .filter(|n| !n.is_empty())
        .filter(|n| !md.contains(&format!("\n| {n} |")))
        .map(|n| format!("exit code {n} of `pgrepl --help` is not in the table"))
        .collect()
}

// ---- every cluster file a user reads

/// A ```toml block without `[cluster]` is a fragment: it is checked as part
/// of this example, merged into it.
const FRAGMENT_BASE: &str = "examples/three-node-async.toml";

/// A fragment's tables replace the base's, but a node's table adds to the
/// base's node (whose `host` stays); arrays of tables append.
fn merge(into: &mut toml::Table, from: toml::Table) {
    use toml::Value::{Array, Table};
    for (k, v) in from {
        match (k.as_str(), into.get_mut(&k), v) {
            ("nodes", Some(Table(nodes)), Table(add)) => {
                for (name, node) in add {
                    match (nodes.get_mut(&name), node) {
                        (Some(Table(a)), Table(b)) => a.extend(b),
                        (_, node) => {
                            nodes.insert(name, node);
                        }
                    }
                }
            }
            (_, Some(Array(a)), Array(b)) => a.extend(b),
            (_, _, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// The code blocks of a Markdown text in `lang` (```toml), with the line
/// each starts on.
fn code_blocks(md: &str, lang: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut open: Option<(usize, String)> = None;
    let mut fenced = false;
    for (i, line) in md.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            if fenced {
                out.extend(open.take());
            } else if line.trim() == format!("```{lang}") {
                open = Some((i + 1, String::new()));
            }
            fenced = !fenced;
        } else if let Some((_, text)) = &mut open {
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

/// A directory with `examples/secrets` (mode 0600), where cluster files are
/// written and validated, so `{ file = "secrets/..." }` works.
fn scratch() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).expect("mkdir");
    for entry in std::fs::read_dir(repo().join("examples/secrets")).expect("examples/secrets") {
        let from = entry.expect("entry").path();
        let to = secrets.join(from.file_name().expect("a name"));
        std::fs::copy(&from, &to).expect("copy");
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    dir
}

/// Checks cluster files named `where` against the schema and `pgrepl validate`.
fn check_cluster_files(files: &[(String, String)]) -> Vec<String> {
    let validator = jsonschema::validator_for(&json("schemas/pgrepl.schema.json")).expect("schema");
    let dir = scratch();
    let mut problems = Vec::new();
    for (n, (place, text)) in files.iter().enumerate() {
        let doc: toml::Table = match toml::from_str(text) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("{place}: not TOML: {e}"));
                continue;
            }
        };
        let whole = if doc.contains_key("cluster") {
            text.clone()
        } else {
            let mut base: toml::Table = toml::from_str(&read(FRAGMENT_BASE)).expect("TOML");
            merge(&mut base, doc);
            toml::to_string(&base).expect("TOML")
        };
        let value: toml::Value = toml::from_str(&whole).expect("TOML");
        let errors: Vec<String> = validator
            .iter_errors(&serde_json::to_value(value).expect("JSON"))
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        if !errors.is_empty() {
            problems.push(format!("{place}: fails the schema: {}", errors.join("; ")));
        }
        let path = dir.path().join(format!("file{n}.toml"));
        std::fs::write(&path, &whole).expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_pgrepl"))
            .args(["validate", "-c"])
            .arg(&path)
            .env("PGREPL_REPLICATION_PASSWORD", "example-repl")
            .env("PGREPL_REWIND_PASSWORD", "example-rewind")
            .output()
            .expect("run pgrepl");
        if !out.status.success() {
            problems.push(format!(
                "{place}: fails `pgrepl validate`:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    problems
}

/// Every example and every ```toml block of the user docs.
fn cluster_files_users_read() -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut examples: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .expect("examples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    examples.sort();
    for p in examples {
        let text = std::fs::read_to_string(&p).expect("readable");
        files.push((
            p.strip_prefix(repo()).unwrap_or(&p).display().to_string(),
            text,
        ));
    }
    for doc in user_docs() {
        for (line, text) in code_blocks(&read(&doc), "toml") {
            files.push((format!("{doc}:{line}"), text));
        }
    }
    files
}

// ---- links, and nothing outside the repository

/// A heading's anchor as GitHub makes it.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// `[text](target)` targets outside code, with their line numbers.
fn links(md: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose_lines(md) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push((n, after[..end].to_string()));
            rest = &after[end..];
        }
    }
    out
}

/// `docs` maps each file (repository-relative) to its text.
fn check_links(docs: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, md) in docs {
        for (n, target) in links(md) {
            if target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            let (file, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let base = Path::new(name).parent().unwrap_or(Path::new(""));
            let path = if file.is_empty() {
                PathBuf::from(name)
            } else {
                base.join(file)
            };
            let resolved = repo().join(&path);
            let inside = resolved
                .canonicalize()
                .is_ok_and(|p| p.starts_with(repo().canonicalize().expect("repo")));
            if !inside {
                problems.push(format!(
                    "{name}:{n}: `{target}` is not a file of the repository"
                ));
                continue;
            }
            if fragment.is_empty() {
                continue;
            }
            let text = std::fs::read_to_string(&resolved).unwrap_or_default();
            let anchors: Vec<String> = prose_lines(&text)
                .into_iter()
                .filter(|(_, l)| l.starts_with('#'))
                .map(|(_, l)| anchor(l.trim_start_matches('#')))
                .collect();
            if !anchors.iter().any(|a| a == fragment) {
                problems.push(format!(
                    "{name}:{n}: `{target}`: no heading has the anchor #{fragment}"
                ));
            }
        }
        for (n, line) in md.lines().enumerate() {
            let spec = line.match_indices("SPEC").any(|(i, _)| {
                !line[i + 4..].starts_with(|c: char| c.is_ascii_alphabetic())
                    && !line[..i].ends_with(|c: char| c.is_ascii_alphabetic())
            });
            if spec || line.contains("../shared") {
                problems.push(format!(
                    "{name}:{}: points outside the repository: {}",
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    problems
}

// ---- the tests

#[test]
fn cluster_file_doc_matches_the_schema() {
    assert_none(
        "docs/cluster-file.md against schemas/pgrepl.schema.json",
        check_cluster_file(
            &json("schemas/pgrepl.schema.json"),
            &read("docs/cluster-file.md"),
        ),
    );
}

#[test]
fn schema_matches_the_loader() {
    assert_none(
        "schemas/pgrepl.schema.json against the loader",
        check_loader(&json("schemas/pgrepl.schema.json")),
    );
}

#[test]
fn plan_doc_matches_the_plan_schema_and_the_help() {
    let md = read("docs/plan-and-apply.md");
    let help = Command::new(env!("CARGO_BIN_EXE_pgrepl"))
        .arg("--help")
        .output()
        .expect("run pgrepl");
    let mut problems = check_plan_doc(&json("schemas/plan.schema.json"), &md);
    problems.extend(check_exit_codes(
        &String::from_utf8_lossy(&help.stdout),
        &md,
    ));
    assert_none("docs/plan-and-apply.md", problems);
}

#[test]
fn every_cluster_file_users_read_is_valid() {
    let files = cluster_files_users_read();
    assert!(
        files.len() >= 10,
        "found only {} cluster files",
        files.len()
    );
    assert_none("examples and ```toml blocks", check_cluster_files(&files));
}

#[test]
fn links_resolve_inside_the_repository() {
    let docs: Vec<(String, String)> = user_docs()
        .into_iter()
        .map(|d| {
            let text = read(&d);
            (d, text)
        })
        .collect();
    assert_none("links", check_links(&docs));
}

// ---- each check fails on a broken doc

/// `md` with `from` replaced by `to`; `from` must occur.
fn broken(md: &str, from: &str, to: &str) -> String {
    assert!(md.contains(from), "{from:?} is not in the doc");
    md.replacen(from, to, 1)
}

fn assert_finds(problems: &[String], needle: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "expected {needle:?} in {problems:#?}"
    );
}

#[test]
fn cluster_file_check_catches_drift() {
    let schema = json("schemas/pgrepl.schema.json");
    let md = read("docs/cluster-file.md");
    let ssh_port = "| `port` | integer | `22` |";
    let cases = [
        // A key left out, in a nested table and in a key with forms.
        (
            broken(&md, "| `known_hosts` |", "| known hosts |"),
            "`ssh.known_hosts` is not documented",
        ),
        (
            broken(&md, "| `pg_ctlcluster` |", "| `pg_ctl_cluster` |"),
            "the docs list `postgres.service.pg_ctl_cluster`",
        ),
        // A key the schema does not have.
        (
            broken(
                &md,
                ssh_port,
                &format!("| `hostname` | string | — | x |\n{ssh_port}"),
            ),
            "`ssh.hostname`",
        ),
        // A wrong default, type, required-ness and enum value.
        (
            broken(&md, ssh_port, "| `port` | integer | `2222` |"),
            "the docs' default is 2222",
        ),
        (
            broken(&md, ssh_port, "| `port` | string | `22` |"),
            "the schema says integer",
        ),
        (
            broken(
                &md,
                "| `primary` | string | required |",
                "| `primary` | string | — |",
            ),
            "`cluster.primary`: the docs say",
        ),
        (
            broken(&md, "`\"verify-ca\"`, ", ""),
            "the value \"verify-ca\"",
        ),
        // A heading naming a table the schema lacks, and a table without a heading.
        (
            broken(
                &md,
                "### `[replication.synchronous]`",
                "### `[replication.sync]`",
            ),
            "`replication.sync`",
        ),
        (broken(&md, "## `[[slots]]`", "## Slots"), "`[slots]`"),
    ];
    for (doc, needle) in cases {
        assert_finds(&check_cluster_file(&schema, &doc), needle);
    }
}

#[test]
fn loader_check_catches_a_schema_the_loader_disagrees_with() {
    let schema = json("schemas/pgrepl.schema.json");
    let mut extra_key = schema.clone();
    extra_key["properties"]["ssh"]["properties"]["hostname"] =
        serde_json::json!({ "type": "string" });
    assert_finds(&check_loader(&extra_key), "`[ssh]`: the loader accepts");
    let mut wrong_default = schema;
    wrong_default["properties"]["replication"]["properties"]["sslmode"]["default"] =
        "require".into();
    assert_finds(
        &check_loader(&wrong_default),
        "`replication.sslmode`: the schema's default",
    );
}

#[test]
fn plan_doc_check_catches_drift() {
    let schema = json("schemas/plan.schema.json");
    let md = read("docs/plan-and-apply.md");
    let cases = [
        (md.replace("`rebase`", "rebase"), "the op `rebase`"),
        (
            md.replace("| `NODE.timeline` |", "| timeline |"),
            "`NODE.timeline` is not in the address table",
        ),
        (
            md.replace("`refused`", "refused"),
            "the plan field `refused`",
        ),
        (
            md.replace("| `NODE.hba` |", "| `NODE.pg_hba` |"),
            "the address `NODE.pg_hba`",
        ),
        (
            md.replace("\"format_version\": \"1\"", "\"format_version\": \"2\""),
            "fails the plan schema",
        ),
    ];
    for (doc, needle) in cases {
        assert_finds(&check_plan_doc(&schema, &doc), needle);
    }
    let help = "Exit codes: 0 success, 1 error, 7 something new.\n";
    assert_eq!(
        check_exit_codes(help, &md),
        ["exit code 7 of `pgrepl --help` is not in the table"]
    );
}

#[test]
fn cluster_files_check_catches_an_invalid_block() {
    let md =
        "```toml\n[nodes.db2]\nupstream = \"db9\"\n```\n\n```toml\n[ssh]\nport = \"22\"\n```\n";
    let files: Vec<(String, String)> = code_blocks(md, "toml")
        .into_iter()
        .map(|(line, text)| (format!("x.md:{line}"), text))
        .collect();
    let problems = check_cluster_files(&files);
    assert_finds(&problems, "x.md:1: fails `pgrepl validate`");
    assert_finds(&problems, "x.md:6: fails the schema");
}

#[test]
fn link_check_catches_a_broken_link() {
    let md = "[a](roles.md#no-such-heading) [b](missing.md) [c](../../x) see SPEC section 2\n";
    let problems = check_links(&[("docs/x.md".to_string(), md.to_string())]);
    for needle in [
        "no heading has the anchor #no-such-heading",
        "`missing.md` is not a file",
        "`../../x` is not a file",
        "points outside the repository",
    ] {
        assert_finds(&problems, needle);
    }
}
