//! What PostgreSQL 16, 17 and 18 change in a plan, on plain data: failover
//! slots, invalidated slots, MD5 passwords, include directives in pg_hba.conf.

use pgrepl::config::Config;
use pgrepl::desired;
use pgrepl::diff;
use pgrepl::gather::Observed;
use pgrepl::guc::Normalized;
use pgrepl::hba::{Connection, FileRule, HBA_BEGIN, HBA_END, included_before_block};
use pgrepl::plan::Plan;

use super::builder::{converged, files, load, server};
use super::{orders_text, steps};

fn with_settings(settings: &str) -> Config {
    load(&format!(
        "{}{settings}\n",
        orders_text("").replace("wal_level = \"replica\"\n", "")
    ))
}

fn on_major(cfg: &Config, version_num: u32) -> Observed {
    let mut obs = converged(cfg);
    for n in obs.nodes.values_mut() {
        if let Some(s) = n.server.as_mut() {
            s.version_num = version_num;
        }
    }
    obs
}

fn warnings(plan: &Plan) -> String {
    plan.warnings
        .iter()
        .map(|w| format!("{}: {}", w.node.as_deref().unwrap_or("-"), w.message))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn slot_sync_brings_dbname_hot_standby_feedback_and_an_hba_rule() {
    let plain = desired::desired_state(&with_settings("wal_level = \"logical\""));
    let rec = plain.nodes["db2"]
        .recovery
        .as_ref()
        .expect("db2 is a standby");
    assert!(
        !rec.primary_conninfo.contains("dbname"),
        "{}",
        rec.primary_conninfo
    );
    assert!(
        !plain.nodes["db2"]
            .settings
            .contains_key("hot_standby_feedback")
    );

    let cfg = with_settings("wal_level = \"logical\"\nsync_replication_slots = true");
    let want = desired::desired_state(&cfg);
    let rec = want.nodes["db2"]
        .recovery
        .as_ref()
        .expect("db2 is a standby");
    assert!(
        rec.primary_conninfo.contains(" dbname=postgres "),
        "{}",
        rec.primary_conninfo
    );
    assert_eq!(
        want.nodes["db2"].settings["hot_standby_feedback"].normalized,
        Some(Normalized::Bool(true))
    );
    let rule = "host     postgres     replicator       10.0.2.11/32";
    assert!(
        want.nodes["db1"]
            .hba_block
            .iter()
            .any(|l| l.starts_with(rule)),
        "{:#?}",
        want.nodes["db1"].hba_block
    );
    // A converged cluster of 17 with it: nothing to warn of.
    let plan = diff::plan(&cfg, &on_major(&cfg, 170_010));
    assert!(plan.warnings.is_empty(), "{}", warnings(&plan));
}

#[test]
fn slot_sync_against_the_file_is_warned_of() {
    let cfg = with_settings(
        "wal_level = \"replica\"\nsync_replication_slots = true\nhot_standby_feedback = false",
    );
    let plan = diff::plan(&cfg, &on_major(&cfg, 170_010));
    let w = warnings(&plan);
    assert!(
        w.contains("db2: sync_replication_slots = on, but its slot sync worker cannot copy the primary's failover slots: the file sets hot_standby_feedback = off; it must be on; wal_level is replica; it must be logical on every node"),
        "{w}"
    );
    // PostgreSQL 16 has no slot sync: the setting itself is what is said.
    let plan = diff::plan(&cfg, &on_major(&cfg, 160_002));
    assert!(
        !warnings(&plan).contains("slot sync worker"),
        "{}",
        warnings(&plan)
    );
}

#[test]
fn synchronized_standby_slots_must_name_managed_slots() {
    let cfg =
        with_settings("wal_level = \"logical\"\nsynchronized_standby_slots = \"db2, barman\"");
    let plan = diff::plan(&cfg, &on_major(&cfg, 170_010));
    let w = warnings(&plan);
    assert!(
        w.contains("db1: synchronized_standby_slots names barman, which the file does not make a physical slot on db1 (its slots: db2, db3)"),
        "{w}"
    );
    assert!(!w.contains("names db2"), "{w}");
}

fn invalidate(obs: &mut Observed, reason: Option<&str>) {
    let slot = server(obs, "db1")
        .slots
        .iter_mut()
        .find(|s| s.name == "db2")
        .expect("db1 holds db2's slot");
    slot.active = false;
    slot.wal_status = Some("lost".into());
    slot.invalidation_reason = reason.map(String::from);
}

#[test]
fn an_idle_timeout_slot_is_recreated_and_its_standby_kept() {
    let cfg = with_settings("wal_level = \"replica\"");
    let mut obs = on_major(&cfg, 180_006);
    invalidate(&mut obs, Some("idle_timeout"));
    let plan = diff::plan(&cfg, &obs);
    let s = steps(&plan);
    let drop = s.iter().position(|s| s == "- db1.slot.db2 drop_slot");
    let create = s.iter().position(|s| s == "+ db1.slot.db2 create_slot");
    assert!(drop.is_some() && create > drop, "{s:?}");
    assert!(!s.iter().any(|s| s.contains("db2.timeline")), "{s:?}");
    let json = pgrepl::plan::render::json(&plan);
    let errors = super::schema_errors(&super::plan_schema(), &json);
    assert!(errors.is_empty(), "{errors:?}");
    let w = warnings(&plan);
    assert!(
        w.contains("slot db2 was invalidated (invalidation_reason idle_timeout: unused for longer than idle_replication_slot_timeout): this plan re-creates it"),
        "{w}"
    );
    let status = pgrepl::status::derive(&cfg, &obs);
    let db2 = status.nodes.iter().find(|n| n.name == "db2").expect("db2");
    assert_eq!(db2.slot_invalidated.as_deref(), Some("idle_timeout"));
    assert!(!db2.healthy);
}

#[test]
fn a_lost_slot_before_17_is_wal_removed_recreated_and_its_standby_rebased() {
    let cfg = with_settings("wal_level = \"replica\"");
    let mut obs = converged(&cfg);
    invalidate(&mut obs, None);
    let plan = diff::plan(&cfg, &obs);
    let s = steps(&plan);
    assert!(s.contains(&"- db1.slot.db2 drop_slot".to_string()), "{s:?}");
    assert!(
        s.contains(&"+ db1.slot.db2 create_slot".to_string()),
        "{s:?}"
    );
    assert!(s.iter().any(|s| s.starts_with("-/+ db2.timeline")), "{s:?}");
    assert!(
        warnings(&plan).contains("invalidation_reason wal_removed"),
        "{}",
        warnings(&plan)
    );
}

#[test]
fn md5_passwords_are_warned_of_on_18_only() {
    let cfg = with_settings("wal_level = \"replica\"\npassword_encryption = \"md5\"");
    let mut obs = on_major(&cfg, 180_006);
    for n in obs.nodes.values_mut() {
        if let Some(s) = n.server.as_mut() {
            s.md5_roles = vec!["legacy".into()];
            if let Some(p) = s.settings.get_mut("password_encryption") {
                p.setting = "md5".into();
            }
        }
    }
    let w = warnings(&diff::plan(&cfg, &obs));
    assert!(
        w.contains("db1: role legacy still has an MD5 password, which PostgreSQL 18 deprecates"),
        "{w}"
    );
    assert!(
        !w.contains("db2: role legacy"),
        "roles are named once, on the primary: {w}"
    );
    assert!(
        w.contains("db2: the file sets password_encryption = md5, which PostgreSQL 18 deprecates"),
        "{w}"
    );
    for n in obs.nodes.values_mut() {
        if let Some(s) = n.server.as_mut() {
            s.version_num = 170_010;
        }
    }
    let w = warnings(&diff::plan(&cfg, &obs));
    assert!(!w.contains("MD5") && !w.contains("md5"), "{w}");
}

#[test]
fn an_include_above_the_block_names_the_included_rule_that_shadows_it() {
    let cfg = with_settings("wal_level = \"replica\"");
    let mut obs = on_major(&cfg, 160_002);
    let hba = files(&mut obs, "db1").hba_conf.clone().expect("hba");
    files(&mut obs, "db1").hba_conf = Some(format!("include_dir conf.d\n{hba}"));
    let hba_file = server(&mut obs, "db1").hba_file.clone();
    server(&mut obs, "db1").hba_rules = vec![
        rule(
            1,
            "/etc/conf.d/10-app.conf",
            1,
            "app",
            "app",
            "10.0.3.0",
            "255.255.255.0",
        ),
        rule(
            2,
            "/etc/conf.d/20-deny.conf",
            3,
            "replication",
            "all",
            "10.0.2.0",
            "255.255.255.0",
        ),
        rule(
            3,
            &hba_file,
            4,
            "replication",
            "replicator",
            "10.0.2.11",
            "255.255.255.255",
        ),
    ];
    let plan = diff::plan(&cfg, &obs);
    let w = warnings(&plan);
    assert!(
        w.contains("line 1 (`include_dir conf.d`) stands before pgrepl's block: the rules it includes are matched first, and shadow the block's: /etc/conf.d/20-deny.conf line 3 (`host replication all 10.0.2.0 255.255.255.0`) matches replicator's replication connections from db2 before the block does; the block moves above it (the directive stays)"),
        "{w}"
    );
    assert!(!w.contains("10-app.conf"), "{w}");
    assert!(
        steps(&plan).contains(&"~ db1.hba write_hba".to_string()),
        "{:?}",
        steps(&plan)
    );
}

fn rule(n: i32, file: &str, line: i32, db: &str, user: &str, addr: &str, mask: &str) -> FileRule {
    FileRule {
        rule_number: n,
        file_name: file.into(),
        line_number: line,
        kind: "host".into(),
        database: vec![db.into()],
        user_name: vec![user.into()],
        address: Some(addr.into()),
        netmask: (!mask.is_empty()).then(|| mask.to_string()),
    }
}

#[test]
fn a_rule_may_match_a_managed_connection() {
    let c = Connection {
        database: "replication",
        user: "replicator",
        client: "10.0.2.11",
    };
    assert!(rule(1, "f", 1, "replication", "all", "10.0.2.0", "255.255.255.0").may_match(&c));
    assert!(
        rule(
            1,
            "f",
            1,
            "replication",
            "replicator",
            "10.0.2.11",
            "255.255.255.255"
        )
        .may_match(&c)
    );
    assert!(rule(1, "f", 1, "replication", "+admins", "all", "").may_match(&c));
    assert!(rule(1, "f", 1, "replication", "all", "samenet", "").may_match(&c));
    // `all` does not match replication connections.
    assert!(!rule(1, "f", 1, "all", "all", "0.0.0.0", "0.0.0.0").may_match(&c));
    assert!(!rule(1, "f", 1, "replication", "all", "10.0.3.0", "255.255.255.0").may_match(&c));
    assert!(!rule(1, "f", 1, "replication", "app", "10.0.2.0", "255.255.255.0").may_match(&c));
    let rewind = Connection {
        database: "postgres",
        user: "pgrepl_rewind",
        client: "10.0.2.11",
    };
    assert!(rule(1, "f", 1, "all", "all", "0.0.0.0", "0.0.0.0").may_match(&rewind));
    let v6 = Connection {
        database: "replication",
        user: "r",
        client: "fd00::11",
    };
    assert!(rule(1, "f", 1, "replication", "r", "fd00::", "ffff::").may_match(&v6));
    assert!(!rule(1, "f", 1, "replication", "r", "fd01::", "ffff:ffff::").may_match(&v6));
    let mut local = rule(1, "f", 1, "replication", "all", "all", "");
    local.kind = "local".into();
    assert!(!local.may_match(&c));
}

#[test]
fn included_rules_before_the_block_are_those_numbered_before_its_first_rule() {
    let current = format!(
        "include_dir conf.d\n{HBA_BEGIN}\nhost replication r 10.0.0.2/32 scram-sha-256\n{HBA_END}\ninclude late.conf\n"
    );
    let rules = vec![
        rule(1, "/etc/conf.d/a.conf", 1, "replication", "all", "all", ""),
        rule(
            2,
            "/etc/pg_hba.conf",
            3,
            "replication",
            "r",
            "10.0.0.2",
            "255.255.255.255",
        ),
        rule(3, "/etc/late.conf", 1, "replication", "all", "all", ""),
    ];
    let before = included_before_block(&current, "/etc/pg_hba.conf", &rules);
    assert_eq!(before, vec![&rules[0]]);
    assert!(included_before_block("include x\n", "/etc/pg_hba.conf", &rules).is_empty());
}
