//! `pgrepl apply` on real nodes: converge, idempotence, drift repair,
//! faults, locking, hostile passwords (issue: apply).

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::lab::Lab;
use crate::support::{
    apply_ok_env, hold_lock, node_fingerprint, pgrepl_cmd, pgrepl_env as pgrepl, text,
};

fn plan_exit(lab: &Lab, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = pgrepl(lab, &["plan", "--detailed-exitcode"], env);
    (out.status.code(), text(&out))
}

fn planned_addresses(lab: &Lab, env: &[(&str, &str)]) -> Vec<String> {
    let out = pgrepl(lab, &["plan", "--json"], env);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    v["changes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["address"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn apply_converges_a_fresh_lab_and_a_second_apply_does_nothing() {
    let lab = Lab::for_test(
        "apply_converges_a_fresh_lab_and_a_second_apply_does_nothing",
        3,
    );
    let (code, out) = plan_exit(&lab, &[]);
    assert_eq!(code, Some(2), "{out}");
    let out = apply_ok_env(&lab, &[], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pg_basebackup:"),
        "base backup progress is shown:\n{stderr}"
    );
    assert!(
        stderr.contains(" done in "),
        "steps show their time:\n{stderr}"
    );

    // Both standbys stream from node1 under their own names, each through its own active slot.
    // The standby's receiver streams when apply returns; the primary's
    // walsender may still say `catchup` for a moment: give it time to settle.
    let want_streaming = format!(
        "node2:streaming:{},node3:streaming:{}",
        lab.host(2),
        lab.host(3)
    );
    let query = "SELECT string_agg(application_name || ':' || state || ':' || host(client_addr), ',' ORDER BY application_name) FROM pg_stat_replication";
    let settle = Instant::now() + Duration::from_secs(10);
    let mut streaming = lab.sql(1, query);
    while streaming != want_streaming && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(50));
        streaming = lab.sql(1, query);
    }
    assert_eq!(
        streaming,
        format!(
            "node2:streaming:{},node3:streaming:{}",
            lab.host(2),
            lab.host(3)
        )
    );
    let slots = lab.sql(
        1,
        "SELECT string_agg(slot_name || ':' || active, ',' ORDER BY slot_name) FROM pg_replication_slots",
    );
    assert_eq!(slots, "node2:true,node3:true");
    for i in 2..=3 {
        assert_eq!(
            lab.sql(i, "SELECT status FROM pg_stat_wal_receiver"),
            "streaming"
        );
        assert_eq!(
            lab.sql(i, "SELECT slot_name FROM pg_stat_wal_receiver"),
            lab.node_name(i)
        );
    }

    // Every GUC of the file is live on every node.
    for i in 1..=3 {
        let live = lab.sql(
            i,
            "SELECT string_agg(name || '=' || current_setting(name), ',' ORDER BY name) FROM pg_settings \
             WHERE name IN ('wal_level', 'max_wal_senders', 'max_replication_slots', 'wal_keep_size', 'hot_standby', 'wal_log_hints')",
        );
        assert_eq!(
            live,
            "hot_standby=on,max_replication_slots=10,max_wal_senders=10,wal_keep_size=256MB,wal_level=replica,wal_log_hints=on",
            "node{i}"
        );
        assert_eq!(
            lab.sql(i, "SELECT count(*) FROM pg_settings WHERE pending_restart"),
            "0",
            "node{i}"
        );
    }

    // The replication password is in no postgresql.auto.conf, no command line;
    // the passfile holding it is 0600.
    let password = lab
        .env()
        .into_iter()
        .find(|(k, _)| k == "PGREPL_REPLICATION_PASSWORD")
        .map(|(_, v)| v)
        .expect("lab password");
    for i in 1..=3 {
        let auto = lab.exec(
            i,
            &["cat", &format!("{}/postgresql.auto.conf", lab.data_dir())],
        );
        assert!(
            !String::from_utf8_lossy(&auto.stdout).contains(&password),
            "node{i} auto.conf"
        );
        let ps = lab.exec(i, &["ps", "-eo", "args"]);
        assert!(
            !String::from_utf8_lossy(&ps.stdout).contains(&password),
            "node{i} ps"
        );
        if i > 1 {
            let conninfo = lab.sql(i, "SHOW primary_conninfo");
            assert!(
                conninfo.contains(&format!("application_name={}", lab.node_name(i))),
                "{conninfo}"
            );
            assert!(conninfo.contains("passfile="), "{conninfo}");
            assert!(!conninfo.contains("password"), "{conninfo}");
            let pf = lab.exec(
                i,
                &[
                    "sh",
                    "-c",
                    "stat -c %a \"$1\"/../.pgrepl-*.pgpass",
                    "sh",
                    &lab.data_dir(),
                ],
            );
            assert_eq!(
                String::from_utf8_lossy(&pf.stdout).trim(),
                "600",
                "node{i} passfile mode"
            );
        }
    }

    // node1's data is on the standbys.
    lab.sql(1, "INSERT INTO lab_data(note) VALUES ('after apply')");
    let want = lab.sql(1, "SELECT count(*) || ':' || max(id) FROM lab_data");
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 2..=3 {
        loop {
            let got = lab.sql(i, "SELECT count(*) || ':' || max(id) FROM lab_data");
            if got == want {
                break;
            }
            assert!(Instant::now() < deadline, "node{i} has {got}, node1 {want}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // Idempotent: the next plan is empty, and a second apply touches nothing.
    let (code, out) = plan_exit(&lab, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("No changes. Cluster \"lab"), "{out}");
    let before: Vec<String> = (1..=3).map(|i| node_fingerprint(&lab, i)).collect();
    let out = apply_ok_env(&lab, &[], &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("No changes."),
        "{}",
        text(&out)
    );
    let after: Vec<String> = (1..=3).map(|i| node_fingerprint(&lab, i)).collect();
    assert_eq!(before, after, "a no-op apply changed a node");
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn apply_repairs_drift_and_a_changed_password() {
    let lab = Lab::for_test("apply_repairs_drift_and_a_changed_password", 3);
    apply_ok_env(&lab, &[], &[]);
    let dd = lab.data_dir();

    // Drift, each kind once: ALTER SYSTEM on a standby, a hand edit inside the
    // managed hba block, a dropped slot (its standby stopped meanwhile).
    lab.sql(2, "ALTER SYSTEM SET wal_keep_size = '128MB'");
    lab.sql(2, "SELECT pg_reload_conf()");
    let edit = lab.exec(
        3,
        &[
            "sh",
            "-c",
            "sed -i '/BEGIN pgrepl managed/a host all all 0.0.0.0/0 trust' \"$1/pg_hba.conf\"",
            "sh",
            &dd,
        ],
    );
    assert!(edit.status.success());
    lab.stop(3);
    lab.sql(1, "SELECT pg_drop_replication_slot('node3')");

    let mut planned = planned_addresses(&lab, &[]);
    planned.sort();
    planned.dedup();
    assert_eq!(
        planned,
        [
            "node1.slot.node3",
            "node2.service",
            "node2.setting.wal_keep_size",
            "node3.service",
        ],
        "the plan shows exactly the drift (node3's hba is checked once it runs)"
    );
    apply_ok_env(&lab, &[], &[]);
    let (code, out) = plan_exit(&lab, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(lab.sql(2, "SHOW wal_keep_size"), "256MB");
    let hba = lab.exec(3, &["cat", &format!("{dd}/pg_hba.conf")]);
    assert!(!String::from_utf8_lossy(&hba.stdout).contains("0.0.0.0/0 trust"));
    assert_eq!(
        lab.sql(
            1,
            "SELECT active FROM pg_replication_slots WHERE slot_name = 'node3'"
        ),
        "t"
    );

    // A changed replication password: the role and both passfiles follow.
    let new_pw = [("PGREPL_REPLICATION_PASSWORD", "rotated-Pa55:word")];
    let mut planned = planned_addresses(&lab, &new_pw);
    planned.sort();
    planned.dedup();
    assert_eq!(
        planned,
        [
            "node2.recovery",
            "node2.service",
            "node3.recovery",
            "node3.service",
            "role.replicator"
        ]
    );
    let out = pgrepl(&lab, &["plan"], &new_pw);
    let shown = text(&out);
    assert!(shown.contains("(sensitive)"), "{shown}");
    assert!(!shown.contains("rotated-Pa55"), "{shown}");
    apply_ok_env(&lab, &[], &new_pw);
    let (code, out) = plan_exit(&lab, &new_pw);
    assert_eq!(code, Some(0), "{out}");
    // The standbys reconnect with the new password.
    lab.sql(
        1,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_replication",
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if lab.sql(
            1,
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
        ) == "2"
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "standbys did not reconnect with the rotated password"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_rule_postgresql_rejects_leaves_the_old_pg_hba_conf() {
    let lab = Lab::for_test("a_rule_postgresql_rejects_leaves_the_old_pg_hba_conf", 1);
    // ldap needs options: the file is valid TOML and passes validate, PostgreSQL refuses it.
    let cfg = lab.config_path();
    let original = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(
        &cfg,
        format!(
            "{original}\n[[hba]]\ntype = \"host\"\ndatabase = \"all\"\nuser = \"app\"\naddress = \"10.9.9.0/24\"\nmethod = \"ldap\"\n"
        ),
    )
    .expect("write config");
    let hba_before = lab.exec(1, &["cat", &format!("{}/pg_hba.conf", lab.data_dir())]);
    let out = pgrepl(&lab, &["apply", "--auto-approve"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("node1.hba failed"), "{err}");
    assert!(err.contains("ldap"), "the error quotes PostgreSQL: {err}");
    assert!(err.contains("previous file is back"), "{err}");
    // PostgreSQL refuses the rule every time: fix it first (issue 12, case 9).
    assert!(
        err.contains("fix the cause on node1 (step node1.hba) first"),
        "{err}"
    );
    assert!(!err.contains("again to continue"), "{err}");
    let hba_after = lab.exec(1, &["cat", &format!("{}/pg_hba.conf", lab.data_dir())]);
    assert_eq!(
        hba_before.stdout, hba_after.stdout,
        "pg_hba.conf must be unchanged"
    );
    assert_eq!(
        lab.sql(
            1,
            "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL"
        ),
        "0"
    );
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_second_apply_fails_fast_while_the_lock_is_held() {
    let lab = Lab::for_test("a_second_apply_fails_fast_while_the_lock_is_held", 2);
    // Another apply holds the lock on node1 (held exactly as pgrepl holds it).
    let mut holder = hold_lock(
        &lab,
        1,
        "client=elsewhere:42\nholder=pgrepl apply by someone@elsewhere (pid 42) since 2026-11-22T00:00:00Z\n",
    );
    let before = node_fingerprint(&lab, 1);
    let started = Instant::now();
    let out = pgrepl(&lab, &["apply", "--auto-approve"], &[]);
    let took = started.elapsed();
    drop(holder.stdin.take());
    let _ = holder.wait();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is locked"), "{err}");
    assert!(
        err.contains("someone@elsewhere (pid 42) since 2026-11-22T00:00:00Z"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(
        before,
        node_fingerprint(&lab, 1),
        "a locked-out apply changed node1"
    );

    // Two real applies at once: never both acting. One converges; the other
    // either fails at the lock or finds nothing left to do.
    let a = pgrepl_cmd(&lab, &["apply", "--auto-approve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("a");
    let b = pgrepl_cmd(&lab, &["apply", "--auto-approve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("b");
    let (a, b) = (
        a.wait_with_output().expect("a"),
        b.wait_with_output().expect("b"),
    );
    let backups = [&a, &b]
        .iter()
        .map(|o| {
            String::from_utf8_lossy(&o.stderr)
                .matches("node2.standby done")
                .count()
        })
        .sum::<usize>();
    assert_eq!(
        backups,
        1,
        "exactly one base backup of node2:\n{}\n{}",
        text(&a),
        text(&b)
    );
    let ok = [&a, &b].iter().filter(|o| o.status.success()).count();
    assert!(ok >= 1, "{}\n{}", text(&a), text(&b));
    for o in [&a, &b] {
        if !o.status.success() {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("is locked"), "{}", text(o));
        }
    }
    let (code, out) = plan_exit(&lab, &[]);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_node_cut_off_mid_apply_gives_a_clear_error_and_a_rerun_finishes() {
    let lab = Lab::for_test(
        "a_node_cut_off_mid_apply_gives_a_clear_error_and_a_rerun_finishes",
        3,
    );
    let mut child = pgrepl_cmd(&lab, &["apply", "--auto-approve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("apply");
    // Cut node3 once apply is past planning and acting on node1.
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = Vec::new();
    let mut cut = false;
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("line");
        if !cut && line.contains("node1: + node1.slot.node2") {
            lab.cut(3);
            cut = true;
        }
        lines.push(line);
    }
    let status = child.wait().expect("wait");
    let stderr = lines.join("\n");
    assert!(cut, "apply never reached node1's slots:\n{stderr}");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("node3: step node3."),
        "the failing step is named:\n{stderr}"
    );
    assert!(stderr.contains("Done before the failure:"), "{stderr}");
    // A cut node is transient: the hint says to rerun once it answers.
    assert!(
        stderr.contains("once node3 answers, run `pgrepl apply` again"),
        "{stderr}"
    );
    assert!(
        stderr.contains("+ node1.slot.node2"),
        "what was done is listed:\n{stderr}"
    );
    lab.heal(3);
    apply_ok_env(&lab, &[], &[]);
    assert_eq!(
        lab.sql(3, "SELECT status FROM pg_stat_wal_receiver"),
        "streaming"
    );
    let leftovers = lab.exec(
        3,
        &[
            "sh",
            "-c",
            "ls -d \"$1\".pgrepl-* 2>/dev/null | wc -l",
            "sh",
            &lab.data_dir(),
        ],
    );
    // An interrupted backup would have been kept aside, never deleted; none started here.
    assert!(
        String::from_utf8_lossy(&leftovers.stdout)
            .trim()
            .parse::<u32>()
            .is_ok()
    );
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_hostile_password_works_end_to_end() {
    let lab = Lab::for_test("a_hostile_password_works_end_to_end", 2);
    let hostile = "it's a \"pass:word\" with \\ back\\slash $(touch /tmp/pgrepl-pwned) `id` end";
    let env = [("PGREPL_REPLICATION_PASSWORD", hostile)];
    apply_ok_env(&lab, &[], &env);
    assert_eq!(
        lab.sql(2, "SELECT status FROM pg_stat_wal_receiver"),
        "streaming"
    );
    // The stored verifier is one of this password (checked client-side).
    let stored = lab.sql(
        1,
        "SELECT rolpassword FROM pg_authid WHERE rolname = 'replicator'",
    );
    assert!(pgrepl::scram::verifies(&stored, hostile), "{stored}");
    assert!(!pgrepl::scram::verifies(&stored, "it's a"));
    let (code, out) = plan_exit(&lab, &env);
    assert_eq!(code, Some(0), "{out}");
    for i in 1..=2 {
        let pwned = lab.exec(i, &["sh", "-c", "ls /tmp/pgrepl-pwned 2>/dev/null | wc -l"]);
        assert_eq!(String::from_utf8_lossy(&pwned.stdout).trim(), "0");
    }
    assert!(!std::path::Path::new("/tmp/pgrepl-pwned").exists());
}
