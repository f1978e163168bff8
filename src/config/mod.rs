//! The cluster file: load (TOML with spans), check (cross-field rules),
//! model (the validated, merged result the rest of pgrepl reads).

mod check;
pub mod diag;
mod excerpt;
pub mod model;
mod pooler;
mod raw;
mod secret_file;

use std::path::{Path, PathBuf};

pub use check::{
    RealSources, Sources, check_host, closest, host_cidr, levenshtein, parse_bytes, parse_duration,
};
pub use diag::{ConfigError, Diagnostic};
pub use model::*;
pub use secret_file::read_private_file;

/// Reads and checks the cluster file; reads password sources; contacts nothing.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the cluster file {}: {e}\n  = help: pass the file with `-c FILE` (default: pgrepl.toml in the current directory)",
            path.display()
        )
    })?;
    Ok(load_str(&source, path, &RealSources)?)
}

/// Parses and checks `source` as if read from `path`.
pub fn load_str(source: &str, path: &Path, sources: &dyn Sources) -> Result<Config, ConfigError> {
    let fail = |diagnostics| ConfigError {
        path: path.to_path_buf(),
        source_text: source.to_string(),
        diagnostics,
    };
    let raw: raw::RawConfig =
        toml::from_str(source).map_err(|e| fail(vec![from_toml_error(&e, source)]))?;
    let base_dir = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let base_dir = if base_dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base_dir
    };
    check::check(raw, &base_dir, path.to_path_buf(), sources).map_err(fail)
}

/// Turns a parse or shape error into a diagnostic with a "what to do" hint.
fn from_toml_error(e: &toml::de::Error, source: &str) -> Diagnostic {
    let msg = e.message().trim();
    let span = e.span().unwrap_or(0..0);
    if let Some(rest) = msg.strip_prefix("unknown field `")
        && let Some((key, expected)) = rest.split_once('`')
    {
        let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let help = match closest(key, known.iter().copied()) {
            Some(k) => format!("did you mean `{k}`?"),
            None if known.is_empty() => "remove this key".to_string(),
            None => format!("the keys allowed here are: {}", known.join(", ")),
        };
        let table = enclosing_table(source, span.start);
        return Diagnostic::at(span, format!("unknown key `{key}`{table}")).help(help);
    }
    if let Some(rest) = msg.strip_prefix("missing field `")
        && let Some((key, _)) = rest.split_once('`')
    {
        let table = enclosing_table(source, span.start);
        let example = match key {
            "cluster" => "add a `[cluster]` table with `name` and `primary`",
            "nodes" => "add at least one `[nodes.NAME]` table with a `host`",
            "replication" => "add a `[replication]` table with `user` and `password`",
            _ => "",
        };
        let help = if example.is_empty() {
            format!("add `{key} = ...` here")
        } else {
            example.to_string()
        };
        return Diagnostic::at(span, format!("missing key `{key}`{table}")).help(help);
    }
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        let rest = rest
            .replace("expected i64", "expected an integer")
            .replace("expected a boolean", "expected true or false");
        return Diagnostic::at(span, format!("wrong type: {rest}"))
            .help("numbers and booleans are written without quotes, text in quotes");
    }
    Diagnostic::at(span, msg.to_string()).help("fix the TOML syntax at this place")
}

/// " in [section]" for the table header that precedes `offset`, if any.
fn enclosing_table(source: &str, offset: usize) -> String {
    let upto = source.get(..offset.min(source.len())).unwrap_or("");
    let line_start = upto.rfind('\n').map_or(0, |i| i + 1);
    if upto[line_start..].trim_start().starts_with('[') {
        // The unknown key is itself a table header.
        return " at the top level".to_string();
    }
    upto[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| {
            let header = l.split('#').next().unwrap_or(l).trim();
            format!(" in {header}")
        })
        .unwrap_or_default()
}
