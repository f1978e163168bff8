//! Values that would keep a node from starting (issue 12, cases 1 and 3):
//! the plan blocks the node with what to do, and plans nothing on it.

use pgrepl::config::Config;
use pgrepl::diff;
use pgrepl::gather::{Observed, PreloadCheck, SlotFacts};
use pgrepl::plan::{Op, Plan};

use super::builder::{self, alter_system, converged, load, node, server};
use super::{orders_text, steps};

const LIBDIR: &str = "/usr/lib/postgresql/15/lib";

/// The three-node example cluster with `from` in `[settings]` replaced by `to`.
fn orders_with(from: &str, to: &str) -> Config {
    let text = orders_text("");
    assert_eq!(text.matches(from).count(), 1, "{from}");
    load(&text.replace(from, to))
}

fn slot(name: &str, active: bool) -> SlotFacts {
    SlotFacts {
        name: name.into(),
        slot_type: "physical".into(),
        active,
        restart_lsn: Some(pgrepl::gather::Lsn(0x0300_0000)),
        wal_status: Some("reserved".into()),
        retained_bytes: Some(0),
        invalidation_reason: None,
    }
}

fn blocked_message<'a>(plan: &'a Plan, name: &str) -> &'a str {
    &plan
        .blocked
        .iter()
        .find(|b| b.node.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{name} is not blocked: {:?}", plan.blocked))
        .message
}

fn nothing_on(plan: &Plan, name: &str) {
    let got = steps(plan);
    let prefix = format!(" {name}.");
    assert!(
        !got.iter().any(|s| s.contains(&prefix)),
        "nothing is planned on {name}: {got:#?}"
    );
}

/// Stops `name` cleanly, as the lab's `stop` leaves it.
fn stop(obs: &mut Observed, name: &str) {
    let n = node(obs, name);
    n.server = None;
    let f = n.files.as_mut().expect("files");
    f.running = false;
    f.control.as_mut().expect("control").state = "shut down".into();
}

#[test]
fn lowering_max_replication_slots_below_the_slots_a_node_holds_is_blocked() {
    let cfg = orders_with("max_replication_slots = 10", "max_replication_slots = 2");
    let mut obs = converged(&cfg);
    for n in ["db1", "db2", "db3"] {
        alter_system(&mut obs, n, "max_replication_slots", "10");
    }
    // db2 and db3's slots, and one pgrepl does not manage.
    server(&mut obs, "db1")
        .slots
        .push(slot("old_barman", false));
    let plan = diff::plan(&cfg, &obs);
    let why = blocked_message(&plan, "db1");
    assert!(
        why.contains("would hold 3 replication slots (db2, db3, old_barman)")
            && why.contains("max_replication_slots = 2")
            && why.contains("too many replication slots active before shutdown")
            && why.contains("pg_drop_replication_slot('old_barman')")
            && why.contains("at least 3"),
        "{why}"
    );
    nothing_on(&plan, "db1");
    // The standbys hold no slot: lowered there as planned.
    let got = steps(&plan);
    assert!(
        got.contains(&"~ db2.setting.max_replication_slots set_setting".to_string()),
        "{got:#?}"
    );
}

#[test]
fn lowering_max_replication_slots_to_the_slots_held_is_planned() {
    let cfg = orders_with("max_replication_slots = 10", "max_replication_slots = 2");
    let mut obs = converged(&cfg);
    alter_system(&mut obs, "db1", "max_replication_slots", "10");
    let plan = diff::plan(&cfg, &obs);
    assert!(plan.blocked.is_empty(), "{:?}", plan.blocked);
    let got = steps(&plan);
    assert!(
        got.contains(&"~ db1.setting.max_replication_slots set_setting".to_string())
            && got.contains(&"~ db1.service restart".to_string()),
        "{got:#?}"
    );
}

#[test]
fn a_stopped_node_with_more_slots_on_disk_than_it_would_start_with_is_blocked() {
    let cfg = orders_with("max_replication_slots = 10", "max_replication_slots = 2");
    let mut obs = converged(&cfg);
    stop(&mut obs, "db1");
    builder::files(&mut obs, "db1").slots_on_disk = Some(3);
    let plan = diff::plan(&cfg, &obs);
    let why = blocked_message(&plan, "db1");
    assert!(
        why.contains("3 replication slots in pg_replslot")
            && why.contains("max_replication_slots = 2")
            && why.contains("at least 3"),
        "{why}"
    );
    nothing_on(&plan, "db1");
}

/// The stuck primary: down because postgresql.auto.conf holds a
/// value below its slots; once the file is fixed, the value is rewritten
/// offline and the node started, in that order.
#[test]
fn a_node_down_for_too_few_slots_is_repaired_offline_once_the_file_is_fixed() {
    let cfg = orders_text("");
    let cfg = load(&cfg);
    let mut obs = converged(&cfg);
    stop(&mut obs, "db1");
    let f = builder::files(&mut obs, "db1");
    f.slots_on_disk = Some(3);
    let auto = f.auto_conf.clone().unwrap_or_default();
    f.auto_conf = Some(format!("{auto}max_replication_slots = '2'\n"));
    let plan = diff::plan(&cfg, &obs);
    assert!(plan.blocked.is_empty(), "{:?}", plan.blocked);
    let got = steps(&plan);
    let set = got
        .iter()
        .position(|s| s == "~ db1.setting.max_replication_slots set_setting")
        .unwrap_or_else(|| panic!("{got:#?}"));
    let start = got
        .iter()
        .position(|s| s == "~ db1.service start")
        .unwrap_or_else(|| panic!("{got:#?}"));
    assert!(set < start, "{got:#?}");
    assert!(
        matches!(&plan.changes[set].op, Op::SetSetting { offline: Some(v), .. } if v == "10"),
        "{:?}",
        plan.changes[set].op
    );
}

fn preload_cfg(libs: &str) -> Config {
    load(&orders_text(&format!(
        "shared_preload_libraries = \"{libs}\""
    )))
}

#[test]
fn a_preload_library_missing_on_the_node_is_blocked_before_the_restart() {
    let cfg = preload_cfg("pg_stat_statementz");
    let mut obs = converged(&cfg);
    for n in ["db1", "db2", "db3"] {
        alter_system(&mut obs, n, "shared_preload_libraries", "");
        builder::files(&mut obs, n).preload = Some(PreloadCheck {
            libdir: Some(LIBDIR.into()),
            missing: vec!["pg_stat_statementz".into()],
        });
    }
    let plan = diff::plan(&cfg, &obs);
    for n in ["db1", "db2", "db3"] {
        let why = blocked_message(&plan, n);
        assert!(
            why.contains("shared_preload_libraries names pg_stat_statementz")
                && why.contains(LIBDIR)
                && why.contains("fix the name in the file"),
            "{why}"
        );
        nothing_on(&plan, n);
    }
}

#[test]
fn a_preload_library_present_on_the_node_is_set_and_restarted_into() {
    let cfg = preload_cfg("pg_stat_statements");
    let mut obs = converged(&cfg);
    for n in ["db1", "db2", "db3"] {
        alter_system(&mut obs, n, "shared_preload_libraries", "");
        builder::files(&mut obs, n).preload = Some(PreloadCheck {
            libdir: Some(LIBDIR.into()),
            missing: Vec::new(),
        });
    }
    let plan = diff::plan(&cfg, &obs);
    assert!(plan.blocked.is_empty(), "{:?}", plan.blocked);
    let got = steps(&plan);
    assert!(
        got.contains(&"~ db1.setting.shared_preload_libraries set_setting".to_string())
            && got.contains(&"~ db1.service restart".to_string()),
        "{got:#?}"
    );
}

/// Loaded already, its file gone since: the server runs; only its next
/// start fails. A warning, not a block: the plan restarts nothing for it.
#[test]
fn a_loaded_library_whose_file_is_gone_is_a_warning() {
    let cfg = preload_cfg("pg_stat_statements");
    let mut obs = converged(&cfg);
    builder::files(&mut obs, "db2").preload = Some(PreloadCheck {
        libdir: Some(LIBDIR.into()),
        missing: vec!["pg_stat_statements".into()],
    });
    let plan = diff::plan(&cfg, &obs);
    assert!(plan.blocked.is_empty(), "{:?}", plan.blocked);
    assert!(
        plan.warnings.iter().any(|w| w.node.as_deref() == Some("db2")
            && w.message.contains("next start will fail")),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn a_stopped_node_that_would_start_with_a_missing_library_is_blocked() {
    let cfg = preload_cfg("pg_stat_statementz");
    let mut obs = converged(&cfg);
    stop(&mut obs, "db3");
    builder::files(&mut obs, "db3").preload = Some(PreloadCheck {
        libdir: Some(LIBDIR.into()),
        missing: vec!["pg_stat_statementz".into()],
    });
    let plan = diff::plan(&cfg, &obs);
    let why = blocked_message(&plan, "db3");
    assert!(
        why.contains("is stopped and cannot be started")
            && why.contains("pg_stat_statementz")
            && why.contains(LIBDIR),
        "{why}"
    );
    nothing_on(&plan, "db3");
    // Its library directory not found: checked once it runs, said so.
    builder::files(&mut obs, "db3").preload = Some(PreloadCheck {
        libdir: None,
        missing: Vec::new(),
    });
    let plan = diff::plan(&cfg, &obs);
    assert!(plan.blocked.is_empty(), "{:?}", plan.blocked);
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.message.contains("could not be checked")),
        "{:?}",
        plan.warnings
    );
}
