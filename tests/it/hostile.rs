//! Issue 14 on real nodes: files a node's configuration puts elsewhere,
//! and what a node says that pgrepl must not trust.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use pgrepl::desired::conninfo_value;
use pgrepl::node::scripts::AUTO_CONF_OFFLINE;
use pgrepl::quote::conf_value;

use serde_json::Value;

use std::time::Duration;

use crate::lab::Lab;
use crate::support::{
    apply_ok, apply_paused_in_a_cascade, hold_lock, pgrepl, plan_is_empty, text,
    the_cascade_stopped_after_node3s_recovery,
};

/// `sha256sum FILE` on node `i` (its first word).
fn sha_of(lab: &Lab, i: usize, path: &str) -> String {
    let out = lab.exec(i, &["sha256sum", path]);
    assert!(out.status.success(), "sha256sum {path}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// On main the plan read `DATA_DIR/pg_hba.conf` and apply wrote the
/// server's `hba_file`: with a custom `hba_file` pgrepl computed the block
/// from one file and overwrote the other. Both are the server's `hba_file`.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_custom_hba_file_is_the_one_read_and_written() {
    let lab = Lab::for_test("a_custom_hba_file_is_the_one_read_and_written", 2);
    apply_ok(&lab, &[]);
    let dd = lab.data_dir();
    let default = format!("{dd}/pg_hba.conf");
    let dir = format!(
        "{}/it's hba $x",
        dd.rsplit_once('/').map_or("/tmp", |p| p.0)
    );
    let custom = format!("{dir}/custom hba.conf");
    // The custom file: the default one without pgrepl's block; the server
    // told to read it (postgresql.conf, a restart).
    let out = lab.exec(
        1,
        &[
            "sh",
            "-c",
            "mkdir -p -- \"$1\" && sed '/^# BEGIN pgrepl managed/,/^# END pgrepl managed/d' \"$2\" > \"$3\" \
             && printf \"hba_file = '%s'\\n\" \"$4\" >> \"$5/postgresql.conf\"",
            "sh",
            &dir,
            &default,
            &custom,
            &custom.replace('\'', "''"),
            &dd,
        ],
    );
    assert!(out.status.success(), "{out:?}");
    lab.stop(1);
    lab.start(1);
    assert_eq!(lab.sql(1, "SHOW hba_file"), custom);
    let default_before = sha_of(&lab, 1, &default);

    let out = pgrepl(&lab, &["plan", "--json"]);
    let plan: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let hba: Vec<&Value> = plan["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("no changes in {plan:#}"))
        .iter()
        .filter(|c| c["address"].as_str().is_some_and(|a| a.ends_with(".hba")))
        .collect();
    assert_eq!(
        hba.len(),
        1,
        "only node1's custom file lacks the block: {plan:#}"
    );
    assert_eq!(hba[0]["address"], "node1.hba", "{plan:#}");
    assert_eq!(
        hba[0]["action"], "create",
        "the block is new in that file: {plan:#}"
    );
    assert_eq!(hba[0]["path"], custom.as_str(), "{plan:#}");

    apply_ok(&lab, &[]);
    let written = lab.exec(1, &["cat", &custom]);
    assert!(
        String::from_utf8_lossy(&written.stdout).contains("# BEGIN pgrepl managed"),
        "{written:?}"
    );
    assert_eq!(
        sha_of(&lab, 1, &default),
        default_before,
        "the default pg_hba.conf is untouched"
    );
    plan_is_empty(&lab);
}

/// Reads this machine's file, trimmed.
fn local(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// On main a holder whose `client=` named this host name and a pid not in
/// the local /proc was taken over: two CI runners both named `ubuntu` broke
/// each other's lock. The holder is now known by machine-id, boot id, pid
/// namespace and the pid's start time: another machine's holder under the
/// same host name waits for its lease; a dead one of this machine does not.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_lock_held_from_another_machine_with_the_same_host_name_is_not_taken_over() {
    let lab = Lab::for_test(
        "a_lock_held_from_another_machine_with_the_same_host_name_is_not_taken_over",
        1,
    );
    let host = local("/proc/sys/kernel/hostname");
    let boot = local("/proc/sys/kernel/random/boot_id");
    let ns = std::fs::read_link("/proc/self/ns/pid")
        .expect("pid ns")
        .to_string_lossy()
        .into_owned();
    let machine = local("/etc/machine-id");
    // A pid that no process has: the twin's pgrepl is not in our /proc.
    let dead = 2_147_483_646u32;
    let who = "holder=pgrepl apply by someone@twin since 2026-11-22T00:00:00Z\n";
    let twin = format!(
        "client={host}:{dead}\nmachine_id=0123456789abcdef0123456789abcdef\nboot_id={boot}\npid_ns={ns}\nclient_start=1\n{who}"
    );
    let mut holder = hold_lock(&lab, 1, &twin);
    let out = pgrepl(&lab, &["apply", "--auto-approve"]);
    let still_held = holder.try_wait().expect("try_wait").is_none();
    drop(holder.stdin.take());
    let _ = holder.wait();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is locked") && err.contains("someone@twin"),
        "{err}"
    );
    assert!(still_held, "the twin's holder was ended");

    // The same holder from this very machine (and boot, and pid namespace):
    // its pgrepl is gone, so the lock is taken over at once.
    let ours = format!(
        "client={host}:{dead}\nmachine_id={machine}\nboot_id={boot}\npid_ns={ns}\nclient_start=1\n{who}"
    );
    let mut holder = hold_lock(&lab, 1, &ours);
    let out = apply_ok(&lab, &[]);
    drop(holder.stdin.take());
    let _ = holder.wait();
    assert!(!text(&out).contains("is locked"), "{}", text(&out));
}

/// Runs `args` as the postgres user.
fn as_postgres(args: &[&str]) -> std::process::Output {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .expect("runuser")
}

/// postgresql.auto.conf written offline (a stopped standby's recovery) is
/// read back by PostgreSQL itself (`postgres -C`), for a data directory
/// whose parents hold `'`, `\`, spaces and `$`: the passfile path beside it
/// travels through the conninfo quoting and then the configuration file's.
/// No lab: the Debian 15 binaries on this machine, as user postgres.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn auto_conf_written_offline_is_read_back_by_postgresql() {
    crate::lab::fixture::assert_lab_tests_can_run(
        "auto_conf_written_offline_is_read_back_by_postgresql",
    );
    let bin = "/usr/lib/postgresql/15/bin";
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let parent = root.path().join("it's a \\back\\slash $HOME dir");
    std::fs::create_dir(&parent).expect("mkdir");
    let chown = Command::new("chown")
        .args(["postgres:postgres"])
        .arg(&parent)
        .status()
        .expect("chown");
    assert!(chown.success());
    let dd = parent.join("main");
    let dd_s = dd.to_str().expect("utf-8");
    let out = as_postgres(&[
        &format!("{bin}/initdb"),
        "-N",
        "-A",
        "trust",
        "-U",
        "postgres",
        "-D",
        dd_s,
    ]);
    assert!(out.status.success(), "initdb: {out:?}");

    let passfile = format!("{}/.pgrepl-c.pgpass", parent.display());
    let conninfo = format!(
        "host=198.18.1.11 port=5432 user=replicator passfile={} application_name=node2 sslmode=prefer",
        conninfo_value(&passfile)
    );
    let slot = "node2";
    for (name, value) in [
        ("primary_conninfo", conninfo.as_str()),
        ("primary_slot_name", slot),
    ] {
        let quoted = conf_value(value);
        let out = as_postgres(&AUTO_CONF_OFFLINE.argv(&[dd_s, "1", name, name, &quoted]));
        assert!(out.status.success(), "{name}: {out:?}");
    }
    assert!(dd.join("standby.signal").is_file());
    for (name, want) in [
        ("primary_conninfo", conninfo.as_str()),
        ("primary_slot_name", slot),
    ] {
        let out = as_postgres(&[&format!("{bin}/postgres"), "-C", name, "-D", dd_s]);
        assert!(out.status.success(), "postgres -C {name}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim_end_matches('\n'),
            want,
            "{name}"
        );
    }
    // Written twice: the earlier line is replaced, not repeated.
    let auto = std::fs::read_to_string(dd.join("postgresql.auto.conf")).expect("auto.conf");
    assert_eq!(auto.matches("primary_conninfo").count(), 1, "{auto}");
}

/// On main a lock whose lease stopped being renewed went unnoticed: apply
/// went on acting while another apply could take the cluster over. Now a
/// lost lease stops apply before its next step, with the node and why.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_lost_lock_lease_stops_apply_before_its_next_step() {
    let lab = Lab::for_test("a_lost_lock_lease_stops_apply_before_its_next_step", 3);
    let (child, pause) = apply_paused_in_a_cascade(&lab);
    // End node1's lock holder (by the pid its holder file records).
    let holder = format!(
        "/var/lib/postgresql/{}/.pgrepl-lab{}.lock.holder",
        lab.major(),
        lab.k()
    );
    let recorded = String::from_utf8_lossy(&lab.exec(1, &["cat", &holder]).stdout).into_owned();
    let pid = recorded
        .lines()
        .find_map(|l| l.strip_prefix("pid="))
        .unwrap_or_else(|| panic!("no pid in {recorded}"))
        .to_string();
    let killed = lab.exec(1, &["kill", &pid]);
    assert!(killed.status.success(), "{killed:?}");
    // The next renewal finds it gone (one every 2 s).
    std::thread::sleep(Duration::from_secs(4));
    std::fs::remove_file(&pause).expect("release the pause");
    let out = child.wait_with_output().expect("output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        err.contains("node1: the cluster lock's lease was lost")
            && err.contains("stopped before its next step"),
        "{err}"
    );
    the_cascade_stopped_after_node3s_recovery(&lab, &err);
}
