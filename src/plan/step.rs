//! One builder per kind of step: each names its resource's address and
//! fills in its `Op`; the planners add before, after and the reason.
//! Every address of the plan is written here, so `--target` and the
//! docs can rely on one shape: `NODE.hba`, `NODE.setting.NAME`,
//! `NODE.slot.SLOT`, `NODE.recovery`, `NODE.service`, `NODE.standby`,
//! `NODE.timeline`, `NODE.cluster_files.CLUSTER`, `role.NAME` and
//! `cluster.primary`.

use std::collections::BTreeMap;

use super::{Action, Op, RoleKind, Step};
use crate::quote::sql_literal;

fn new(node: &str, address: String, action: Action, op: Op) -> Step {
    Step {
        address,
        node: node.to_string(),
        action,
        before: None,
        after: None,
        restart: false,
        reason: String::new(),
        sensitive: false,
        diff: None,
        op,
    }
}

fn service(node: &str) -> String {
    format!("{node}.service")
}

fn setting(node: &str, name: &str) -> String {
    format!("{node}.setting.{name}")
}

fn slot(node: &str, slot: &str) -> String {
    format!("{node}.slot.{slot}")
}

const CLUSTER_PRIMARY: &str = "cluster.primary";

/// `~ NODE.hba`, or `+` when the file has no managed block yet.
pub fn write_hba(node: &str, action: Action, path: &str, content: String) -> Step {
    new(
        node,
        format!("{node}.hba"),
        action,
        Op::WriteHba {
            path: path.to_string(),
            content,
        },
    )
}

/// `+ role.NAME`, created on the primary `node`.
pub fn create_role(node: &str, name: &str, kind: RoleKind) -> Step {
    new(
        node,
        format!("role.{name}"),
        Action::Create,
        Op::CreateRole {
            name: name.to_string(),
            kind,
        },
    )
}

/// `~ role.NAME`: what differs of an existing role.
pub fn update_role(
    node: &str,
    name: &str,
    kind: RoleKind,
    password: bool,
    attributes: bool,
    grants: bool,
) -> Step {
    new(
        node,
        format!("role.{name}"),
        Action::Update,
        Op::UpdateRole {
            name: name.to_string(),
            kind,
            password,
            attributes,
            grants,
        },
    )
}

/// `~ NODE.setting.NAME` by ALTER SYSTEM; `sql_value` is quoted already.
pub fn set_setting(node: &str, name: &str, sql_value: String) -> Step {
    new(
        node,
        setting(node, name),
        Action::Update,
        Op::SetSetting {
            name: name.to_string(),
            sql_value,
            offline: None,
        },
    )
}

/// `NODE.setting.NAME` written into a stopped server's postgresql.auto.conf.
pub fn offline_setting(node: &str, name: &str, action: Action, value: &str) -> Step {
    new(
        node,
        setting(node, name),
        action,
        Op::SetSetting {
            name: name.to_string(),
            sql_value: sql_literal(value),
            offline: Some(value.to_string()),
        },
    )
}

/// `+ NODE.slot.SLOT`: a physical slot.
pub fn create_slot(node: &str, name: &str) -> Step {
    let mut s = new(
        node,
        slot(node, name),
        Action::Create,
        Op::CreateSlot {
            name: name.to_string(),
        },
    );
    s.after = Some("physical slot".into());
    s
}

/// `- NODE.slot.SLOT`: a slot pgrepl made that no standby will use.
pub fn drop_slot(node: &str, name: &str, before: &str, reason: String) -> Step {
    let mut s = new(
        node,
        slot(node, name),
        Action::Delete,
        Op::DropSlot {
            name: name.to_string(),
        },
    );
    s.before = Some(before.to_string());
    s.reason = reason;
    s
}

/// `- NODE.cluster_files.CLUSTER`: the passfile and lock files a former
/// name of the cluster left beside the data directory.
pub fn remove_cluster_files(node: &str, cluster: &str, paths: Vec<String>) -> Step {
    new(
        node,
        format!("{node}.cluster_files.{cluster}"),
        Action::Delete,
        Op::RemoveClusterFiles {
            cluster: cluster.to_string(),
            paths,
        },
    )
}

/// `NODE.recovery`: primary_conninfo, primary_slot_name, standby.signal and
/// the passfile.
pub fn write_recovery(
    node: &str,
    action: Action,
    primary_conninfo: &str,
    primary_slot_name: &str,
    passfile: &str,
) -> Step {
    new(
        node,
        format!("{node}.recovery"),
        action,
        Op::WriteRecovery {
            primary_conninfo: primary_conninfo.to_string(),
            primary_slot_name: primary_slot_name.to_string(),
            passfile: passfile.to_string(),
        },
    )
}

/// `~ NODE.service`: pg_reload_conf().
pub fn reload(node: &str, reason: &str) -> Step {
    let mut s = new(node, service(node), Action::Update, Op::Reload);
    s.after = Some("reload".into());
    s.reason = reason.to_string();
    s
}

/// `~ NODE.service`: a restart for `settings` (their names, joined).
pub fn restart(node: &str, settings: &str, catch_up_with: Option<String>, reason: String) -> Step {
    let mut s = new(
        node,
        service(node),
        Action::Update,
        Op::Restart { catch_up_with },
    );
    s.after = Some(format!("restart for {settings}"));
    s.restart = true;
    s.reason = reason;
    s
}

/// `NODE.service`: start a stopped or new node.
pub fn start(
    node: &str,
    action: Action,
    once_with: BTreeMap<String, String>,
    catch_up_with: Option<String>,
) -> Step {
    new(
        node,
        service(node),
        action,
        Op::Start {
            once_with,
            catch_up_with,
        },
    )
}

/// `+ NODE.standby`: a base backup of `upstream` into the empty data directory.
pub fn base_backup(node: &str, upstream: &str, slot: Option<String>) -> Step {
    new(
        node,
        format!("{node}.standby"),
        Action::Create,
        Op::BaseBackup {
            upstream: upstream.to_string(),
            slot,
        },
    )
}

/// `~ cluster.primary`: a clean switchover from `from` to `node`.
pub fn switchover(node: &str, from: &str, synchronous_standby_names: Option<String>) -> Step {
    let mut s = new(
        node,
        CLUSTER_PRIMARY.into(),
        Action::Update,
        Op::Switchover {
            from: from.to_string(),
            synchronous_standby_names,
            poolers: Vec::new(),
        },
    );
    s.before = Some(from.to_string());
    s.after = Some(node.to_string());
    s
}

/// `~ cluster.primary`: a failover, promoting `node` without `old`.
pub fn promote(node: &str, old: &str, synchronous_standby_names: Option<String>) -> Step {
    let mut s = new(
        node,
        CLUSTER_PRIMARY.into(),
        Action::Update,
        Op::Promote {
            old: old.to_string(),
            synchronous_standby_names,
        },
    );
    s.after = Some(node.to_string());
    s
}

/// `-/+ NODE.timeline`: re-base from `source`.
pub fn rebase(node: &str, source: &str, rewind: bool, keep_as: String) -> Step {
    new(
        node,
        format!("{node}.timeline"),
        Action::Replace,
        Op::Rebase {
            source: source.to_string(),
            rewind,
            keep_as,
        },
    )
}
