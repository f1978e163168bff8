//! Switchover, failover and re-basing diverged nodes on real nodes.

use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::lab::Lab;
use crate::support::{
    apply_ok, edit_config, kept_old_data_dirs, pgrepl, plan_is_empty, sender_of, set_primary, text,
    wait_for,
};

fn apply(lab: &Lab, extra: &[&str]) -> Output {
    let mut args = vec!["apply", "--auto-approve"];
    args.extend_from_slice(extra);
    pgrepl(lab, &args)
}

/// Writes through whichever node accepts writes, recording every committed id.
pub fn writer(lab: &Lab, stop: Arc<AtomicBool>) -> Vec<i64> {
    let mut committed = Vec::new();
    let mut target = 1;
    while !stop.load(Ordering::SeqCst) {
        let out = lab.try_sql(
            target,
            "INSERT INTO lab_data(note) VALUES ('load') RETURNING id",
        );
        let id = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<i64>()
            .ok();
        match (out.status.success(), id) {
            (true, Some(id)) => committed.push(id),
            _ => target = if target == 1 { 2 } else { 1 },
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    committed
}

/// A switchover from node1 to node2 while `writer` inserts: at least 5
/// rows acknowledged, node2 the primary, node1 and node3 streaming from it,
/// no acknowledged row missing there, the next plan empty. Returns what
/// apply printed, for the caller's own checks.
pub fn switchover_to_node2_under_writes(lab: &Lab) -> String {
    let stop = Arc::new(AtomicBool::new(false));
    let (out, committed) = std::thread::scope(|s| {
        let w = s.spawn(|| writer(lab, stop.clone()));
        /// Stops the writer even when an assertion fails.
        struct StopOnDrop(Arc<AtomicBool>);
        impl Drop for StopOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _guard = StopOnDrop(stop.clone());
        std::thread::sleep(Duration::from_millis(500));
        set_primary(lab, "node2");
        let out = text(&apply_ok(lab, &[]));
        assert!(out.contains("switchover"), "{out}");
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        (out, w.join().expect("writer"))
    });
    assert!(
        committed.len() >= 5,
        "only {} rows written",
        committed.len()
    );
    assert_eq!(lab.sql(2, "SELECT pg_is_in_recovery()"), "f");
    let h2 = lab.host(2);
    wait_for(
        "node1 and node3 to stream from node2",
        Duration::from_secs(20),
        || {
            sender_of(lab, 1) == format!("{h2}:streaming")
                && sender_of(lab, 3) == format!("{h2}:streaming")
        },
    );
    let on_new = ids_on(lab, 2);
    let lost: Vec<&i64> = committed.iter().filter(|id| !on_new.contains(id)).collect();
    assert!(lost.is_empty(), "committed rows lost: {lost:?}");
    plan_is_empty(lab);
    out
}

/// A converged lab's failover: node1 cut, node2 promoted with --force;
/// node1 writes on alone, comes back and is re-based by pg_rewind; it then
/// streams from node2 without its own rows. Returns what the re-base's
/// apply printed.
pub fn failover_to_node2_then_node1_rewound(lab: &Lab) -> String {
    lab.cut(1);
    set_primary(lab, "node2");
    apply_ok(lab, &["--force"]);
    assert_eq!(lab.sql(2, "SELECT pg_is_in_recovery()"), "f");
    lab.sql(
        1,
        "INSERT INTO lab_data(note) SELECT 'split brain' FROM generate_series(1, 500)",
    );
    lab.sql(
        2,
        "INSERT INTO lab_data(note) VALUES ('on the new primary')",
    );
    lab.heal(1);
    let out = text(&apply_ok(lab, &[]));
    assert!(out.contains("node1.timeline"), "{out}");
    assert!(out.contains("by pg_rewind"), "{out}");
    let h2 = lab.host(2);
    wait_for(
        "node1 to stream from node2",
        Duration::from_secs(20),
        || sender_of(lab, 1) == format!("{h2}:streaming"),
    );
    assert_eq!(
        lab.sql(
            1,
            "SELECT count(*) FROM lab_data WHERE note = 'split brain'"
        ),
        "0"
    );
    out
}

/// The ids of node `i`'s rows.
pub fn ids_on(lab: &Lab, i: usize) -> std::collections::HashSet<i64> {
    lab.sql(i, "SELECT string_agg(id::text, ',') FROM lab_data")
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect()
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn switchover_under_write_load_loses_nothing_and_back_again() {
    let lab = Lab::for_test(
        "switchover_under_write_load_loses_nothing_and_back_again",
        3,
    );
    apply_ok(&lab, &[]);
    for (from, to) in [(1usize, 2usize), (2, 1)] {
        let stop = Arc::new(AtomicBool::new(false));
        /// Stops the writer even when an assertion fails, so the scope ends.
        struct StopOnDrop(Arc<AtomicBool>);
        impl Drop for StopOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let committed = std::thread::scope(|s| {
            let w = s.spawn(|| writer(&lab, stop.clone()));
            let _guard = StopOnDrop(stop.clone());
            std::thread::sleep(Duration::from_millis(300));
            set_primary(&lab, &lab.node_name(to));
            let plan = pgrepl(&lab, &["plan"]);
            let shown = text(&plan);
            assert!(shown.contains("cluster.primary"), "{shown}");
            assert!(shown.contains("switchover"), "{shown}");
            let out = text(&apply_ok(&lab, &[]));
            assert!(
                !out.contains("pg_rewind:"),
                "a clean switchover needs no pg_rewind:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(300));
            stop.store(true, Ordering::SeqCst);
            w.join().expect("writer")
        });
        // About 2 s of writes, fewer on a loaded machine: enough that the
        // switchover ran under load.
        assert!(
            committed.len() >= 5,
            "the load wrote only {} rows",
            committed.len()
        );
        assert_eq!(lab.sql(to, "SELECT pg_is_in_recovery()"), "f");
        assert_eq!(lab.sql(from, "SELECT pg_is_in_recovery()"), "t");
        let to_host = lab.host(to);
        wait_for(
            "the old primary and node3 to stream from the new one",
            Duration::from_secs(20),
            || {
                sender_of(&lab, from) == format!("{to_host}:streaming")
                    && sender_of(&lab, 3) == format!("{to_host}:streaming")
            },
        );
        let on_new = ids_on(&lab, to);
        let lost: Vec<&i64> = committed.iter().filter(|id| !on_new.contains(id)).collect();
        assert!(
            lost.is_empty(),
            "committed rows lost in the switchover {from} -> {to}: {lost:?}"
        );
        plan_is_empty(&lab);
        // Slots: the new primary holds one per standby; the old one none of them.
        assert_eq!(
            lab.sql(
                to,
                "SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots"
            ),
            [from, 3]
                .iter()
                .map(|i| lab.node_name(*i))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(
            lab.sql(from, "SELECT count(*) FROM pg_replication_slots"),
            "0"
        );
    }
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn failover_then_the_diverged_old_primary_is_rewound() {
    let lab = Lab::for_test("failover_then_the_diverged_old_primary_is_rewound", 3);
    apply_ok(&lab, &[]);
    lab.cut(1);
    set_primary(&lab, "node2");
    // Without --force: refused, nothing changed.
    let out = apply(&lab, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("--force"), "{}", text(&out));
    assert_eq!(lab.sql(2, "SELECT pg_is_in_recovery()"), "t");
    let out = apply(&lab, &["--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(lab.sql(2, "SELECT pg_is_in_recovery()"), "f");
    let h2 = lab.host(2);
    wait_for("node3 to follow node2", Duration::from_secs(20), || {
        sender_of(&lab, 3) == format!("{h2}:streaming")
    });
    // Split brain: the cut-off old primary keeps accepting writes.
    lab.sql(
        1,
        "INSERT INTO lab_data(note) SELECT 'split brain' FROM generate_series(1, 2000)",
    );
    lab.sql(
        2,
        "INSERT INTO lab_data(note) VALUES ('on the new primary')",
    );
    lab.heal(1);
    // status calls it what it is, and unhealthy.
    let st = pgrepl(&lab, &["status", "--json"]);
    assert_eq!(st.status.code(), Some(3), "{}", text(&st));
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).expect("json");
    let n1 = v["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == "node1"))
        .cloned()
        .expect("node1");
    assert_eq!(n1["role"], "diverged", "{n1:#}");
    assert_eq!(n1["healthy"], false);
    assert!(n1["problems"].to_string().contains("diverged at"), "{n1:#}");
    let plan = pgrepl(&lab, &["plan"]);
    let shown = text(&plan);
    assert!(shown.contains("node1.timeline"), "{shown}");
    assert!(shown.contains("diverged at "), "{shown}");
    assert!(shown.contains("on timeline 1"), "{shown}");
    assert!(shown.contains("discarded"), "{shown}");
    assert!(shown.contains("pg_rewind"), "{shown}");
    let out = text(&apply_ok(&lab, &[]));
    assert!(out.contains("by pg_rewind"), "{out}");
    // What pg_rewind discarded is kept beside the data directory: the
    // split-brain rows are in timeline 1's WAL there.
    assert!(out.contains("the diverged WAL ("), "{out}");
    let kept = lab.exec(
        1,
        &[
            "sh",
            "-c",
            "cd \"$1\".pgrepl-diverged-wal-* && ls && pg_waldump -p . -t 1 -r Heap $(ls | grep -m1 '^00000001') 2>/dev/null | grep -c 'INSERT'",
            "sh",
            &lab.data_dir(),
        ],
    );
    let listing = String::from_utf8_lossy(&kept.stdout);
    assert!(
        listing.lines().any(|l| l.starts_with("00000001")),
        "{listing}\n{}",
        String::from_utf8_lossy(&kept.stderr)
    );
    let inserts: u32 = listing
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        inserts >= 2000,
        "the kept WAL holds the split-brain inserts: {listing}"
    );
    wait_for(
        "node1 to stream from node2",
        Duration::from_secs(20),
        || sender_of(&lab, 1) == format!("{h2}:streaming"),
    );
    let want = lab.sql(2, "SELECT count(*) || ':' || max(id) FROM lab_data");
    wait_for(
        "node1's rows to equal node2's",
        Duration::from_secs(10),
        || lab.sql(1, "SELECT count(*) || ':' || max(id) FROM lab_data") == want,
    );
    assert_eq!(
        lab.sql(
            1,
            "SELECT count(*) FROM lab_data WHERE note = 'split brain'"
        ),
        "0"
    );
    plan_is_empty(&lab);
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_lagging_failover_candidate_needs_allow_data_loss_and_the_standby_ahead_is_rewound() {
    let lab = Lab::for_test(
        "a_lagging_failover_candidate_needs_allow_data_loss_and_the_standby_ahead_is_rewound",
        3,
    );
    apply_ok(&lab, &[]);
    edit_config(
        &lab,
        "max_lag_on_failover = \"16MB\"",
        "max_lag_on_failover = \"64kB\"",
    );
    // node2 stops receiving (its WAL receiver points nowhere); node3 goes on.
    lab.sql(
        2,
        "ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port=1 connect_timeout=1'",
    );
    lab.sql(2, "SELECT pg_reload_conf()");
    let h1 = lab.host(1);
    wait_for("node2 to stop streaming", Duration::from_secs(20), || {
        sender_of(&lab, 2) != format!("{h1}:streaming")
    });
    let before = lab.sql(1, "SELECT count(*) FROM lab_data");
    lab.sql(
        1,
        "INSERT INTO lab_data(note) SELECT 'only node3 has these' FROM generate_series(1, 3000)",
    );
    let end = lab.sql(1, "SELECT pg_current_wal_lsn()");
    wait_for(
        "node3 to receive everything",
        Duration::from_secs(20),
        || lab.sql(3, &format!("SELECT pg_last_wal_receive_lsn() >= '{end}'")) == "t",
    );
    lab.cut(1);
    set_primary(&lab, "node2");
    // --force alone: refused, nothing changed.
    let out = apply(&lab, &["--force"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("--allow-data-loss"), "{}", text(&out));
    assert!(text(&out).contains("nothing was changed"), "{}", text(&out));
    assert_eq!(lab.sql(2, "SELECT pg_is_in_recovery()"), "t");
    // With the loss accepted: node2 is promoted, node3 (ahead) is rewound.
    let out = text(&apply_ok(&lab, &["--force", "--allow-data-loss"]));
    assert_eq!(lab.sql(2, "SELECT pg_is_in_recovery()"), "f");
    assert!(out.contains("node3.timeline"), "{out}");
    assert!(out.contains("by pg_rewind"), "{out}");
    let h2 = lab.host(2);
    wait_for(
        "node3 to stream from node2",
        Duration::from_secs(20),
        || sender_of(&lab, 3) == format!("{h2}:streaming"),
    );
    assert_eq!(lab.sql(2, "SELECT count(*) FROM lab_data"), before);
    lab.sql(
        2,
        "INSERT INTO lab_data(note) VALUES ('after the failover')",
    );
    let want = lab.sql(2, "SELECT count(*) || ':' || max(id) FROM lab_data");
    wait_for(
        "node3's rows to equal node2's",
        Duration::from_secs(10),
        || lab.sql(3, "SELECT count(*) || ':' || max(id) FROM lab_data") == want,
    );
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn without_wal_log_hints_the_diverged_node_gets_a_base_backup_and_is_kept() {
    let lab = Lab::for_test(
        "without_wal_log_hints_the_diverged_node_gets_a_base_backup_and_is_kept",
        2,
    );
    let path = lab.config_path();
    let cfg = std::fs::read_to_string(&path)
        .expect("config")
        .replace("wal_log_hints = true", "wal_log_hints = false");
    std::fs::write(&path, cfg).expect("config");
    // Data checksums serve pg_rewind as wal_log_hints does; initdb turns
    // them on from PostgreSQL 18. Without both, only a base backup works.
    if lab.sql(1, "SHOW data_checksums") == "on" {
        lab.stop(1);
        let out = lab.exec(1, &["pg_checksums", "--disable", "-D", &lab.data_dir()]);
        assert!(out.status.success(), "{}", text(&out));
        lab.start(1);
    }
    apply_ok(&lab, &[]);
    lab.cut(1);
    set_primary(&lab, "node2");
    let out = apply(&lab, &["--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    lab.sql(
        1,
        "INSERT INTO lab_data(note) SELECT 'split brain' FROM generate_series(1, 500)",
    );
    lab.heal(1);
    let shown = text(&pgrepl(&lab, &["plan"]));
    assert!(shown.contains("node1.timeline"), "{shown}");
    assert!(shown.contains("base backup"), "{shown}");
    assert!(shown.contains(".pgrepl-old-"), "{shown}");
    apply_ok(&lab, &[]);
    let kept = kept_old_data_dirs(&lab, 1);
    assert!(
        kept.status.success(),
        "the diverged data directory is kept: {}",
        String::from_utf8_lossy(&kept.stderr)
    );
    let h2 = lab.host(2);
    wait_for(
        "node1 to stream from node2",
        Duration::from_secs(20),
        || sender_of(&lab, 1) == format!("{h2}:streaming"),
    );
    assert_eq!(
        lab.sql(
            1,
            "SELECT count(*) FROM lab_data WHERE note = 'split brain'"
        ),
        "0"
    );
    plan_is_empty(&lab);
}
