//! The plan as people read it (text, grouped by node in execution order)
//! and as machines read it (JSON, `schemas/plan.schema.json`).

use std::fmt::Write as _;

use super::{Action, Plan, Step};
use crate::quote::terminal;

/// ANSI colours, only when asked for (a terminal without NO_COLOR).
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn action(&self, a: Action) -> String {
        let code = match a {
            Action::Create => "32",
            Action::Update => "33",
            Action::Delete => "31",
            Action::Replace => "35",
        };
        self.paint(code, a.symbol())
    }
}

fn value(step: &Step, v: &Option<String>) -> String {
    match v {
        _ if step.sensitive => "(sensitive)".to_string(),
        Some(v) => v.clone(),
        None => String::new(),
    }
}

fn describe(step: &Step) -> String {
    let before = value(step, &step.before);
    let after = value(step, &step.after);
    let mut s = match (step.action, before.is_empty(), after.is_empty()) {
        (Action::Update, false, false) => format!("{before} -> {after}"),
        (_, _, false) => after,
        (_, false, true) => before,
        _ => String::new(),
    };
    if step.restart && !matches!(step.op, super::Op::Restart { .. }) {
        s.push_str(" (restart)");
    }
    // Role changes always say what they will do and why.
    let explains = matches!(
        step.op,
        super::Op::Switchover { .. }
            | super::Op::Promote { .. }
            | super::Op::Rebase { .. }
            | super::Op::DropSlot { .. }
            | super::Op::RemoveClusterFiles { .. }
            | super::Op::PoolerService { .. }
            | super::Op::Restart {
                catch_up_with: Some(_)
            }
    ) || matches!(&step.op, super::Op::Start { once_with, .. } if !once_with.is_empty());
    if !step.reason.is_empty() && (s.is_empty() || step.sensitive || explains) {
        if !s.is_empty() {
            s.push_str("  # ");
        }
        s.push_str(&step.reason);
    }
    s
}

/// The text plan.
pub fn text(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    if plan.is_empty() {
        if plan.blocked.is_empty() {
            let _ = writeln!(
                out,
                "No changes. Cluster \"{}\" matches the configuration.",
                plan.cluster
            );
        } else {
            let _ = writeln!(out, "No changes planned for the nodes that could be read.");
        }
        return out;
    }
    let _ = writeln!(
        out,
        "pgrepl will perform these steps on cluster \"{}\", in this order:",
        plan.cluster
    );
    let width = plan
        .changes
        .iter()
        .map(|s| s.address.len())
        .max()
        .unwrap_or(0);
    let mut current: Option<&str> = None;
    for step in &plan.changes {
        if current != Some(step.node.as_str()) {
            let header = match plan.nodes.iter().find(|n| n.name == step.node) {
                Some(n) => {
                    let kind = n
                        .kind
                        .as_ref()
                        .map_or_else(String::new, |k| format!(", {k}"));
                    match &n.upstream {
                        Some(up) => format!("{} ({} of {up}, {}{kind})", n.name, n.role, n.host),
                        None => format!("{} ({}, {}{kind})", n.name, n.role, n.host),
                    }
                }
                None => step.node.clone(),
            };
            let _ = writeln!(out, "\n{}", style.paint("1", &terminal(&header)));
            current = Some(step.node.as_str());
        }
        let sym = style.action(step.action);
        let pad = 3usize.saturating_sub(step.action.symbol().len());
        // Values and reasons may quote a node's text: no control characters.
        let desc = terminal(&describe(step)).into_owned();
        let line = format!("  {:pad$}{sym} {:width$}  {desc}", "", step.address);
        let _ = writeln!(out, "{}", line.trim_end());
        if let Some(diff) = &step.diff {
            for l in diff.lines() {
                let l = &*terminal(l);
                let painted = match l.chars().next() {
                    Some('+') if !l.starts_with("+++") => style.paint("32", l),
                    Some('-') if !l.starts_with("---") => style.paint("31", l),
                    _ => l.to_string(),
                };
                let _ = writeln!(out, "        {painted}");
            }
        }
    }
    let s = &plan.summary;
    let _ = writeln!(
        out,
        "\nPlan: {} to add, {} to change, {} to destroy, {} to replace.",
        s.add, s.change, s.destroy, s.replace
    );
    out
}

/// Nodes that could not be planned, then warnings: for stderr.
pub fn problems(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    for b in &plan.blocked {
        let _ = writeln!(
            out,
            "{} {}: {}",
            style.paint("31", "error:"),
            b.node.as_deref().unwrap_or("cluster"),
            terminal(&b.message)
        );
    }
    for w in &plan.warnings {
        let _ = writeln!(
            out,
            "{} {}: {}",
            style.paint("33", "warning:"),
            w.node.as_deref().unwrap_or("cluster"),
            terminal(&w.message)
        );
    }
    out
}

/// The JSON plan (`schemas/plan.schema.json`): no secrets, sensitive values as `(sensitive)`.
pub fn json(plan: &Plan) -> serde_json::Value {
    let mut v = serde_json::to_value(plan).unwrap_or(serde_json::Value::Null);
    if let Some(changes) = v.get_mut("changes").and_then(|c| c.as_array_mut()) {
        for (c, step) in changes.iter_mut().zip(&plan.changes) {
            if step.sensitive
                && let Some(obj) = c.as_object_mut()
            {
                obj.insert("before".into(), "(sensitive)".into());
                obj.insert("after".into(), "(sensitive)".into());
            }
        }
    }
    if let Some(obj) = v.as_object_mut() {
        obj.remove("facts");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Warning, step};

    #[test]
    fn a_nodes_text_cannot_drive_the_terminal() {
        let mut hba = step::write_hba(
            "node1",
            Action::Update,
            "/etc/pg_hba.conf",
            "host all all 0.0.0.0/0 trust\n".into(),
        );
        hba.diff = Some(
            "-host all all 10.0.0.0/8 md5 \x1b[2J\r\x07\n+host all all 0.0.0.0/0 trust\n".into(),
        );
        hba.reason = "was \x1b]0;pwned\x07".into();
        let mut plan = Plan::new(
            "c".into(),
            Vec::new(),
            vec![hba],
            vec![Warning {
                node: Some("node1".into()),
                message: "server says \x1b[2J".into(),
            }],
            Vec::new(),
            Default::default(),
        );
        plan.blocked.push(Warning {
            node: Some("node2".into()),
            message: "FATAL: \x1b[31mno\r".into(),
        });
        for color in [false, true] {
            let style = Style { color };
            let shown = text(&plan, style) + &problems(&plan, style);
            let escaped = shown.replace("\x1b[31m", "").replace("\x1b[32m", "");
            let escaped = escaped.replace("\x1b[33m", "").replace("\x1b[1m", "");
            let escaped = escaped.replace("\x1b[0m", "");
            assert!(!escaped.contains(['\x1b', '\r', '\x07']), "{shown:?}");
            assert!(shown.contains("md5 \\x1b[2J\\x0d\\x07"), "{shown}");
            assert!(shown.contains("server says \\x1b[2J"), "{shown}");
            assert!(shown.contains("FATAL: \\x1b[31mno\\x0d"), "{shown}");
        }
    }
}
