//! The file's values as the plan writes them, and the recovery step the
//! file wants: shared by the running, stopped and new-standby diffs.

use crate::desired::RecoveryDesired;
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
