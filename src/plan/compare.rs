//! A saved plan against the plan re-derived at apply time: the first step
//! that differs, and what differs in it, said without a secret and with
//! the saved file's text escaped (the file may be hostile). Also the node
//! names a plan refers to, to refuse one the cluster file does not have.

use std::fmt;

use serde_json::Value;

use super::{Op, Plan, Step};

/// The first difference between a saved plan's steps and the steps now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepDifference {
    /// 1-based position in the plan.
    pub position: usize,
    /// The saved step's address (or the step now, when the saved plan has
    /// fewer steps), escaped.
    pub address: String,
    /// What differs, for people; values escaped, secrets never shown.
    pub what: String,
}

impl fmt::Display for StepDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {} ({}): {}",
            self.position, self.address, self.what
        )
    }
}

/// The longest value a difference shows (an hba file's content is long).
const SHOWN: usize = 80;

/// The first step where `saved` and `now` differ in any field (order
/// included), or `None` when they are the same steps. Byte sizes measured
/// live (`7.2 MB` in a base backup's size, a switchover's lag, a re-base's
/// discarded WAL) move by the second; in the text fields for people
/// (`before`, `after`, `reason`) they are compared as `<size>`. Every field
/// apply acts with is compared exactly.
pub fn first_difference(saved: &[Step], now: &[Step]) -> Option<StepDifference> {
    for (i, pair) in saved.iter().zip(now).enumerate() {
        if let Some(what) = step_difference(pair.0, pair.1) {
            return Some(StepDifference {
                position: i + 1,
                address: escape(&pair.0.address),
                what,
            });
        }
    }
    let n = saved.len().min(now.len());
    if let Some(extra) = saved.get(n) {
        return Some(StepDifference {
            position: n + 1,
            address: escape(&extra.address),
            what: "the saved plan has this step; the plan now does not".into(),
        });
    }
    now.get(n).map(|missing| StepDifference {
        position: n + 1,
        address: escape(&missing.address),
        what: "the plan now has this step; the saved plan does not".into(),
    })
}

/// The first field of `saved` that differs from `now`, said.
fn step_difference(saved: &Step, now: &Step) -> Option<String> {
    let (Ok(Value::Object(a)), Ok(Value::Object(b))) =
        (serde_json::to_value(saved), serde_json::to_value(now))
    else {
        return (saved != now).then(|| "differs".to_string());
    };
    let keys = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)));
    for key in keys {
        let (x, y) = (a.get(key), b.get(key));
        let same = match (x, y, key.as_str()) {
            (Some(Value::String(x)), Some(Value::String(y)), "before" | "after" | "reason") => {
                without_sizes(x) == without_sizes(y)
            }
            _ => x == y,
        };
        if same {
            continue;
        }
        let hidden =
            (saved.sensitive || now.sensitive) && matches!(key.as_str(), "before" | "after");
        let show = |v: Option<&Value>| match v {
            _ if hidden => "(sensitive)".to_string(),
            None => "absent".to_string(),
            Some(v) => shown(v),
        };
        return Some(format!(
            "{} is {} in the saved plan, {} now",
            escape(key),
            show(x),
            show(y)
        ));
    }
    // Every field serializes (`skip_serializing_if` skips only a value
    // that is empty on both sides alike): equal as JSON is equal.
    None
}

/// A JSON value for a message: strings quoted and escaped, long ones cut.
fn shown(v: &Value) -> String {
    let s = match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    if s.chars().count() > SHOWN {
        let cut: String = s.chars().take(SHOWN).collect();
        format!("{cut}... ({} characters)", s.chars().count())
    } else {
        s
    }
}

/// Control characters and quotes of a name from the saved file escaped,
/// and a long one cut.
fn escape(s: &str) -> String {
    let quoted = format!("{s:?}");
    let inner = &quoted[1..quoted.len() - 1];
    if inner.chars().count() > SHOWN {
        format!("{}...", inner.chars().take(SHOWN).collect::<String>())
    } else {
        inner.to_string()
    }
}

/// `text` with every byte size as `human_bytes` writes it (`512 B`,
/// `7.2 MB`) replaced by `<size>`.
pub fn without_sizes(text: &str) -> String {
    const UNITS: [&str; 5] = [" B", " kB", " MB", " GB", " TB"];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        let preceded = rest[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '.' || c == '_');
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let digits = tail
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(tail.len());
        let mut len = digits;
        if tail[len..].starts_with('.') {
            let frac = tail[len + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(tail.len() - len - 1);
            if frac > 0 {
                len += 1 + frac;
            }
        }
        let unit = UNITS.iter().find(|u| {
            tail[len..].starts_with(**u)
                && !tail[len + u.len()..]
                    .chars()
                    .next()
                    .is_some_and(char::is_alphanumeric)
        });
        match unit {
            Some(u) if !preceded => {
                out.push_str("<size>");
                rest = &tail[len + u.len()..];
            }
            _ => {
                out.push_str(&tail[..digits]);
                rest = &tail[digits..];
            }
        }
    }
    out.push_str(rest);
    out
}

impl Plan {
    /// Every node name the plan refers to: its steps' nodes and the other
    /// nodes their ops name, and its node labels, in order, once each.
    pub fn node_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        let mut out: Vec<&str> = Vec::new();
        for step in &self.changes {
            out.push(&step.node);
            out.extend(step.op.peer());
        }
        out.extend(self.nodes.iter().map(|n| n.name.as_str()));
        out.extend(self.nodes.iter().filter_map(|n| n.upstream.as_deref()));
        for n in out {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        names
    }
}

impl Op {
    /// The other node an op names (an upstream, the old primary, a source).
    pub fn peer(&self) -> Option<&str> {
        match self {
            Op::BaseBackup { upstream, .. } => Some(upstream),
            Op::Switchover { from, .. } => Some(from),
            Op::Promote { old, .. } => Some(old),
            Op::Rebase { source, .. } => Some(source),
            Op::Restart { catch_up_with } | Op::Start { catch_up_with, .. } => {
                catch_up_with.as_deref()
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::step;

    fn steps() -> Vec<Step> {
        let mut s = step::set_setting("db1", "wal_keep_size", "'1GB'".into());
        s.before = Some("64MB".into());
        s.after = Some("1GB".into());
        let mut b = step::base_backup("db2", "db1", Some("db2".into()));
        b.after = Some("base backup of db1 through slot db2 (about 7.2 MB)".into());
        vec![s, step::reload("db1", "reload"), b]
    }

    #[test]
    fn the_same_steps_do_not_differ() {
        assert_eq!(first_difference(&steps(), &steps()), None);
        assert_eq!(first_difference(&[], &[]), None);
    }

    #[test]
    fn every_field_apply_acts_with_is_compared() {
        let now = steps();
        let mut saved = steps();
        if let Op::SetSetting { sql_value, .. } = &mut saved[0].op {
            *sql_value = "'1GB'; DROP ROLE x".into();
        }
        let d = first_difference(&saved, &now).expect("differs");
        assert_eq!(d.position, 1);
        assert_eq!(d.address, "db1.setting.wal_keep_size");
        assert_eq!(
            d.what,
            r#"sql_value is "'1GB'; DROP ROLE x" in the saved plan, "'1GB'" now"#
        );

        let mut saved = steps();
        saved[2].node = "db3".into();
        let d = first_difference(&saved, &now).expect("differs");
        assert_eq!(
            d.to_string(),
            r#"step 3 (db2.standby): node is "db3" in the saved plan, "db2" now"#
        );

        let mut saved = steps();
        saved[2].op = Op::BaseBackup {
            upstream: "db1".into(),
            slot: None,
        };
        assert!(
            first_difference(&saved, &now)
                .expect("differs")
                .what
                .starts_with("slot is null")
        );

        let mut saved = steps();
        saved[2].reason = "another reason".into();
        assert!(first_difference(&saved, &now).is_some());
    }

    #[test]
    fn order_missing_and_extra_steps_differ() {
        let now = steps();
        let mut saved = steps();
        saved.swap(0, 1);
        let d = first_difference(&saved, &now).expect("differs");
        assert_eq!(d.position, 1);
        assert_eq!(d.address, "db1.service");

        let d = first_difference(&now[..2], &now).expect("differs");
        assert_eq!(
            d.to_string(),
            "step 3 (db2.standby): the plan now has this step; the saved plan does not"
        );
        let mut saved = steps();
        saved.push(step::rebase("db2", "db1", false, "/tmp/x".into()));
        let d = first_difference(&saved, &now).expect("differs");
        assert_eq!(
            d.to_string(),
            "step 4 (db2.timeline): the saved plan has this step; the plan now does not"
        );
    }

    #[test]
    fn measured_sizes_in_text_for_people_do_not_differ_but_values_do() {
        let now = steps();
        let mut saved = steps();
        saved[2].after = Some("base backup of db1 through slot db2 (about 7.3 MB)".into());
        assert_eq!(first_difference(&saved, &now), None);
        saved[0].after = Some("2GB".into());
        assert!(first_difference(&saved, &now).is_some());
        assert_eq!(
            without_sizes("lag now 0 B not received, 1.5 kB not replayed; 2GB; x1.0 MB; 3 Bytes"),
            "lag now <size> not received, <size> not replayed; 2GB; x1.0 MB; 3 Bytes"
        );
    }

    #[test]
    fn secrets_and_control_characters_are_never_shown() {
        let now = steps();
        let mut saved = steps();
        saved[0].sensitive = true;
        saved[0].before = Some("hunter2".into());
        let d = first_difference(&saved, &now).expect("differs");
        assert!(!d.to_string().contains("hunter2"), "{d}");
        let mut saved = steps();
        saved[1].address = "db1.service\u{1b}[2J\n".into();
        let d = first_difference(&saved, &now).expect("differs");
        assert!(
            !d.to_string().contains('\u{1b}') && !d.to_string().contains('\n'),
            "{d}"
        );
        let mut saved = steps();
        saved[0].op = Op::SetSetting {
            name: "wal_keep_size".into(),
            sql_value: "x".repeat(10_000),
            offline: None,
        };
        assert!(first_difference(&saved, &now).expect("differs").what.len() < 300);
    }

    #[test]
    fn a_plan_names_its_nodes_once_each() {
        let mut p = Plan::new(
            "c".into(),
            Vec::new(),
            steps(),
            Vec::new(),
            Vec::new(),
            Default::default(),
        );
        p.changes.push(step::switchover("db2", "db1", None));
        assert_eq!(p.node_names(), ["db1", "db2"]);
    }
}
