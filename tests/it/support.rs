//! What the lab tests share: running pgrepl against a lab, showing what it
//! printed, editing the lab's cluster file, and waiting with a deadline.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::lab::Lab;

/// pgrepl with the lab's passwords, no colour and no terminal, run from `/`
/// (no pgrepl.toml there); `-c` only when the caller adds it.
pub fn pgrepl_bare(lab: &Lab, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pgrepl"));
    c.args(args)
        .envs(lab.env())
        .env("NO_COLOR", "1")
        .current_dir("/")
        .stdin(Stdio::null());
    c
}

/// pgrepl ARGS -c <the lab's file>, to be run by the caller.
pub fn pgrepl_cmd(lab: &Lab, args: &[&str]) -> Command {
    let mut c = pgrepl_bare(lab, args);
    c.arg("-c").arg(lab.config_path());
    c
}

/// pgrepl ARGS -c <the lab's file>, with `env` added to its environment.
pub fn pgrepl_env(lab: &Lab, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = pgrepl_cmd(lab, args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run pgrepl")
}

/// pgrepl ARGS -c <the lab's file>.
pub fn pgrepl(lab: &Lab, args: &[&str]) -> Output {
    pgrepl_env(lab, args, &[])
}

/// Exit code, stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `plan --detailed-exitcode` exits 0: nothing left to do.
pub fn plan_is_empty(lab: &Lab) {
    let out = pgrepl(lab, &["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the next plan must be empty:\n{}",
        text(&out)
    );
}

/// Polls `f` every 50 ms; fails the test after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Edits the lab's cluster file: `from` must occur exactly once.
pub fn edit_config(lab: &Lab, from: &str, to: &str) {
    let path = lab.config_path();
    let cfg = std::fs::read_to_string(&path).expect("config");
    assert_eq!(cfg.matches(from).count(), 1, "{from:?} in\n{cfg}");
    std::fs::write(&path, cfg.replace(from, to)).expect("write config");
}

/// Names `name` as the primary in the lab's cluster file.
pub fn set_primary(lab: &Lab, name: &str) {
    let path = lab.config_path();
    let cfg = std::fs::read_to_string(&path).expect("config");
    let out: String = cfg
        .lines()
        .map(|line| {
            if line.starts_with("primary = ") {
                format!("primary = \"{name}\"\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    std::fs::write(&path, out).expect("write config");
}

/// `host:status` of node `i`'s WAL receiver (empty when there is none).
pub fn sender_of(lab: &Lab, i: usize) -> String {
    lab.sql(
        i,
        "SELECT sender_host || ':' || status FROM pg_stat_wal_receiver",
    )
}

/// Everything apply could touch on a node, to prove it touched nothing: the
/// configuration files, the data directory's files with their times (not
/// its directories: pg_wal and the like change on their own), and the
/// server's start time, settings, slots and roles.
pub fn node_fingerprint(lab: &Lab, i: usize) -> String {
    let dd = lab.data_dir();
    let files = lab.exec(
        i,
        &[
            "sh",
            "-c",
            "cat \"$1/pg_hba.conf\" \"$1/postgresql.auto.conf\"; ls -la --time-style=full-iso \"$1\" | grep '^-'",
            "sh",
            &dd,
        ],
    );
    let sql = lab.sql(
        i,
        "SELECT pg_postmaster_start_time()::text, \
         (SELECT string_agg(name || '=' || setting, ',' ORDER BY name) FROM pg_settings WHERE source <> 'default' AND source <> 'override' AND name NOT LIKE 'application_name'), \
         (SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots), \
         (SELECT string_agg(rolname || coalesce(rolpassword, ''), ',' ORDER BY rolname) FROM pg_authid)",
    );
    format!("{}\n{sql}", String::from_utf8_lossy(&files.stdout))
}

/// `ls -d DATA_DIR.pgrepl-old-*` on node `i`: the kept aside data directories.
pub fn kept_old_data_dirs(lab: &Lab, i: usize) -> Output {
    lab.exec(
        i,
        &[
            "sh",
            "-c",
            "ls -d \"$1\".pgrepl-old-*",
            "sh",
            &lab.data_dir_of(i),
        ],
    )
}

/// `apply --auto-approve EXTRA` that must succeed, with `env` added: the
/// one helper every lab test applies with. It checks that apply ends with
/// a fresh plan showing no changes (or with nothing to do; with `--force`,
/// nodes that could not be planned may be left), and that it ran no step
/// its plan did not show (every lab scenario checks that the plan is
/// complete).
#[track_caller]
pub fn apply_ok_env(lab: &Lab, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let may_follow = known_after_apply(lab, extra, env);
    let mut args = vec!["apply", "--auto-approve"];
    args.extend_from_slice(extra);
    let started = Instant::now();
    let out = pgrepl_env(lab, &args, env);
    eprintln!("apply took {:.1}s", started.elapsed().as_secs_f64());
    assert_eq!(out.status.code(), Some(0), "apply failed:\n{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("A fresh plan shows no changes")
            || stdout.contains("No changes.")
            || (extra.contains(&"--force") && stdout.contains("left for a later apply")),
        "apply did not end with an empty plan:\n{}",
        text(&out)
    );
    // The plan is the whole truth: apply runs only the steps it showed, and
    // on the nodes whose plan said so, what is known only after apply.
    let unplanned = unplanned_steps(&out, &may_follow);
    assert!(
        unplanned.is_empty(),
        "apply ran steps its plan did not show: {}\n{}",
        unplanned.join(", "),
        text(&out)
    );
    out
}

/// The steps an apply ran beyond its plan, but for those on `may_follow`'s
/// nodes (see `known_after_apply`).
pub fn unplanned_steps(out: &Output, may_follow: &[String]) -> Vec<String> {
    after_apply_steps(out)
        .into_iter()
        .filter(|s| {
            // `pooler.NAME.*` belongs to pooler NAME.
            let node = s.split_whitespace().nth(1).and_then(|a| {
                let a = a.strip_prefix("pooler.").unwrap_or(a);
                a.split('.').next()
            });
            !node.is_some_and(|n| may_follow.iter().any(|m| m == n))
        })
        .collect()
}

/// The nodes whose plan says part of their steps is known only after apply
/// (a stopped node's hba, a new standby's settings): the plan of the same
/// apply, as JSON. A switchover's old primary counts with its candidate.
pub fn known_after_apply(lab: &Lab, extra: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let mut args = vec!["plan", "--json"];
    args.extend(
        extra
            .iter()
            .filter(|a| **a != "--allow-data-loss" && **a != "--force"),
    );
    let out = pgrepl_env(lab, &args, env);
    let Ok(plan) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return Vec::new();
    };
    let mut nodes = Vec::new();
    for step in plan["changes"].as_array().into_iter().flatten() {
        if step["reason"]
            .as_str()
            .is_some_and(|r| r.contains("known after apply"))
        {
            for key in ["node", "from"] {
                if let Some(n) = step[key].as_str() {
                    nodes.push(n.to_string());
                }
            }
            // `pooler.NAME.*`: pooler NAME (its read-only targets are
            // known once the standbys stream, whichever runs first).
            if let Some(p) = step["address"]
                .as_str()
                .and_then(|a| a.strip_prefix("pooler."))
                .and_then(|a| a.split('.').next())
            {
                nodes.push(p.to_string());
            }
        }
    }
    nodes
}

/// `apply --auto-approve EXTRA` that must succeed.
#[track_caller]
pub fn apply_ok(lab: &Lab, extra: &[&str]) -> Output {
    apply_ok_env(lab, extra, &[])
}

/// The steps an apply ran that its plan had not shown.
pub fn after_apply_steps(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("Known only now that the plan's steps ran: "))
        .flat_map(|l| l.split(", ").map(String::from).collect::<Vec<_>>())
        .collect()
}

/// `apply --auto-approve` paused at `point` (PGREPL_TEST_PAUSE_AT): the
/// running apply and the pause file, which releases it once removed. Fails
/// when apply ends before the pause or never reaches it within 90 s.
pub fn apply_paused_at(lab: &Lab, point: &str) -> (Child, PathBuf) {
    let pause = lab.dir().join("pause-point");
    let _ = std::fs::remove_file(&pause);
    let mut child = pgrepl_cmd(lab, &["apply", "--auto-approve"])
        .env("PGREPL_TEST_PAUSE_AT", point)
        .env("PGREPL_TEST_PAUSE_FILE", &pause)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pgrepl");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !pause.exists() {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "apply ended before the pause"
        );
        assert!(Instant::now() < deadline, "apply never paused");
        std::thread::sleep(Duration::from_millis(10));
    }
    (child, pause)
}

/// A converged 3-node lab in which node3 is then made to cascade from node2
/// (a slot on node2, node3's recovery, node1's stale slot dropped), and the
/// apply that does it paused before node3's reload: see `apply_paused_at`.
pub fn apply_paused_in_a_cascade(lab: &Lab) -> (Child, PathBuf) {
    apply_ok(lab, &[]);
    edit_config(
        lab,
        "[nodes.node3]\n",
        "[nodes.node3]\nupstream = \"node2\"\n",
    );
    apply_paused_at(lab, "recovery:before-reload")
}

/// After `apply_paused_in_a_cascade` stopped early: node3's recovery
/// (the running step) is done, node1's stale slot is still to drop, and a
/// rerun converges.
pub fn the_cascade_stopped_after_node3s_recovery(lab: &Lab, stderr: &str) {
    assert!(
        stderr.contains("node3.recovery"),
        "the running step finished: {stderr}"
    );
    let left = pgrepl(lab, &["plan", "--detailed-exitcode"]);
    assert_eq!(left.status.code(), Some(2), "{}", text(&left));
    apply_ok(lab, &[]);
    plan_is_empty(lab);
}

/// Holds the cluster lock on node `i` as another apply holds it: the holder
/// file is `pid=PID` and then `lines` (each ending in a newline: who holds
/// it), and its lease is kept fresh until the child's stdin closes.
pub fn hold_lock(lab: &Lab, i: usize, lines: &str) -> Child {
    let lock = format!(
        "/var/lib/postgresql/{}/.pgrepl-lab{}.lock",
        lab.major(),
        lab.k()
    );
    let format = lines.replace('%', "%%").replace('\n', "\\n");
    let mut holder = lab
        .ssh(i)
        .arg(lab.as_postgres(i, &format!(
            "exec 9>>{lock}; flock 9; printf 'pid=%s\\n{format}' $$ > {lock}.holder; \
             p=$$; (exec 9>&-; while kill -0 $p 2>/dev/null; do touch {lock}.holder; sleep 1; done) & echo held; read _"
        )))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ssh");
    let mut first = String::new();
    BufReader::new(holder.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read");
    assert_eq!(first.trim(), "held");
    holder
}

/// Drift on a converged lab's standby (node2's wal_keep_size) and primary
/// (the replication role's expiry): the drift check exits 2 naming both,
/// and apply repairs them.
#[track_caller]
pub fn drift_on_a_standby_and_the_primary_is_repaired(lab: &Lab) {
    lab.sql(2, "ALTER SYSTEM SET wal_keep_size = '0'");
    lab.sql(2, "SELECT pg_reload_conf()");
    lab.sql(1, "ALTER ROLE replicator VALID UNTIL '2000-01-01'");
    let drift = pgrepl(lab, &["plan", "--detailed-exitcode"]);
    assert_eq!(drift.status.code(), Some(2), "{}", text(&drift));
    for needle in ["node2.setting.wal_keep_size", "role.replicator"] {
        assert!(text(&drift).contains(needle), "{needle}: {}", text(&drift));
    }
    apply_ok(lab, &[]);
    assert_eq!(lab.sql(2, "SHOW wal_keep_size"), "256MB");
    assert_eq!(
        lab.sql(
            1,
            "SELECT rolvaliduntil = 'infinity' FROM pg_roles WHERE rolname = 'replicator'"
        ),
        "t"
    );
    plan_is_empty(lab);
}
