//! Fault injection on real nodes: pgrepl is stopped on purpose at each phase
//! boundary of a switchover, a failover and a re-base (the apply pause
//! points, `PGREPL_TEST_PAUSE_AT`), then killed with SIGKILL or the
//! candidate's network is cut. A plain rerun must converge to an empty plan.
//! All the while a watcher polls every node every 10 ms and two clients
//! insert through a multi-host conninfo (one opens a fresh connection per
//! insert, one keeps its connection): never two writable primaries, and no
//! acknowledged row lost in a switchover.

use std::collections::BTreeSet;
use std::process::{Child, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::lab::Lab;
use crate::support::{pgrepl, pgrepl_cmd, plan_is_empty, set_primary, text};

/// Lets the lab's host side (198.18.K.1), where the watcher and the clients
/// run, connect as postgres without a password: a rule in the cluster file,
/// so pgrepl keeps it in every node's managed block.
fn admit_the_host(lab: &Lab) {
    let path = lab.config_path();
    let mut cfg = std::fs::read_to_string(&path).expect("config");
    cfg.push_str(&format!(
        "\n[[hba]]\ntype = \"host\"\ndatabase = \"all\"\nuser = \"postgres\"\naddress = \"198.18.{}.1/32\"\nmethod = \"trust\"\n",
        lab.k()
    ));
    std::fs::write(&path, cfg).expect("write config");
}

fn conninfo(lab: &Lab, hosts: &[usize], extra: &str) -> String {
    let hosts: Vec<String> = hosts.iter().map(|i| lab.host(*i)).collect();
    format!(
        "host={} port=5432 user=postgres dbname=postgres connect_timeout=1 {extra}",
        hosts.join(",")
    )
}

/// What the watcher and the clients saw.
#[derive(Default)]
struct Seen {
    /// (ms since start, writable nodes) whenever two or more were writable at once.
    two_primaries: Vec<(u128, Vec<usize>)>,
    /// Rows whose INSERT was acknowledged, by client.
    acked_fresh: Vec<i64>,
    acked_persistent: Vec<i64>,
    sweeps: u64,
}

/// The watcher and the two clients, on their own runtime thread.
struct Observers {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Observers {
    /// `watched`: the nodes that count; an old primary cut off on purpose
    /// is writable until pgrepl re-bases it, which is not pgrepl's doing.
    fn start(lab: &Lab, watched: &[usize]) -> Observers {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let per_node: Vec<(usize, String)> = watched
            .iter()
            .map(|i| (*i, conninfo(lab, &[*i], "")))
            .collect();
        let all: Vec<usize> = (1..=lab.nodes()).collect();
        let multi = conninfo(lab, &all, "target_session_attrs=read-write");
        let (s, w) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let watcher = tokio::spawn(watch(per_node, s.clone(), w.clone()));
                let fresh = tokio::spawn(insert_loop(multi.clone(), true, s.clone(), w.clone()));
                let kept = tokio::spawn(insert_loop(multi, false, s.clone(), w.clone()));
                let _ = tokio::join!(watcher, fresh, kept);
            });
        });
        // Let every client connect once before the scenario starts.
        std::thread::sleep(Duration::from_millis(300));
        Observers {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("observers");
        }
        std::mem::take(&mut *self.seen.lock().expect("seen"))
    }
}

impl Drop for Observers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

async fn bounded<T, E>(ms: u64, f: impl std::future::Future<Output = Result<T, E>>) -> Option<T> {
    tokio::time::timeout(Duration::from_millis(ms), f)
        .await
        .ok()
        .and_then(Result::ok)
}

/// Every 10 ms, `SELECT pg_is_in_recovery()` on every node at once, over a
/// kept connection (opened again when it breaks).
async fn watch(nodes: Vec<(usize, String)>, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    let started = Instant::now();
    let mut clients: Vec<Option<tokio_postgres::Client>> = nodes.iter().map(|_| None).collect();
    while !stop.load(Ordering::SeqCst) {
        let polls = nodes
            .iter()
            .zip(clients.iter_mut())
            .map(|((i, ci), slot)| async move {
                if slot.is_none()
                    && let Some((c, conn)) =
                        bounded(300, tokio_postgres::connect(ci, tokio_postgres::NoTls)).await
                {
                    tokio::spawn(conn);
                    *slot = Some(c);
                }
                let c = slot.as_ref()?;
                match bounded(300, c.query_one("SELECT pg_is_in_recovery()", &[])).await {
                    Some(row) => (!row.get::<_, bool>(0)).then_some(*i),
                    None => {
                        *slot = None;
                        None
                    }
                }
            });
        let writable: Vec<usize> = futures_util::future::join_all(polls)
            .await
            .into_iter()
            .flatten()
            .collect();
        {
            let mut s = seen.lock().expect("seen");
            s.sweeps += 1;
            if writable.len() > 1 {
                s.two_primaries
                    .push((started.elapsed().as_millis(), writable));
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One INSERT every 20 ms through the multi-host conninfo, recording each
/// acknowledged id; `fresh` opens a new connection for every insert.
async fn insert_loop(conninfo: String, fresh: bool, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    let note = if fresh { "fresh" } else { "persistent" };
    let mut kept: Option<tokio_postgres::Client> = None;
    while !stop.load(Ordering::SeqCst) {
        if kept.is_none()
            && let Some((c, conn)) = bounded(
                1500,
                tokio_postgres::connect(&conninfo, tokio_postgres::NoTls),
            )
            .await
        {
            tokio::spawn(conn);
            kept = Some(c);
        }
        if let Some(c) = &kept {
            let row = bounded(
                2000,
                c.query_one(
                    "INSERT INTO lab_data(note) VALUES ($1) RETURNING id::int8",
                    &[&note],
                ),
            )
            .await;
            match row {
                Some(r) => {
                    let id: i64 = r.get(0);
                    let mut s = seen.lock().expect("seen");
                    if fresh {
                        s.acked_fresh.push(id);
                    } else {
                        s.acked_persistent.push(id);
                    }
                    drop(s);
                }
                None => kept = None,
            }
        }
        if fresh {
            kept = None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The ids in lab_data on node `i`.
fn ids_on(lab: &Lab, i: usize) -> BTreeSet<i64> {
    lab.sql(i, "SELECT string_agg(id::text, ',') FROM lab_data")
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect()
}

use crate::support::apply_ok;

/// What to do at the pause point.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// SIGKILL pgrepl (a lost CI runner, a closed laptop).
    Kill,
    /// Cut node i's network, let pgrepl go on, heal once it has exited
    /// (`interrupted_switchover` cuts the candidate, whatever i says).
    Cut(usize),
}

/// Runs `apply ARGS` paused at `point`, hits it with `fault`, and returns
/// what the interrupted apply printed. Fails when the point is never reached.
fn interrupted_apply(lab: &Lab, args: &[&str], point: &str, fault: Fault) -> String {
    let pause = lab.dir().join("pause-point");
    let _ = std::fs::remove_file(&pause);
    let mut all = vec!["apply", "--auto-approve"];
    all.extend_from_slice(args);
    let mut cmd = pgrepl_cmd(lab, &all);
    cmd.env("PGREPL_TEST_PAUSE_AT", point)
        .env("PGREPL_TEST_PAUSE_FILE", &pause)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child: Child = cmd.spawn().expect("spawn pgrepl");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !pause.exists() {
        if let Ok(Some(_)) = child.try_wait() {
            let out = child.wait_with_output().expect("output");
            panic!("apply never reached {point}:\n{}", text(&out));
        }
        assert!(
            Instant::now() < deadline,
            "apply did not reach {point} within 90s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    match fault {
        Fault::Kill => {
            child.kill().expect("SIGKILL pgrepl");
            let out = child.wait_with_output().expect("output");
            let _ = std::fs::remove_file(&pause);
            format!("killed at {point}\n{}", text(&out))
        }
        Fault::Cut(i) => {
            lab.cut(i);
            std::fs::remove_file(&pause).expect("release the pause");
            let out = child.wait_with_output().expect("output");
            lab.heal(i);
            format!("node{i} cut at {point}\n{}", text(&out))
        }
    }
}

/// After a fault: one plain apply converges (with `--force` only when the
/// plan says a failover needs it), and the next plan is empty.
#[track_caller]
fn rerun_converges(lab: &Lab, force_allowed: bool, what: &str) -> String {
    let plan = pgrepl(lab, &["plan"]);
    let shown = text(&plan);
    let needs_force = shown.contains("needs --force");
    assert!(
        force_allowed || !needs_force,
        "{what}: the rerun's plan must not need --force:\n{shown}"
    );
    let args: &[&str] = if needs_force { &["--force"] } else { &[] };
    let may_follow = crate::support::known_after_apply(lab, args, &[]);
    let out = pgrepl(lab, &[&["apply", "--auto-approve"], args].concat());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: the rerun must converge\nplan:\n{shown}\napply:\n{}",
        text(&out)
    );
    plan_is_empty(lab);
    let extra = crate::support::unplanned_steps(&out, &may_follow);
    assert!(
        extra.is_empty(),
        "{what}: the rerun ran steps its plan did not show: {}\n{}",
        extra.join(", "),
        text(&out)
    );
    format!("{shown}\n{}", text(&out))
}

fn assert_one_primary(seen: &Seen, what: &str) {
    eprintln!(
        "watcher: {} sweeps, {} times two writable; clients: {} + {} acknowledged inserts",
        seen.sweeps,
        seen.two_primaries.len(),
        seen.acked_fresh.len(),
        seen.acked_persistent.len()
    );
    assert!(
        seen.sweeps > 50,
        "{what}: the watcher polled only {} times",
        seen.sweeps
    );
    assert!(
        seen.two_primaries.is_empty(),
        "{what}: two writable primaries at once (ms since start, nodes): {:?}",
        seen.two_primaries
    );
}

fn assert_nothing_lost(lab: &Lab, primary: usize, seen: &Seen, what: &str) {
    assert!(
        seen.acked_fresh.len() > 5 && seen.acked_persistent.len() > 5,
        "{what}: the clients wrote too little ({} fresh, {} persistent)",
        seen.acked_fresh.len(),
        seen.acked_persistent.len()
    );
    let there = ids_on(lab, primary);
    let lost: Vec<&i64> = seen
        .acked_fresh
        .iter()
        .chain(&seen.acked_persistent)
        .filter(|id| !there.contains(id))
        .collect();
    assert!(lost.is_empty(), "{what}: acknowledged rows lost: {lost:?}");
}

fn is_primary(lab: &Lab, i: usize) -> bool {
    lab.sql(i, "SELECT pg_is_in_recovery()") == "f"
}

/// A converged 3-node lab whose host side may connect as postgres.
fn converged_lab(test: &str) -> Lab {
    converged(Lab::for_test(test, 3))
}

/// The same, PostgreSQL in containers (`lab.sh --runtime docker`).
fn converged_docker_lab(test: &str) -> Lab {
    converged(Lab::for_docker_test(test, 3))
}

fn converged(lab: Lab) -> Lab {
    admit_the_host(&lab);
    apply_ok(&lab, &[]);
    lab
}

/// One switchover from `primary` to the other of nodes 1 and 2, hit by
/// `fault` at `point`, then a plain rerun; watched throughout. Returns the
/// new primary.
#[track_caller]
fn interrupted_switchover(lab: &Lab, primary: usize, point: &str, fault: Fault) -> usize {
    let to = if primary == 1 { 2 } else { 1 };
    let fault = match fault {
        Fault::Cut(_) => Fault::Cut(to),
        Fault::Kill => Fault::Kill,
    };
    let obs = Observers::start(lab, &[1, 2, 3]);
    set_primary(lab, &lab.node_name(to));
    let first = interrupted_apply(lab, &[], point, fault);
    eprintln!("--- {point}: {fault:?}\n{first}");
    let before_promotion = !matches!(
        point,
        "switchover:after-promote" | "switchover:before-old-start"
    );
    if matches!(fault, Fault::Cut(_)) && before_promotion {
        // Any failure before the promotion: the old primary runs again.
        assert!(first.contains("started again as the primary"), "{first}");
        assert!(is_primary(lab, primary), "{first}");
        // Healed: the plan waits until the candidate streams again (one
        // between WAL receivers cannot be judged).
        let hp = lab.host(primary);
        crate::support::wait_for(
            "the healed candidate to stream",
            Duration::from_secs(30),
            || {
                let out = lab.try_sql(
                    to,
                    "SELECT sender_host || ':' || status FROM pg_stat_wal_receiver",
                );
                String::from_utf8_lossy(&out.stdout).trim() == format!("{hp}:streaming")
            },
        );
    }
    let rerun = rerun_converges(lab, false, point);
    std::thread::sleep(Duration::from_millis(200));
    let seen = obs.finish();
    let what = format!("{point}\n{first}\n--- rerun\n{rerun}");
    assert_one_primary(&seen, &what);
    assert!(is_primary(lab, to), "{what}");
    assert!(!is_primary(lab, primary), "{what}");
    assert_nothing_lost(lab, to, &seen, &what);
    to
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_switchover_killed_at_every_boundary_finishes_on_rerun_with_one_primary_and_no_lost_row() {
    switchover_killed_at_every_boundary(converged_lab("switchover_killed_at_every_boundary"));
}

/// The same with PostgreSQL in containers: the old primary's container
/// stopped (`docker stop`), its settings written in a one-off container,
/// started again (`docker start`), killed between any two of those.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_docker_switchover_killed_at_every_boundary_finishes_on_rerun_with_one_primary_and_no_lost_row()
{
    switchover_killed_at_every_boundary(converged_docker_lab(
        "docker_switchover_killed_at_every_boundary",
    ));
}

fn switchover_killed_at_every_boundary(lab: Lab) {
    let mut primary = 1;
    for point in [
        "switchover:before-shutdown",
        "switchover:after-shutdown",
        "switchover:before-promote",
        "switchover:after-promote",
        "switchover:before-old-start",
    ] {
        primary = interrupted_switchover(&lab, primary, point, Fault::Kill);
    }
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_switchover_whose_candidate_is_cut_at_each_boundary_keeps_one_primary_and_converges() {
    let lab = converged_lab("switchover_candidate_cut_at_each_boundary");
    let mut primary = 1;
    for point in [
        "switchover:after-shutdown",
        "switchover:before-promote",
        "switchover:after-promote",
    ] {
        primary = interrupted_switchover(&lab, primary, point, Fault::Cut(0));
    }
}

/// The two slow boundaries of a cut candidate: before the shutdown (the old
/// primary's walsender waits out wal_sender_timeout for the cut standby), and
/// before the old primary's start (it starts as a standby of a node it
/// cannot reach). A test of their own, so they run beside the others.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_switchover_whose_candidate_is_cut_before_the_shutdown_or_before_the_old_primarys_start() {
    let lab = converged_lab("switchover_candidate_cut_slow_boundaries");
    let mut primary = 1;
    for point in ["switchover:before-shutdown", "switchover:before-old-start"] {
        primary = interrupted_switchover(&lab, primary, point, Fault::Cut(0));
    }
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_failover_and_the_old_primarys_re_base_killed_at_every_boundary_converge_on_rerun() {
    failover_and_rebase_killed_at_every_boundary(converged_lab(
        "failover_and_rebase_killed_at_every_boundary",
    ));
}

/// The same with PostgreSQL in containers: pg_rewind and pg_basebackup
/// killed in their one-off containers, which the rerun removes.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_docker_failover_and_the_old_primarys_re_base_killed_at_every_boundary_converge_on_rerun() {
    failover_and_rebase_killed_at_every_boundary(converged_docker_lab(
        "docker_failover_and_rebase_killed_at_every_boundary",
    ));
}

fn failover_and_rebase_killed_at_every_boundary(lab: Lab) {
    // node1 keeps running, cut off: writable until pgrepl re-bases it,
    // which is not pgrepl's doing; every node pgrepl acts on is watched.
    let obs = Observers::start(&lab, &[2, 3]);
    lab.cut(1);
    set_primary(&lab, "node2");
    let first = interrupted_apply(&lab, &["--force"], "failover:before-promote", Fault::Kill);
    assert!(
        !is_primary(&lab, 2),
        "killed before the promotion:\n{first}"
    );
    // Without --force the rerun is refused and changes nothing.
    let refused = pgrepl(&lab, &["apply", "--auto-approve"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(!is_primary(&lab, 2));
    let second = interrupted_apply(&lab, &["--force"], "failover:after-promote", Fault::Kill);
    assert!(is_primary(&lab, 2), "{second}");
    // node3 re-pointed at node2, killed before the reload that makes it
    // live; or, when the cut left node3 a few bytes ahead of node2 (a
    // race of the write clients), re-based from node2, killed after its stop.
    let plan = text(&pgrepl(&lab, &["plan"]));
    let point = if plan.contains("node3.timeline") {
        "rebase:after-stop"
    } else {
        assert!(plan.contains("~ node3.recovery"), "{plan}");
        "recovery:before-reload"
    };
    let repoint = interrupted_apply(&lab, &["--force"], point, Fault::Kill);
    let out = apply_ok(&lab, &["--force"]);
    let h2 = lab.host(2);
    crate::support::wait_for("node3 to follow node2", Duration::from_secs(20), || {
        crate::support::sender_of(&lab, 3) == format!("{h2}:streaming")
    });
    // The old primary writes on, cut off; then comes back and is re-based:
    // killed during pg_rewind, the rerun keeps that directory aside and
    // copies afresh; killed during that base backup, the next one removes
    // pgrepl's own partial copy.
    lab.sql(
        1,
        "INSERT INTO lab_data(note) SELECT 'split brain' FROM generate_series(1, 500)",
    );
    lab.heal(1);
    let third = interrupted_apply(&lab, &[], "rebase:during-rewind", Fault::Kill);
    let plan = text(&pgrepl(&lab, &["plan"]));
    assert!(
        plan.contains("pg_rewind into it was interrupted"),
        "{third}\n{plan}"
    );
    assert!(!plan.contains("pg_rewind from"), "{plan}");
    let fourth = interrupted_apply(&lab, &[], "rebase:during-base-backup", Fault::Kill);
    // The plan shows pgrepl's partial copy, with its size, and removes it.
    let plan = text(&pgrepl(&lab, &["plan"]));
    assert!(
        plan.contains("removes the interrupted copy"),
        "{fourth}\n{plan}"
    );
    assert!(plan.contains(".pgrepl-building ("), "{plan}");
    let rerun = rerun_converges(&lab, false, "re-base");
    let seen = obs.finish();
    let what = format!(
        "{first}\n{second}\n{repoint}\n{}\n{third}\n{fourth}\n{rerun}",
        text(&out)
    );
    assert_one_primary(&seen, &what);
    assert!(!is_primary(&lab, 1), "{what}");
    // Nothing deleted: the interrupted rewind's directory is kept aside,
    // the partial copy is gone.
    let kept = lab.exec(
        1,
        &[
            "sh",
            "-c",
            "ls -d \"$1\".pgrepl-old-* | wc -l; ls -d \"$1\".pgrepl-building 2>/dev/null | wc -l",
            "sh",
            &lab.data_dir(),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&kept.stdout)
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1", "0"],
        "{what}"
    );
}

/// A container killed outright (`docker kill`: SIGKILL to the postmaster,
/// its PID 1) leaves postmaster.pid behind, naming PID 1. In a one-off
/// container PID 1 is alive (the one-off's own command): pgrepl must not
/// take that for a running server, and must re-base the crashed old
/// primary without ever starting it read-write.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_killed_old_primary_container_is_re_based_and_never_started_read_write() {
    let lab = converged_docker_lab("killed_old_primary_container_is_re_based");
    lab.cut(1);
    set_primary(&lab, "node2");
    apply_ok(&lab, &["--force"]);
    lab.sql(
        1,
        "INSERT INTO lab_data(note) SELECT 'cut off' FROM generate_series(1, 200)",
    );
    let out = lab.docker(1, &["kill", &lab.container(1)]);
    assert!(out.status.success(), "{}", text(&out));
    let pid = lab.exec(
        1,
        &[
            "sh",
            "-c",
            "head -1 \"$1/postmaster.pid\"",
            "sh",
            &lab.data_dir(),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&pid.stdout).trim(),
        "1",
        "{}",
        text(&pid)
    );
    let obs = Observers::start(&lab, &[1, 2, 3]);
    lab.heal(1);
    let plan = text(&pgrepl(&lab, &["plan"]));
    assert!(plan.contains("node1.timeline"), "{plan}");
    assert!(plan.contains("in production"), "{plan}");
    assert!(!plan.contains("node1.service"), "{plan}");
    let out = apply_ok(&lab, &[]);
    plan_is_empty(&lab);
    let seen = obs.finish();
    assert_one_primary(&seen, &text(&out));
    assert!(!is_primary(&lab, 1), "{}", text(&out));
    assert_eq!(
        lab.sql(1, "SELECT count(*) FROM lab_data WHERE note = 'cut off'"),
        "0"
    );
}

/// Issue cases, each on real nodes.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_crashed_old_primary_is_re_based_and_never_started_read_write() {
    let lab = converged_lab("crashed_old_primary_is_re_based");
    lab.cut(1);
    set_primary(&lab, "node2");
    apply_ok(&lab, &["--force"]);
    // Cut off, node1 writes on, then its postmaster dies as in a power cut
    // (SIGQUIT: pg_control stays `in production`).
    lab.sql(
        1,
        "INSERT INTO lab_data(note) SELECT 'cut off' FROM generate_series(1, 200)",
    );
    let out = lab.exec(
        1,
        &[
            "sh",
            "-c",
            "kill -QUIT $(head -1 \"$1/postmaster.pid\"); while [ -e \"$1/postmaster.pid\" ] && kill -0 $(head -1 \"$1/postmaster.pid\") 2>/dev/null; do sleep 0.05; done",
            "sh",
            &lab.data_dir(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    // From here on every node counts: pgrepl must not start node1 read-write.
    let obs = Observers::start(&lab, &[1, 2, 3]);
    lab.heal(1);
    let plan = text(&pgrepl(&lab, &["plan"]));
    assert!(plan.contains("node1.timeline"), "{plan}");
    assert!(plan.contains("in production"), "{plan}");
    assert!(!plan.contains("node1.service"), "{plan}");
    let out = apply_ok(&lab, &[]);
    plan_is_empty(&lab);
    let seen = obs.finish();
    assert_one_primary(&seen, &text(&out));
    assert!(!is_primary(&lab, 1));
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_failover_to_an_unreachable_candidate_is_refused_even_with_force() {
    let lab = converged_lab("failover_to_unreachable_candidate_refused");
    lab.cut(1);
    lab.cut(2);
    set_primary(&lab, "node2");
    let before = crate::support::node_fingerprint(&lab, 3);
    let plan = pgrepl(&lab, &["plan"]);
    assert!(
        text(&plan).contains("the most advanced reachable standby is node3"),
        "{}",
        text(&plan)
    );
    let out = pgrepl(&lab, &["apply", "--auto-approve", "--force"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("--force does not override"),
        "{}",
        text(&out)
    );
    assert_eq!(crate::support::node_fingerprint(&lab, 3), before);
    lab.heal(1);
    lab.heal(2);
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_stopped_standby_with_a_drifted_setting_is_repaired_before_its_start() {
    let lab = converged_lab("stopped_standby_drift_repaired_offline");
    // Too low for a standby of a primary with 10: it would never start.
    lab.sql(3, "ALTER SYSTEM SET max_wal_senders = 7");
    lab.stop(3);
    let plan = text(&pgrepl(&lab, &["plan"]));
    let set = plan.find("node3.setting.max_wal_senders");
    let start = plan.find("node3.service");
    assert!(set.is_some() && set < start, "{plan}");
    apply_ok(&lab, &[]);
    plan_is_empty(&lab);
    assert_eq!(lab.sql(3, "SHOW max_wal_senders"), "10");
    assert_eq!(lab.sql(3, "SELECT pg_is_in_recovery()"), "t");
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn synchronous_standby_names_are_set_on_the_candidate_before_its_promotion() {
    let lab = Lab::for_test("sync_names_before_promotion", 3);
    let path = lab.config_path();
    let cfg = std::fs::read_to_string(&path).expect("config").replace(
        "max_lag_on_failover = \"16MB\"",
        "max_lag_on_failover = \"16MB\"\nsynchronous = { mode = \"first\", count = 1, standbys = [\"node1\", \"node3\"] }",
    );
    std::fs::write(&path, cfg).expect("write config");
    apply_ok(&lab, &[]);
    set_primary(&lab, "node2");
    // The plan shows everything apply will run: no step after the role
    // change is left for apply to find out (slots, synchronous_standby_names).
    let planned = pgrepl(&lab, &["plan", "--json"]);
    let planned: serde_json::Value = serde_json::from_slice(&planned.stdout).expect("plan json");
    let planned = planned["changes"].as_array().map_or(0, Vec::len);
    // Paused right before pg_promote: the standby already enforces nothing,
    // but the setting is live, so its first commit as primary waits for
    // node1 or node3.
    let pause = lab.dir().join("pause-point");
    let mut cmd = pgrepl_cmd(&lab, &["apply", "--auto-approve"]);
    cmd.env("PGREPL_TEST_PAUSE_AT", "switchover:before-promote")
        .env("PGREPL_TEST_PAUSE_FILE", &pause)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("spawn pgrepl");
    crate::support::wait_for(
        "the pause before the promotion",
        Duration::from_secs(60),
        || pause.exists(),
    );
    let names = lab.sql(2, "SHOW synchronous_standby_names");
    std::fs::remove_file(&pause).expect("release the pause");
    let out = child.wait_with_output().expect("apply");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(names, "FIRST 1 (\"node1\", \"node3\")");
    let done = String::from_utf8_lossy(&out.stdout);
    assert!(
        done.contains(&format!("Apply complete: {planned} steps in")),
        "the plan showed {planned} steps:\n{}",
        text(&out)
    );
    plan_is_empty(&lab);
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_switchover_to_a_cascaded_standby_is_done() {
    let lab = Lab::for_test("switchover_to_a_cascaded_standby", 3);
    crate::support::edit_config(
        &lab,
        "[nodes.node3]\n",
        "[nodes.node3]\nupstream = \"node2\"\n",
    );
    apply_ok(&lab, &[]);
    let h2 = lab.host(2);
    crate::support::wait_for(
        "node3 to stream from node2",
        Duration::from_secs(20),
        || crate::support::sender_of(&lab, 3) == format!("{h2}:streaming"),
    );
    crate::support::edit_config(&lab, "upstream = \"node2\"\n", "");
    set_primary(&lab, "node3");
    let out = apply_ok(&lab, &[]);
    assert!(is_primary(&lab, 3), "{}", text(&out));
    assert!(!is_primary(&lab, 1), "{}", text(&out));
    plan_is_empty(&lab);
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_failover_with_its_candidate_cut_before_the_promotion_promotes_nothing_and_converges_later() {
    let lab = converged_lab("failover_candidate_cut_before_promotion");
    let obs = Observers::start(&lab, &[2, 3]);
    lab.cut(1);
    set_primary(&lab, "node2");
    let first = interrupted_apply(&lab, &["--force"], "failover:before-promote", Fault::Cut(2));
    assert!(first.contains("exit Some(1)"), "{first}");
    assert!(!is_primary(&lab, 2), "{first}");
    // The SSH master of the cut session goes silent and is let go; until
    // it has ended (its keepalives, seconds), node2 reads as unreachable.
    crate::support::wait_for(
        "node2 to be reachable again",
        Duration::from_secs(30),
        || {
            !text(&pgrepl(&lab, &["status"])).contains("node2: unreachable")
                && !text(&pgrepl(&lab, &["plan"])).contains("node2: unreachable")
        },
    );
    let rerun = rerun_converges_allowing_unreachable(&lab);
    let seen = obs.finish();
    assert_one_primary(&seen, &format!("{first}\n{rerun}"));
    assert!(is_primary(&lab, 2), "{rerun}");
    lab.heal(1);
}

/// A rerun with `--force` while the old primary is still cut off: apply
/// completes what it can and says the node is left for later.
fn rerun_converges_allowing_unreachable(lab: &Lab) -> String {
    let out = pgrepl(lab, &["apply", "--auto-approve", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    text(&out)
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_re_base_killed_after_the_stop_and_before_the_start_converges_on_rerun() {
    let lab = converged_lab("rebase_killed_after_stop_and_before_start");
    lab.cut(1);
    set_primary(&lab, "node2");
    apply_ok(&lab, &["--force"]);
    lab.sql(
        1,
        "INSERT INTO lab_data(note) SELECT 'split brain' FROM generate_series(1, 300)",
    );
    lab.heal(1);
    // node1 runs as a second primary until pgrepl stops it: not watched
    // until then (not pgrepl's doing); from its stop on, every node counts.
    let first = interrupted_apply(&lab, &[], "rebase:after-stop", Fault::Kill);
    let obs = Observers::start(&lab, &[1, 2, 3]);
    let plan = text(&pgrepl(&lab, &["plan"]));
    assert!(plan.contains("node1.timeline"), "{first}\n{plan}");
    assert!(!plan.contains("node1.service"), "{plan}");
    let second = interrupted_apply(&lab, &[], "rebase:before-start", Fault::Kill);
    let rerun = rerun_converges(&lab, false, "re-base before its start");
    let seen = obs.finish();
    let what = format!("{first}\n{second}\n{rerun}");
    assert_one_primary(&seen, &what);
    assert!(!is_primary(&lab, 1), "{what}");
    assert!(
        second.contains("pg_rewind:"),
        "the rewind ran before the kill: {what}"
    );
}

#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn a_bad_value_waiting_for_a_restart_is_put_back_not_restarted_into() {
    let lab = Lab::for_test("pending_value_put_back", 3);
    crate::support::edit_config(
        &lab,
        "wal_level = \"replica\"",
        "wal_level = \"replica\"\nmax_connections = 100",
    );
    apply_ok(&lab, &[]);
    // Below the primary's 100: a standby restarted with it refuses to start.
    lab.sql(2, "ALTER SYSTEM SET max_connections = 20");
    lab.sql(2, "SELECT pg_reload_conf()");
    let plan = text(&pgrepl(&lab, &["plan"]));
    assert!(plan.contains("waiting for a restart"), "{plan}");
    assert!(!plan.contains("restart for"), "{plan}");
    apply_ok(&lab, &[]);
    plan_is_empty(&lab);
    assert_eq!(
        lab.sql(2, "SELECT setting || ' ' || pending_restart FROM pg_settings WHERE name = 'max_connections'"),
        "100 false"
    );
}

/// The watcher can fail: two writable nodes made by hand are seen.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn the_watcher_sees_two_primaries_made_by_hand() {
    let lab = Lab::for_test("watcher_sees_two_primaries", 2);
    admit_the_host(&lab);
    apply_ok(&lab, &[]);
    let obs = Observers::start(&lab, &[1, 2]);
    lab.sql(2, "SELECT pg_promote()");
    std::thread::sleep(Duration::from_millis(500));
    let seen = obs.finish();
    assert!(
        !seen.two_primaries.is_empty(),
        "the watcher missed two writable primaries in {} sweeps",
        seen.sweeps
    );
    assert!(seen.two_primaries.iter().all(|(_, n)| n == &[1, 2]));
}

/// Issue 12, case 6: re-pointing a standby under another upstream drops its
/// old slot, and the plan says so: apply runs exactly the planned steps, a
/// saved plan too.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn re_pointing_a_standby_plans_its_old_slot_drop_and_apply_runs_exactly_the_plan() {
    let lab = Lab::for_test("repoint_plans_the_slot_drop", 3);
    apply_ok(&lab, &[]);
    crate::support::edit_config(
        &lab,
        "[nodes.node3]\n",
        "[nodes.node3]\nupstream = \"node2\"\n",
    );
    let planfile = lab.dir().join("repoint.plan");
    let out = pgrepl(&lab, &["plan", "--out", planfile.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan = text(&out);
    assert!(plan.contains("- node1.slot.node3"), "{plan}");
    let json = pgrepl(&lab, &["plan", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("plan json");
    let planned = json["changes"].as_array().map_or(0, Vec::len);
    let out = pgrepl(
        &lab,
        &["apply", "--auto-approve", planfile.to_str().expect("path")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("Apply complete: {planned} steps in")),
        "the plan showed {planned} steps:\n{plan}\n{}",
        text(&out)
    );
    plan_is_empty(&lab);
    assert_eq!(
        lab.sql(
            1,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'node3'"
        ),
        "0"
    );
}

/// Issue 12, case 9: "a fresh plan shows no changes" is said once the
/// standbys stream again after a primary restart, not while they reconnect.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn after_a_primary_restart_apply_returns_once_its_standbys_stream_again() {
    let lab = Lab::for_test("primary_restart_waits_for_standbys", 3);
    apply_ok(&lab, &[]);
    crate::support::edit_config(
        &lab,
        "wal_level = \"replica\"",
        "wal_level = \"replica\"\nshared_buffers = \"64MB\"",
    );
    let out = apply_ok(&lab, &[]);
    let shown = text(&out);
    assert!(shown.contains("node1.service"), "{shown}");
    // Right away, no waiting: both stream from the restarted primary.
    let h1 = lab.host(1);
    for i in [2, 3] {
        assert_eq!(
            crate::support::sender_of(&lab, i),
            format!("{h1}:streaming"),
            "node{i} right after apply:\n{shown}"
        );
    }
    assert!(shown.contains("stream again"), "{shown}");
}

/// `pg_ctl restart` by hand on node `i`, as an operator would after an
/// ALTER SYSTEM: expected to fail here (the server does not come back).
fn restart_by_hand_fails(lab: &Lab, i: usize, why: &str) {
    let dd = lab.data_dir();
    let log = format!(
        "{}/pgrepl-postgresql.log",
        dd.rsplit_once('/').expect("parent").0
    );
    let out = lab.exec(
        i,
        &["pg_ctl", "-D", &dd, "-l", &log, "-w", "-t", "30", "restart"],
    );
    // pg_ctl 18 exits 0 when the postmaster it started exits at once
    // ("server shut down because of recovery target settings"): what
    // counts is that the server is down and says why.
    let _ = out;
    let logged = lab.exec(i, &["tail", "-n", "20", &log]);
    let logged = String::from_utf8_lossy(&logged.stdout);
    assert!(logged.contains(why), "{logged}");
    assert_ne!(lab.try_sql(i, "SELECT 1").status.code(), Some(0));
}

/// `out` exited `code` (1 refused by validate, 4 a blocked plan) saying `what`.
fn refused(out: &Output, code: i32, what: &str) -> String {
    assert_eq!(out.status.code(), Some(code), "{}", text(out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains(what), "{}", text(out));
    err
}

/// Issue 12, case 1: lowering max_replication_slots below the slots in use.
/// Validate refuses a value below what the file implies, the plan blocks
/// one below the slots a node holds (an unmanaged one included) and apply
/// changes nothing; a primary left down by such a value (set by hand)
/// comes back with a plain apply once the file is fixed.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn too_few_replication_slots_are_refused_and_a_primary_they_stopped_comes_back() {
    let lab = converged_lab("too_few_replication_slots");
    lab.sql(1, "SELECT pg_create_physical_replication_slot('stray')");
    let before = crate::support::node_fingerprint(&lab, 1);
    crate::support::edit_config(
        &lab,
        "max_replication_slots = 10",
        "max_replication_slots = 1",
    );
    let err = refused(
        &pgrepl(&lab, &["validate"]),
        1,
        "max_replication_slots on `node1` is 1, below the 2 slots it may hold",
    );
    assert!(
        err.contains("pgrepl.toml:") && err.contains("at least 2"),
        "{err}"
    );
    // Enough for the file's nodes, not for node1's three slots.
    crate::support::edit_config(
        &lab,
        "max_replication_slots = 1",
        "max_replication_slots = 2",
    );
    refused(
        &pgrepl(&lab, &["plan"]),
        4,
        "would hold 3 replication slots (node2, node3, stray) with max_replication_slots = 2",
    );
    refused(
        &pgrepl(&lab, &["apply", "--auto-approve"]),
        4,
        "nothing was changed",
    );
    assert_eq!(crate::support::node_fingerprint(&lab, 1), before);
    // What apply used to do: the primary restarted with 2 never comes back.
    lab.sql(1, "ALTER SYSTEM SET max_replication_slots = 2");
    restart_by_hand_fails(&lab, 1, "too many replication slots active before shutdown");
    refused(
        &pgrepl(&lab, &["plan"]),
        4,
        "has 3 replication slots in pg_replslot and would start with max_replication_slots = 2",
    );
    crate::support::edit_config(
        &lab,
        "max_replication_slots = 2",
        "max_replication_slots = 10",
    );
    let plan = text(&pgrepl(&lab, &["plan"]));
    let set = plan.find("node1.setting.max_replication_slots");
    let start = plan.find("node1.service");
    assert!(set.is_some() && set < start, "{plan}");
    let started = Instant::now();
    apply_ok(&lab, &[]);
    eprintln!("apply of the fixed file: {:?}", started.elapsed());
    plan_is_empty(&lab);
    assert!(is_primary(&lab, 1));
    assert_eq!(lab.sql(1, "SHOW max_replication_slots"), "10");
}

/// Issue 12, case 3: settings that stop a server. Validate refuses
/// wal_level = minimal and too few WAL senders; the plan blocks a preload
/// library the nodes do not have and apply changes nothing. Nodes left
/// down by such values (set by hand) come back with a plain apply of the
/// fixed file: the values are rewritten offline before the start.
#[test]
#[cfg_attr(pgrepl_skip_lab, ignore = "lab test: PGREPL_SKIP_LAB_TESTS=1")]
fn settings_that_stop_a_server_are_refused_and_nodes_they_stopped_come_back() {
    let lab = converged_lab("settings_that_stop_a_server");
    let before: Vec<String> = (1..=3)
        .map(|i| crate::support::node_fingerprint(&lab, i))
        .collect();
    crate::support::edit_config(&lab, "wal_level = \"replica\"", "wal_level = \"minimal\"");
    refused(
        &pgrepl(&lab, &["validate"]),
        1,
        "wal_level is minimal on `node1`",
    );
    crate::support::edit_config(&lab, "wal_level = \"minimal\"", "wal_level = \"replica\"");
    crate::support::edit_config(&lab, "max_wal_senders = 10", "max_wal_senders = 2");
    refused(
        &pgrepl(&lab, &["validate"]),
        1,
        "max_wal_senders on `node1` is 2, too low for 3 nodes",
    );
    crate::support::edit_config(&lab, "max_wal_senders = 2", "max_wal_senders = 10");
    crate::support::edit_config(
        &lab,
        "wal_level = \"replica\"",
        "wal_level = \"replica\"\nshared_preload_libraries = \"pg_stat_statementz\"",
    );
    // The server's own library directory, as its pg_config tells it.
    let libdir = String::from_utf8_lossy(&lab.exec(1, &["pg_config", "--pkglibdir"]).stdout)
        .trim()
        .to_string();
    assert!(libdir.starts_with('/'), "pg_config --pkglibdir: {libdir}");
    let err = refused(
        &pgrepl(&lab, &["plan"]),
        4,
        &format!("shared_preload_libraries names pg_stat_statementz, which is not in {libdir}"),
    );
    assert!(err.contains("3 nodes could not be planned"), "{err}");
    refused(
        &pgrepl(&lab, &["apply", "--auto-approve"]),
        4,
        "nothing was changed",
    );
    let after: Vec<String> = (1..=3)
        .map(|i| crate::support::node_fingerprint(&lab, i))
        .collect();
    assert_eq!(after, before);
    // What apply used to do: node2 restarted with the typo stays down, and
    // a stopped node is checked from its files too.
    lab.sql(
        2,
        "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statementz'",
    );
    restart_by_hand_fails(&lab, 2, "pg_stat_statementz");
    refused(
        &pgrepl(&lab, &["plan"]),
        4,
        &format!(
            "node2: is stopped and cannot be started: it would start with shared_preload_libraries naming pg_stat_statementz, which is not in {libdir}"
        ),
    );
    // And node3 restarted with wal_level = minimal (the file says replica).
    lab.sql(3, "ALTER SYSTEM SET wal_level = 'minimal'");
    restart_by_hand_fails(&lab, 3, "wal_level");
    // The fix: a library the server has (16's build ships no contrib).
    let fixed = if lab
        .exec(
            1,
            &["test", "-e", &format!("{libdir}/pg_stat_statements.so")],
        )
        .status
        .success()
    {
        "pg_stat_statements"
    } else {
        "plpgsql"
    };
    crate::support::edit_config(&lab, "pg_stat_statementz", fixed);
    let started = Instant::now();
    apply_ok(&lab, &[]);
    eprintln!("apply of the fixed file: {:?}", started.elapsed());
    plan_is_empty(&lab);
    for i in 1..=3 {
        assert_eq!(lab.sql(i, "SHOW shared_preload_libraries"), fixed);
        assert_eq!(lab.sql(i, "SHOW wal_level"), "replica");
    }
    assert!(is_primary(&lab, 1));
    assert_eq!(lab.sql(2, "SELECT pg_is_in_recovery()"), "t");
    assert_eq!(lab.sql(3, "SELECT pg_is_in_recovery()"), "t");
}
