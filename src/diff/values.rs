//! The file's values as the plan writes them, the recovery step the file
//! wants, whether a node's passfile is the file's: shared by the running,
//! stopped and new-standby diffs and the facts.

use crate::config::{Config, Setting};
use crate::desired::{RecoveryDesired, passfile_digest};
use crate::guc::{self, GucDef, Normalized};
use crate::observed::FileFacts;
use crate::plan::{Action, Step, step};

/// `NODE.recovery` as the file wants it.
pub(super) fn write_recovery(node: &str, action: Action, rec: &RecoveryDesired) -> Step {
    step::write_recovery(
        node,
        action,
        &rec.primary_conninfo,
        &rec.primary_slot_name,
        &rec.passfile,
    )
}

/// A value of the file as PostgreSQL reads it in postgresql.conf.
pub(super) fn toml_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Boolean(b) => if *b { "on" } else { "off" }.to_string(),
        other => other.to_string(),
    }
}

/// A value as the plan shows it: an empty one as `''`.
pub(super) fn display_value(v: &str) -> String {
    if v.is_empty() {
        "''".into()
    } else {
        v.to_string()
    }
}

/// Whether node `name`'s passfile is the file's, mode 0600.
pub(super) fn passfile_ok(cfg: &Config, name: &str, files: Option<&FileFacts>) -> bool {
    let Some(node) = cfg.nodes.get(name) else {
        return false;
    };
    files.is_some_and(|f| {
        f.passfile_sha256.as_deref() == Some(passfile_digest(cfg, node).as_str())
            && f.passfile_mode.as_deref() == Some("600")
    })
}

/// The facts of a setting as a server of `major` knows them (the newest
/// facts when the major is unknown or lacks the setting), and the file's
/// value normalised by them: a live value is compared in its own major's
/// terms (an enum value, a unit, a range that moved between majors).
pub(super) fn setting_in(
    setting: &Setting,
    major: Option<u32>,
) -> (Option<&'static GucDef>, Option<Normalized>) {
    let def = major
        .and_then(|m| guc::lookup_in(&setting.name, m))
        .or_else(|| guc::lookup(&setting.name));
    let normalized = def
        .filter(|_| setting.normalized.is_some())
        .and_then(|d| guc::normalize_desired(d, &setting.value).ok())
        .or_else(|| setting.normalized.clone());
    (def, normalized)
}
