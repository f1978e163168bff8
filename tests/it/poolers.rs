//! pgBouncer poolers on the lab (`lab.sh --poolers N`): converge points the
//! pools, drift is planned and repaired, switchover and failover re-point
//! every pooler, and the read-write pools are resumed after a switchover
//! that failed, timed out pausing, or was killed.

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::lab::Lab;
use crate::support::{
    apply_ok, apply_paused_at, pgrepl, plan_is_empty, set_primary, text, wait_for,
};

/// Each managed database's (host list, paused) as pooler `j`'s console shows it.
fn targets(lab: &Lab, j: usize) -> HashMap<String, (String, bool)> {
    lab.pooler_admin(j, "SHOW DATABASES")
        .into_iter()
        .filter(|r| r.len() > 3)
        .map(|r| {
            let paused = r[r.len() - 2] == "1";
            (r[0].clone(), (r[1].clone(), paused))
        })
        .collect()
}

fn points(lab: &Lab, j: usize, db: &str) -> String {
    targets(lab, j)
        .get(db)
        .map(|t| t.0.clone())
        .unwrap_or_default()
}

fn paused(lab: &Lab, j: usize, db: &str) -> bool {
    targets(lab, j).get(db).is_some_and(|t| t.1)
}

/// psql as lab_app through pooler `j`'s database `db`, from the host.
fn via_pooler(lab: &Lab, j: usize, db: &str, sql: &str) -> Command {
    let password = lab
        .env()
        .into_iter()
        .find(|(k, _)| k == "PGREPL_LAB_APP_PASSWORD")
        .map(|(_, v)| v)
        .expect("the lab's env has PGREPL_LAB_APP_PASSWORD");
    let mut c = Command::new("psql");
    c.arg("-XAtq")
        .arg(format!(
            "host={} port=6432 dbname={db} user=lab_app connect_timeout=10",
            lab.pooler_addr(j)
        ))
        .args(["-c", sql])
        .env("PGPASSWORD", password)
        .stdin(Stdio::null());
    c
}

fn ids_on(lab: &Lab, i: usize) -> std::collections::HashSet<i64> {
    lab.sql(i, "SELECT string_agg(id::text, ',') FROM lab_data")
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Writes through pooler 1 until `stop`: the committed ids and the failures.
fn writer(lab: &Lab, stop: Arc<AtomicBool>) -> (Vec<i64>, Vec<String>) {
    let mut cmd = via_pooler(
        lab,
        1,
        "lab",
        "INSERT INTO lab_data(note) VALUES ('pooled') RETURNING id",
    );
    let (mut committed, mut failed) = (Vec::new(), Vec::new());
    while !stop.load(Ordering::SeqCst) {
        let out = cmd.output().expect("run psql");
        let said = String::from_utf8_lossy(&out.stdout);
        match said
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i64>().ok())
        {
            Some(id) if out.status.success() => committed.push(id),
            _ => failed.push(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (committed, failed)
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn poolers_follow_converge_drift_switchover_and_failover() {
    let lab = Lab::for_test_with_poolers(
        "poolers_follow_converge_drift_switchover_and_failover",
        3,
        2,
    );
    let h = |i: usize| lab.host(i);
    apply_ok(&lab, &[]);
    for j in 1..=2 {
        assert_eq!(points(&lab, j, "lab"), h(1), "pgb{j}");
        assert_eq!(points(&lab, j, "lab_ro"), format!("{},{}", h(2), h(3)));
    }
    plan_is_empty(&lab);
    let status = pgrepl(&lab, &["status"]);
    assert_eq!(code(&status), Some(0), "{}", text(&status));
    assert!(text(&status).contains("lab_ro"), "{}", text(&status));
    let read = via_pooler(&lab, 1, "lab_ro", "SELECT pg_is_in_recovery()")
        .output()
        .expect("psql");
    assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), "t");

    // Drift: a hand-edited host inside the block on pgb1 (reloaded), a line
    // of the operator's below it, and a paused pool on pgb2.
    let ini = "/etc/pgbouncer/pgbouncer.ini";
    lab.pooler_exec(
        1,
        &[
            "sed",
            "-i",
            "-e",
            &format!("s/^lab = host={} /lab = host={} /", h(1), h(3)),
            "-e",
            "/; END pgrepl managed/a extra = host=127.0.0.1 port=5432 dbname=postgres",
            ini,
        ],
    );
    lab.pooler_admin(1, "RELOAD");
    assert_eq!(points(&lab, 1, "lab"), h(3));
    lab.pooler_admin(2, "PAUSE lab");
    assert!(paused(&lab, 2, "lab"));
    let plan = pgrepl(&lab, &["plan", "--detailed-exitcode"]);
    let shown = text(&plan);
    assert_eq!(code(&plan), Some(2), "{shown}");
    assert!(shown.contains("~ pooler.pgb1.databases"), "{shown}");
    assert!(shown.contains(&format!("-lab = host={}", h(3))), "{shown}");
    assert!(shown.contains("resume lab"), "{shown}");
    assert!(!shown.contains("pooler.pgb2.databases"), "{shown}");
    let status = pgrepl(&lab, &["status"]);
    assert_eq!(code(&status), Some(3), "{}", text(&status));
    assert!(text(&status).contains("lab is paused"), "{}", text(&status));
    apply_ok(&lab, &[]);
    assert_eq!(points(&lab, 1, "lab"), h(1));
    assert!(!paused(&lab, 2, "lab"));
    let kept = lab.pooler_exec(1, &["cat", ini]);
    assert!(
        String::from_utf8_lossy(&kept.stdout)
            .contains("; END pgrepl managed\nextra = host=127.0.0.1 port=5432 dbname=postgres\n"),
        "the operator's line stays: {}",
        String::from_utf8_lossy(&kept.stdout)
    );
    plan_is_empty(&lab);

    // Switchover under a writer going through pgb1: no failed transaction,
    // no committed row lost, every pooler re-pointed.
    let stop = Arc::new(AtomicBool::new(false));
    let (committed, failed) = std::thread::scope(|s| {
        let w = s.spawn(|| writer(&lab, stop.clone()));
        std::thread::sleep(Duration::from_millis(500));
        set_primary(&lab, "node2");
        let out = apply_ok(&lab, &[]);
        assert!(
            text(&out).contains("pooler(s) re-pointed"),
            "{}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        w.join().expect("writer")
    });
    assert!(
        failed.is_empty(),
        "through pgBouncer nothing fails: {failed:?}"
    );
    assert!(
        committed.len() >= 5,
        "the writer wrote: {}",
        committed.len()
    );
    let on_new = ids_on(&lab, 2);
    let lost: Vec<_> = committed.iter().filter(|i| !on_new.contains(i)).collect();
    assert!(lost.is_empty(), "committed rows lost: {lost:?}");
    for j in 1..=2 {
        assert_eq!(points(&lab, j, "lab"), h(2), "pgb{j}");
        assert_eq!(points(&lab, j, "lab_ro"), format!("{},{}", h(1), h(3)));
        assert!(!paused(&lab, j, "lab"));
    }
    plan_is_empty(&lab);

    // Failover: node2 cut, node1 promoted; the pools follow and reconnect.
    lab.cut(2);
    set_primary(&lab, "node1");
    let out = apply_ok(&lab, &["--force"]);
    assert!(text(&out).contains("reconnected lab"), "{}", text(&out));
    for j in 1..=2 {
        assert_eq!(points(&lab, j, "lab"), h(1), "pgb{j}");
        assert_eq!(points(&lab, j, "lab_ro"), h(3), "pgb{j}");
    }
    let wrote = via_pooler(
        &lab,
        2,
        "lab",
        "INSERT INTO lab_data(note) VALUES ('after')",
    )
    .output()
    .expect("psql");
    assert!(
        wrote.status.success(),
        "{}",
        String::from_utf8_lossy(&wrote.stderr)
    );
    lab.heal(2);
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn poolers_are_resumed_after_a_timed_out_a_failed_and_a_killed_switchover() {
    let lab = Lab::for_test_with_poolers(
        "poolers_are_resumed_after_a_timed_out_a_failed_and_a_killed_switchover",
        2,
        1,
    );
    let h = |i: usize| lab.host(i);
    apply_ok(&lab, &[]);
    set_primary(&lab, "node2");

    // A transaction longer than pause_timeout (5 s in the lab): the pool
    // cannot pause, so nothing of the primary is touched.
    let mut long = via_pooler(&lab, 1, "lab", "SELECT pg_sleep(8)")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql");
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let out = pgrepl(&lab, &["apply", "--auto-approve"]);
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("could not be paused within pause_timeout"),
        "{}",
        text(&out)
    );
    assert!(t0.elapsed() < Duration::from_secs(7), "{:?}", t0.elapsed());
    assert_eq!(lab.sql(1, "SELECT pg_is_in_recovery()"), "f");
    assert!(!paused(&lab, 1, "lab"), "resumed after the timeout");
    assert_eq!(points(&lab, 1, "lab"), h(1));
    assert!(
        long.wait().expect("psql").success(),
        "the long transaction finished"
    );

    // A failure after the pause (the candidate stopped): the old primary
    // runs again and the pool is resumed, still pointing at it.
    let (child, pause) = apply_paused_at(&lab, "switchover:after-pause");
    assert!(paused(&lab, 1, "lab"));
    lab.stop(2);
    std::fs::remove_file(&pause).expect("release the pause");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("the poolers were resumed"),
        "{}",
        text(&out)
    );
    assert!(!paused(&lab, 1, "lab"));
    assert_eq!(points(&lab, 1, "lab"), h(1));
    assert_eq!(lab.sql(1, "SELECT pg_is_in_recovery()"), "f");
    lab.start(2);
    wait_for("node2 streams again", Duration::from_secs(30), || {
        lab.try_sql(2, "SELECT status FROM pg_stat_wal_receiver")
            .stdout
            .starts_with(b"streaming")
    });

    // Killed while the pool is paused: a rerun finds it paused, finishes
    // the switchover and resumes it.
    let (mut child, pause) = apply_paused_at(&lab, "switchover:after-pause");
    child.kill().expect("kill pgrepl");
    let _ = child.wait();
    let _ = std::fs::remove_file(&pause);
    assert!(
        paused(&lab, 1, "lab"),
        "a killed apply leaves the pool paused"
    );
    let plan = pgrepl(&lab, &["plan"]);
    assert!(text(&plan).contains("resume lab"), "{}", text(&plan));
    apply_ok(&lab, &[]);
    assert!(!paused(&lab, 1, "lab"));
    assert_eq!(points(&lab, 1, "lab"), h(2));
    plan_is_empty(&lab);
}

/// A pooler reached as an administrator that sudoes to the user pgBouncer
/// runs as (`lab.sh --sudo --poolers 1`: its sshd lets only `pgadmin` in,
/// the cluster file says `exec = { sudo = "postgres" }` for it): the ini
/// is written and the console reached through sudo, so converge points the
/// pools and a switchover re-points and resumes them. Without its `exec`,
/// the same file cannot reach the console and says so for that pooler.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_pooler_reached_through_sudo_follows_converge_and_switchover() {
    let lab = Lab::for_sudo_test_with_poolers(
        "a_pooler_reached_through_sudo_follows_converge_and_switchover",
        2,
        1,
    );
    let file = std::fs::read_to_string(lab.config_path()).expect("cluster file");
    let entry = format!(
        "[poolers.pgb1]\nhost = \"{}\"\nexec = {{ sudo = \"postgres\" }}\n",
        lab.pooler_addr(1)
    );
    assert!(file.contains(&entry), "{file}");

    // The same file without the pooler's exec: pgadmin itself is no
    // pgBouncer admin, and the plan says so for pgb1 and changes nothing.
    let direct = lab.dir().join("direct.toml");
    std::fs::write(
        &direct,
        file.replace(
            &entry,
            &format!("[poolers.pgb1]\nhost = \"{}\"\n", lab.pooler_addr(1)),
        ),
    )
    .expect("write direct.toml");
    let refused =
        crate::support::pgrepl_bare(&lab, &["plan", "-c", direct.to_str().expect("utf-8 path")])
            .output()
            .expect("run pgrepl");
    let said = text(&refused);
    assert_eq!(code(&refused), Some(4), "an incomplete plan: {said}");
    assert!(said.contains("pgb1"), "{said}");
    assert!(said.contains("pgBouncer console"), "{said}");

    apply_ok(&lab, &[]);
    assert_eq!(points(&lab, 1, "lab"), lab.host(1));
    assert_eq!(points(&lab, 1, "lab_ro"), lab.host(2));
    plan_is_empty(&lab);
    let status = pgrepl(&lab, &["status"]);
    assert_eq!(code(&status), Some(0), "{}", text(&status));

    set_primary(&lab, "node2");
    apply_ok(&lab, &[]);
    assert_eq!(points(&lab, 1, "lab"), lab.host(2));
    assert!(!paused(&lab, 1, "lab"));
    plan_is_empty(&lab);

    // An unreachable pooler is an error for that pooler only. Its sshd
    // stopped, a connection opens and no SSH banner comes, so a dial waits
    // out the pooler's connect_timeout (10 s here; no SSH connection kept
    // from an earlier run). apply --force changes the nodes, says the
    // pooler is unreachable, and dials it once: not again for the fresh
    // plan after its steps (twice would be 20 s).
    let entry_end = format!(
        "[poolers.pgb1]\nhost = \"{}\"\nexec = {{ sudo = \"postgres\" }}\n",
        lab.pooler_addr(1)
    );
    crate::support::edit_config(
        &lab,
        &entry_end,
        &format!("{entry_end}\n[poolers.pgb1.ssh]\nconnect_timeout = \"10s\"\n"),
    );
    crate::support::edit_config(&lab, "[settings]\n", "[settings]\nwork_mem = \"8MB\"\n");
    let sshd = lab.pooler_sshd_pid(1);
    lab.signal(sshd, "STOP");
    let started = Instant::now();
    let forced = crate::support::pgrepl_env(
        &lab,
        &["apply", "--auto-approve", "--force"],
        &[("PGREPL_SSH_PERSIST", "0")],
    );
    let took = started.elapsed();
    lab.signal(sshd, "CONT");
    eprintln!("apply --force with pgb1 unreachable took {took:.1?}");
    let said = text(&forced);
    assert_eq!(code(&forced), Some(0), "{said}");
    assert!(
        said.contains("pgb1") && said.contains("unreachable"),
        "{said}"
    );
    assert!(said.contains("node1.setting.work_mem"), "{said}");
    assert_eq!(lab.sql(1, "SHOW work_mem"), "8MB");
    assert_eq!(lab.sql(2, "SHOW work_mem"), "8MB");
    assert!(
        took < Duration::from_secs(18),
        "apply took {took:?}: the unreachable pooler was dialled again\n{said}"
    );
    plan_is_empty(&lab);
}
