//! More of `pgrepl apply` on real nodes: saved plans (and stale ones),
//! cascading standbys, synchronous replication across a switchover,
//! `--target`, and the confirmation prompt without a terminal.

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::lab::Lab;
use crate::support::{
    apply_ok, edit_config, kept_old_data_dirs, node_fingerprint, pgrepl, pgrepl_bare,
    plan_is_empty, set_primary, text, wait_for,
};

fn plan_exit(lab: &Lab) -> (Option<i32>, String) {
    let out = pgrepl(lab, &["plan", "--detailed-exitcode"]);
    (out.status.code(), text(&out))
}

fn planned_addresses(lab: &Lab) -> Vec<String> {
    let out = pgrepl(lab, &["plan", "--json"]);
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    addresses(&v["changes"])
}

fn addresses(changes: &Value) -> Vec<String> {
    let mut a: Vec<String> = changes
        .as_array()
        .unwrap_or_else(|| panic!("no changes array in {changes}"))
        .iter()
        .filter_map(|c| c["address"].as_str().map(String::from))
        .collect();
    a.sort();
    a
}

/// The addresses of the steps apply reported done (`NODE: ADDRESS done in ...`).
fn done_addresses(out: &Output) -> Vec<String> {
    let mut a: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(" done in "))
        .filter_map(|l| {
            let (_, rest) = l.trim_start().split_once(": ")?;
            Some(rest.split_once(" done in ")?.0.to_string())
        })
        .collect();
    a.sort();
    a
}

fn data_dir_exists(lab: &Lab, i: usize) -> bool {
    lab.exec(i, &["test", "-e", &lab.data_dir()])
        .status
        .success()
}

/// ALTER SYSTEM + reload, and wait until new sessions see the value.
fn set_live(lab: &Lab, i: usize, name: &str, value: &str) {
    lab.sql(i, &format!("ALTER SYSTEM SET {name} = '{value}'"));
    lab.sql(i, "SELECT pg_reload_conf()");
    wait_for(
        &format!("node{i}: {name} = {value}"),
        Duration::from_secs(5),
        || lab.sql(i, &format!("SHOW {name}")) == value,
    );
}

fn sender_of(lab: &Lab, i: usize) -> String {
    lab.sql(
        i,
        "SELECT sender_host || ':' || status || ':' || coalesce(slot_name, '') FROM pg_stat_wal_receiver",
    )
}

fn slots_on(lab: &Lab, i: usize) -> String {
    lab.sql(
        i,
        "SELECT coalesce(string_agg(slot_name || ':' || active, ',' ORDER BY slot_name), '') FROM pg_replication_slots",
    )
}

fn sync_states_on(lab: &Lab, i: usize) -> String {
    lab.sql(
        i,
        "SELECT coalesce(string_agg(application_name || ':' || state || ':' || sync_state, ',' ORDER BY application_name), '') FROM pg_stat_replication",
    )
}

/// A commit on node `i` returns (PostgreSQL waits for a synchronous standby
/// to confirm it, and never gives up: `timeout` bounds the wait instead).
fn commit_confirmed(lab: &Lab, i: usize, note: &str) {
    let sql = format!("INSERT INTO lab_data(note) VALUES ('{note}')");
    let out = lab.exec(
        i,
        &[
            "timeout",
            "10",
            "psql",
            "-XAtq",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            "postgres",
            "-c",
            &sql,
        ],
    );
    assert!(
        out.status.success(),
        "node{i}: the commit did not return within 10 s (no synchronous standby confirmed it?): {:?} {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn status_json(lab: &Lab) -> (Option<i32>, Value) {
    let out = pgrepl(lab, &["status", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{}", text(&out)));
    (out.status.code(), v)
}

fn status_node<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == name))
        .unwrap_or_else(|| panic!("no node {name} in {v:#}"))
}

fn read_plan_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("plan file");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_saved_plan_runs_exactly_its_steps_and_converges() {
    let lab = Lab::for_test("a_saved_plan_runs_exactly_its_steps_and_converges", 2);
    let planfile = lab.dir().join("fresh.plan");
    let planfile_s = planfile.to_str().expect("utf-8 path");

    // plan --out saves what it prints; the saved plan holds no secret.
    let out = pgrepl(&lab, &["plan", "--out", planfile_s]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let saved = read_plan_file(&planfile);
    let planned = addresses(&saved["plan"]["changes"]);
    assert!(
        planned.iter().any(|a| a == "node2.standby")
            && planned.iter().any(|a| a == "node1.slot.node2")
            && planned.iter().any(|a| a == "role.replicator"),
        "{planned:?}"
    );
    let raw = std::fs::read_to_string(&planfile).expect("plan file");
    for (_, secret) in lab.env() {
        assert!(!raw.contains(&secret), "a password is in the plan file");
    }

    // apply PLANFILE, without -c and from a directory without pgrepl.toml.
    let out = pgrepl_bare(&lab, &["apply", planfile_s, "--auto-approve"])
        .output()
        .expect("apply");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("A fresh plan shows no changes"),
        "{}",
        text(&out)
    );
    plan_is_empty(&lab);
    assert_eq!(
        sender_of(&lab, 2),
        format!("{}:streaming:node2", lab.host(1))
    );
    assert_eq!(slots_on(&lab, 1), "node2:true");
    assert_eq!(
        done_addresses(&out),
        planned,
        "apply PLANFILE ran other steps than the saved ones:\n{}",
        text(&out)
    );
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_stale_saved_plan_is_refused_and_changes_nothing() {
    let lab = Lab::for_test("a_stale_saved_plan_is_refused_and_changes_nothing", 2);
    apply_ok(&lab, &[]);
    plan_is_empty(&lab);

    // A plan made after a drift, then a fact it relied on changes.
    set_live(&lab, 1, "wal_keep_size", "64MB");
    let stale = lab.dir().join("stale.plan");
    let stale_s = stale.to_str().expect("utf-8 path");
    let out = pgrepl(&lab, &["plan", "--out", stale_s]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        addresses(&read_plan_file(&stale)["plan"]["changes"]),
        ["node1.service", "node1.setting.wal_keep_size"],
        "{}",
        text(&out)
    );
    set_live(&lab, 1, "wal_keep_size", "32MB");
    let before: Vec<String> = (1..=2).map(|i| node_fingerprint(&lab, i)).collect();
    let out = pgrepl_bare(&lab, &["apply", stale_s, "--auto-approve"])
        .output()
        .expect("apply");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Saved plan is stale:"), "{}", text(&out));
    assert!(
        err.contains("node1.setting.wal_keep_size changed"),
        "the message names the fact that changed:\n{}",
        text(&out)
    );
    assert!(err.contains("nothing was changed"), "{}", text(&out));
    let after: Vec<String> = (1..=2).map(|i| node_fingerprint(&lab, i)).collect();
    assert_eq!(before, after, "a stale saved plan changed a node");
    assert_eq!(lab.sql(1, "SHOW wal_keep_size"), "32MB");

    // Back to the value the plan saw, but a new slot on node1: stale again.
    set_live(&lab, 1, "wal_keep_size", "64MB");
    lab.sql(
        1,
        "SELECT pg_create_physical_replication_slot('backup_tool')",
    );
    let before: Vec<String> = (1..=2).map(|i| node_fingerprint(&lab, i)).collect();
    let out = pgrepl_bare(&lab, &["apply", stale_s, "--auto-approve"])
        .output()
        .expect("apply");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Saved plan is stale:"), "{}", text(&out));
    assert!(
        err.contains("node1.slots changed") && err.contains("backup_tool"),
        "the message names the new slot:\n{}",
        text(&out)
    );
    assert!(
        !err.contains("wal_keep_size"),
        "wal_keep_size is as the plan saw it again:\n{}",
        text(&out)
    );
    let after: Vec<String> = (1..=2).map(|i| node_fingerprint(&lab, i)).collect();
    assert_eq!(before, after, "a stale saved plan changed a node");

    // Once every fact is as the plan saw it, the same plan file applies.
    lab.sql(1, "SELECT pg_drop_replication_slot('backup_tool')");
    let out = pgrepl_bare(&lab, &["apply", stale_s, "--auto-approve"])
        .output()
        .expect("apply");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(lab.sql(1, "SHOW wal_keep_size"), "256MB");
    plan_is_empty(&lab);

    // An edited cluster file makes a saved plan stale, even with nothing
    // else changed on the nodes.
    set_live(&lab, 2, "wal_keep_size", "64MB");
    let edited = lab.dir().join("edited.plan");
    let edited_s = edited.to_str().expect("utf-8 path");
    let out = pgrepl(&lab, &["plan", "--out", edited_s]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    edit_config(
        &lab,
        "wal_keep_size = \"256MB\"",
        "wal_keep_size = \"128MB\"",
    );
    let before: Vec<String> = (1..=2).map(|i| node_fingerprint(&lab, i)).collect();
    let out = pgrepl_bare(&lab, &["apply", edited_s, "--auto-approve"])
        .output()
        .expect("apply");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Saved plan is stale:"), "{}", text(&out));
    assert!(
        err.contains("the cluster file") && err.contains("changed"),
        "{}",
        text(&out)
    );
    let after: Vec<String> = (1..=2).map(|i| node_fingerprint(&lab, i)).collect();
    assert_eq!(
        before, after,
        "a plan for another cluster file changed a node"
    );
    assert_eq!(lab.sql(2, "SHOW wal_keep_size"), "64MB");
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_cascading_standby_streams_from_its_upstream_through_a_slot_there() {
    let lab = Lab::for_test(
        "a_cascading_standby_streams_from_its_upstream_through_a_slot_there",
        3,
    );
    let h3 = format!("host = \"{}\"\n", lab.host(3));
    edit_config(&lab, &h3, &format!("{h3}upstream = \"node2\"\n"));
    apply_ok(&lab, &[]);
    plan_is_empty(&lab);

    let (h1, h2) = (lab.host(1), lab.host(2));
    wait_for("node2 and node3 to stream", Duration::from_secs(10), || {
        sender_of(&lab, 2) == format!("{h1}:streaming:node2")
            && sender_of(&lab, 3) == format!("{h2}:streaming:node3")
    });
    // The slots: node2's on node1, node3's on node2, both in use.
    assert_eq!(slots_on(&lab, 1), "node2:true");
    assert_eq!(slots_on(&lab, 2), "node3:true");
    assert_eq!(slots_on(&lab, 3), "");
    assert_eq!(
        lab.sql(
            1,
            "SELECT string_agg(application_name, ',') FROM pg_stat_replication"
        ),
        "node2",
        "node1 serves node2 only"
    );
    assert!(
        lab.sql(3, "SHOW primary_conninfo")
            .contains(&format!("host={h2}")),
        "node3's primary_conninfo names node2"
    );

    // Rows written on node1 reach node3 through node2.
    lab.sql(1, "INSERT INTO lab_data(note) VALUES ('cascaded')");
    wait_for("the row on node3", Duration::from_secs(10), || {
        lab.sql(3, "SELECT count(*) FROM lab_data WHERE note = 'cascaded'") == "1"
    });

    let (code, st) = status_json(&lab);
    assert_eq!(code, Some(0), "{st:#}");
    let n3 = status_node(&st, "node3");
    assert_eq!(n3["upstream"], "node2", "{n3:#}");
    assert_eq!(n3["slot"], "node3", "{n3:#}");
    assert_eq!(n3["healthy"], true, "{n3:#}");
    assert_eq!(status_node(&st, "node2")["upstream"], "node1", "{st:#}");
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn synchronous_standby_names_follow_the_primary_across_a_switchover() {
    let lab = Lab::for_test(
        "synchronous_standby_names_follow_the_primary_across_a_switchover",
        3,
    );
    edit_config(
        &lab,
        "max_lag_on_failover = \"16MB\"\n",
        "max_lag_on_failover = \"16MB\"\nsynchronous = { mode = \"first\", count = 1, standbys = [\"node2\", \"node1\"] }\n",
    );
    apply_ok(&lab, &[]);
    plan_is_empty(&lab);
    assert_eq!(
        lab.sql(1, "SHOW synchronous_standby_names"),
        "FIRST 1 (\"node2\")"
    );
    for i in 2..=3 {
        assert_eq!(lab.sql(i, "SHOW synchronous_standby_names"), "", "node{i}");
    }
    wait_for("node2 sync, node3 async", Duration::from_secs(10), || {
        sync_states_on(&lab, 1) == "node2:streaming:sync,node3:streaming:async"
    });
    // A commit on node1 returns (node2 confirmed it) and reaches node2.
    commit_confirmed(&lab, 1, "synchronous");
    wait_for("the row on node2", Duration::from_secs(10), || {
        lab.sql(
            2,
            "SELECT count(*) FROM lab_data WHERE note = 'synchronous'",
        ) == "1"
    });
    let (_, st) = status_json(&lab);
    assert_eq!(status_node(&st, "node2")["sync_state"], "sync", "{st:#}");
    assert_eq!(status_node(&st, "node3")["sync_state"], "async", "{st:#}");

    // Drift: the whole text quoted as one name (what an earlier pgrepl wrote)
    // names a standby called `FIRST 1 ("node2")`, which matches no standby:
    // every commit on node1 would wait forever. The plan must see it.
    set_live(
        &lab,
        1,
        "synchronous_standby_names",
        "\"FIRST 1 (\"\"node2\"\")\"",
    );
    wait_for("node2 to be async", Duration::from_secs(10), || {
        sync_states_on(&lab, 1) == "node2:streaming:async,node3:streaming:async"
    });
    assert_eq!(
        planned_addresses(&lab),
        ["node1.service", "node1.setting.synchronous_standby_names"],
        "a synchronous_standby_names that names no standby is drift"
    );
    apply_ok(&lab, &[]);
    assert_eq!(
        lab.sql(1, "SHOW synchronous_standby_names"),
        "FIRST 1 (\"node2\")"
    );
    commit_confirmed(&lab, 1, "synchronous again");

    // Switch over to node2: the list moves to it, without node2 itself.
    set_primary(&lab, "node2");
    apply_ok(&lab, &[]);
    plan_is_empty(&lab);
    assert_eq!(lab.sql(2, "SELECT pg_is_in_recovery()"), "f");
    assert_eq!(
        lab.sql(2, "SHOW synchronous_standby_names"),
        "FIRST 1 (\"node1\")"
    );
    for i in [1, 3] {
        assert_eq!(lab.sql(i, "SHOW synchronous_standby_names"), "", "node{i}");
    }
    wait_for(
        "node1 sync, node3 async on node2",
        Duration::from_secs(10),
        || sync_states_on(&lab, 2) == "node1:streaming:sync,node3:streaming:async",
    );
    assert_eq!(sync_states_on(&lab, 1), "", "node1 serves nobody now");
    commit_confirmed(&lab, 2, "synchronous on node2");
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn target_builds_one_standby_and_what_it_needs_and_a_full_apply_the_rest() {
    let lab = Lab::for_test(
        "target_builds_one_standby_and_what_it_needs_and_a_full_apply_the_rest",
        3,
    );
    let node1_started = lab.sql(1, "SELECT pg_postmaster_start_time()");
    let out = apply_ok(&lab, &["--target", "node2"]);
    let done = done_addresses(&out);
    assert!(
        done.iter().all(|a| !a.starts_with("node3.")),
        "--target node2 acted on node3:\n{}",
        text(&out)
    );

    // node2 is built and streams, through its slot, with the roles and hba it needs.
    assert_eq!(
        sender_of(&lab, 2),
        format!("{}:streaming:node2", lab.host(1))
    );
    assert_eq!(slots_on(&lab, 1), "node2:true", "no slot for node3 yet");
    assert_eq!(
        lab.sql(
            1,
            "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolname IN ('replicator', 'pgrepl_rewind')"
        ),
        "pgrepl_rewind,replicator"
    );
    let hba = lab.exec(1, &["cat", &format!("{}/pg_hba.conf", lab.data_dir())]);
    assert!(
        String::from_utf8_lossy(&hba.stdout).contains("# BEGIN pgrepl managed"),
        "node1's hba block"
    );
    // node3 untouched: no data directory, nothing running.
    assert!(!data_dir_exists(&lab, 3), "node3's data directory exists");
    // node1's own settings were not targeted: node1 was not restarted.
    assert_eq!(
        lab.sql(1, "SELECT pg_postmaster_start_time()"),
        node1_started,
        "--target node2 restarted node1"
    );

    // The untargeted rest is still planned; a full apply does it.
    let planned = planned_addresses(&lab);
    assert!(
        planned.iter().any(|a| a == "node3.standby")
            && planned.iter().any(|a| a == "node1.slot.node3"),
        "{planned:?}"
    );
    assert!(
        planned.iter().all(|a| !a.starts_with("node2.")),
        "node2 is done: {planned:?}"
    );
    apply_ok(&lab, &[]);
    plan_is_empty(&lab);
    assert!(data_dir_exists(&lab, 3));
    // node1 restarted for wal_log_hints: node2 reconnects on its own.
    wait_for("both standbys to stream", Duration::from_secs(15), || {
        slots_on(&lab, 1) == "node2:true,node3:true"
    });
    assert_eq!(
        sender_of(&lab, 3),
        format!("{}:streaming:node3", lab.host(1))
    );
    assert_eq!(lab.sql(1, "SHOW wal_keep_size"), "256MB");
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn apply_without_a_terminal_or_auto_approve_refuses_and_changes_nothing() {
    let lab = Lab::for_test(
        "apply_without_a_terminal_or_auto_approve_refuses_and_changes_nothing",
        2,
    );
    let before = node_fingerprint(&lab, 1);
    // stdin /dev/null.
    let out = pgrepl(&lab, &["apply"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--auto-approve"),
        "{}",
        text(&out)
    );
    // A pipe saying yes is no terminal either: a script must say --auto-approve.
    let mut child = pgrepl_bare(&lab, &["apply"])
        .arg("-c")
        .arg(lab.config_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("apply");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"yes\n")
        .expect("write yes");
    let out = child.wait_with_output().expect("apply");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--auto-approve"),
        "{}",
        text(&out)
    );

    assert_eq!(
        before,
        node_fingerprint(&lab, 1),
        "a refused apply changed node1"
    );
    assert!(!data_dir_exists(&lab, 2), "a refused apply built node2");
    let (code, out) = plan_exit(&lab);
    assert_eq!(code, Some(2), "everything is still to do:\n{out}");
}

/// The Debian layout on one node: its configuration in /etc/postgresql (a
/// directory private to the node), its server run by pg_ctlcluster.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_debian_layout_node_is_built_and_restarted_through_pg_ctlcluster() {
    let lab = Lab::for_test(
        "a_debian_layout_node_is_built_and_restarted_through_pg_ctlcluster",
        3,
    );
    let major = lab.major().to_string();
    let conf_dir = format!("/etc/postgresql/{major}/main");
    let etc = lab.dir().join("node2/etc");
    let root_ok = |args: &[&str]| {
        let out = lab.exec_root(2, args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    };
    root_ok(&[
        "sh",
        "-c",
        "mkdir -p \"$1\" && mount --bind \"$1\" /etc/postgresql",
        "sh",
        etc.to_str().expect("utf-8"),
    ]);
    edit_config(
        &lab,
        &format!("[nodes.node2]\nhost = \"{}\"\n", lab.host(2)),
        &format!(
            "[nodes.node2]\nhost = \"{}\"\n\n[nodes.node2.postgres]\nconfig_dir = \"{conf_dir}\"\nservice = {{ pg_ctlcluster = \"{major}/main\" }}\n",
            lab.host(2)
        ),
    );
    // No configuration there yet: node2 is blocked with what to do, the
    // other nodes are planned.
    let out = pgrepl(&lab, &["plan"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("pg_createcluster"), "{}", text(&out));
    root_ok(&["pg_createcluster", &major, "main", "--port", "5432"]);
    // A cluster of its own: re-based by a base backup, started by pg_ctlcluster.
    let out = apply_ok(&lab, &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("node2.timeline"),
        "{}",
        text(&out)
    );
    let h1 = lab.host(1);
    wait_for(
        "node2 to stream from node1",
        Duration::from_secs(20),
        || {
            lab.sql(
                2,
                "SELECT sender_host || ':' || status FROM pg_stat_wal_receiver",
            ) == format!("{h1}:streaming")
        },
    );
    assert_eq!(
        lab.sql(2, "SHOW config_file"),
        format!("{conf_dir}/postgresql.conf")
    );
    let hba = lab.exec(2, &["cat", &format!("{conf_dir}/pg_hba.conf")]);
    assert!(
        String::from_utf8_lossy(&hba.stdout).contains("BEGIN pgrepl managed"),
        "{}",
        text(&hba)
    );
    let kept = kept_old_data_dirs(&lab, 2);
    assert!(
        kept.status.success(),
        "the initdb'd directory is kept: {}",
        text(&kept)
    );
    let status = lab.exec(2, &["pg_ctlcluster", &major, "main", "status"]);
    assert!(status.status.success(), "{}", text(&status));
    plan_is_empty(&lab);
    // A restart-needing setting on node2 alone goes through pg_ctlcluster.
    let started = lab.sql(2, "SELECT pg_postmaster_start_time()");
    let service = format!("service = {{ pg_ctlcluster = \"{major}/main\" }}\n");
    edit_config(
        &lab,
        &service,
        &format!("{service}\n[nodes.node2.settings]\nmax_connections = 150\n"),
    );
    let out = apply_ok(&lab, &[]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pg_ctlcluster"),
        "{}",
        text(&out)
    );
    assert_eq!(lab.sql(2, "SHOW max_connections"), "150");
    assert_ne!(lab.sql(2, "SELECT pg_postmaster_start_time()"), started);
    plan_is_empty(&lab);
}
