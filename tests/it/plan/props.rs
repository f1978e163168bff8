//! Planning random observed states: every node in any shape (converged,
//! untouched, unreachable, empty, stopped, in the wrong role...) with random
//! setting, hba, role, slot and recovery drift. Planning never panics and
//! every plan keeps the ordering and secrecy rules.

use std::collections::HashSet;

use pgrepl::config::Config;
use pgrepl::diff;
use pgrepl::gather::{DataDir, Lsn, Observed, SlotFacts};
use pgrepl::plan::render::{self, Style};
use pgrepl::plan::{Op, Plan};
use proptest::prelude::*;

use super::builder::{self, load};
use super::{assert_no_secrets, orders_text, plan_schema, schema_errors};

/// Config `which`: 0 is the three-node example cluster, then `MORE_CONFIGS`.
fn config(which: usize) -> Config {
    match which {
        0 => load(&orders_text("")),
        n => load(MORE_CONFIGS[n - 1]),
    }
}

/// The other shapes; the first is the three-node example cluster (`super::orders_text`).
const MORE_CONFIGS: [&str; 4] = [
    // A cascade, per-node settings, the conf files outside the data directory.
    r#"
[cluster]
name = "inventory"
primary = "a1"
[postgres]
data_dir = "/var/lib/postgresql/15/main"
config_dir = "/etc/postgresql/15/main"
[nodes.a1]
host = "10.10.0.10"
[nodes.a2]
host = "10.10.0.11"
[nodes.b1]
host = "10.20.0.10"
[nodes.b2]
host = "10.20.0.11"
upstream = "b1"
[replication]
user = "replicator"
password = { env = "PGREPL_REPLICATION_PASSWORD" }
sslmode = "verify-full"
[rewind]
user = "pgrepl_rewind"
password = { env = "PGREPL_REWIND_PASSWORD" }
[settings]
wal_level = "replica"
max_wal_senders = 10
max_connections = 150
wal_log_hints = true
[nodes.b2.settings]
hot_standby_feedback = true
max_connections = 200
"#,
    // A pair with [[hba]], [[slots]] and restart-needing settings.
    r#"
[cluster]
name = "crm"
primary = "pg_a"
[nodes.pg_a]
host = "192.0.2.20"
[nodes.pg_b]
host = "192.0.2.21"
[replication]
user = "replicator"
password = { env = "PGREPL_REPLICATION_PASSWORD" }
[rewind]
user = "pgrepl_rewind"
password = { env = "PGREPL_REWIND_PASSWORD" }
[settings]
wal_level = "replica"
max_wal_senders = 5
shared_buffers = "1GB"
max_connections = 200
[[hba]]
type = "hostssl"
database = "crm"
user = "crm_app"
address = "198.51.100.0/24"
method = "scram-sha-256"
[[hba]]
type = "host"
database = "crm"
user = "crm_reports"
address = "pg_b"
method = "scram-sha-256"
[[slots]]
name = "barman"
"#,
    // Synchronous replication.
    r#"
[cluster]
name = "payments"
primary = "db1"
[nodes.db1]
host = "10.1.0.10"
[nodes.db2]
host = "10.1.0.11"
[nodes.db3]
host = "10.1.0.12"
[replication]
user = "replicator"
password = { env = "PGREPL_REPLICATION_PASSWORD" }
synchronous = { mode = "first", count = 1, standbys = ["db2", "db1"] }
[settings]
wal_level = "replica"
synchronous_commit = "on"
max_slot_wal_keep_size = "10GB"
"#,
    // No slots, no rewind role, a primary named last.
    r#"
[cluster]
name = "noslots"
primary = "z"
[nodes.x]
host = "10.3.0.1"
[nodes.y]
host = "10.3.0.2"
upstream = "x"
[nodes.z]
host = "10.3.0.3"
[nodes.x.settings]
max_worker_processes = 16
[replication]
user = "repl user"
password = { env = "PGREPL_REPLICATION_PASSWORD" }
slots = false
[settings]
max_worker_processes = 8
"#,
];

/// What a node looks like before the drift is applied.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Converged,
    Untouched,
    Unreachable,
    Unreadable,
    Missing,
    Empty,
    Foreign,
    Stopped,
    SqlFailed,
    WrongRole,
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        6 => Just(Shape::Converged),
        2 => Just(Shape::Untouched),
        1 => Just(Shape::Unreachable),
        1 => Just(Shape::Unreadable),
        2 => Just(Shape::Missing),
        1 => Just(Shape::Empty),
        1 => Just(Shape::Foreign),
        1 => Just(Shape::Stopped),
        1 => Just(Shape::SqlFailed),
        1 => Just(Shape::WrongRole),
    ]
}

/// Settings the drift changes, with plausible live values.
const DRIFT_SETTINGS: [(&str, i64, i64); 8] = [
    ("max_connections", 50, 400),
    ("max_worker_processes", 4, 32),
    ("max_wal_senders", 1, 20),
    ("shared_buffers", 1024, 300_000),
    ("wal_keep_size", 0, 4096),
    ("wal_log_hints", 0, 1),
    ("hot_standby_feedback", 0, 1),
    ("max_locks_per_transaction", 32, 256),
];

#[derive(Debug, Clone)]
struct Drift {
    shape: Shape,
    settings: Vec<(usize, i64, bool)>,
    /// Bit i set: the node's i-th desired slot is dropped.
    drop_slots: u8,
    extra_slot: Option<(bool, i64, u8)>,
    /// 0 keep, 1 no file, 2 block edited, 3 block removed, 4 block after the rules.
    hba: u8,
    /// 0 keep, 1 missing, 2 other password, 3 MD5, 4 no LOGIN/REPLICATION, 5 no grants.
    role: u8,
    /// 0 keep, 1 elsewhere, 2 empty, 3 a redacted password, 4 another slot name.
    conninfo: u8,
    /// 0 keep, 1 missing, 2 other content, 3 mode 644.
    passfile: u8,
    standby_signal: Option<bool>,
    wal_status_lost: bool,
}

fn drift() -> impl Strategy<Value = Drift> {
    (
        shape(),
        prop::collection::vec(
            (0..DRIFT_SETTINGS.len(), 0i64..400_000, any::<bool>()),
            0..3,
        ),
        any::<u8>(),
        prop::option::weighted(0.3, (any::<bool>(), 0i64..(64 << 30), 0u8..4)),
        prop_oneof![4 => Just(0u8), 1 => 1u8..5],
        prop_oneof![4 => Just(0u8), 1 => 1u8..6],
        prop_oneof![4 => Just(0u8), 1 => 1u8..5],
        prop_oneof![4 => Just(0u8), 1 => 1u8..4],
        prop::option::weighted(0.1, any::<bool>()),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(
                shape,
                settings,
                drop_slots,
                extra_slot,
                hba,
                role,
                conninfo,
                passfile,
                standby_signal,
                wal_status_lost,
            )| {
                Drift {
                    shape,
                    settings,
                    // Mostly keep the slots.
                    drop_slots: if drop_slots % 4 == 0 { drop_slots } else { 0 },
                    extra_slot,
                    hba,
                    role,
                    conninfo,
                    passfile,
                    standby_signal,
                    wal_status_lost,
                }
            },
        )
}

fn apply_drift(cfg: &Config, obs: &mut Observed, name: &str, d: &Drift) {
    match d.shape {
        Shape::Converged => {}
        Shape::Untouched => *builder::node(obs, name) = builder::untouched_node(cfg, name),
        Shape::Unreachable => {
            builder::cut(obs, name);
            return;
        }
        Shape::Unreadable => {
            let n = builder::node(obs, name);
            n.files = None;
            n.server = None;
            n.errors = vec![format!(
                "{name}: reading the data directory failed: sh: 1: base64: not found"
            )];
            return;
        }
        Shape::Missing | Shape::Empty | Shape::Foreign => {
            let mut n = builder::missing(cfg, name);
            if let Some(f) = n.files.as_mut() {
                f.data_dir = match d.shape {
                    Shape::Missing => DataDir::Missing,
                    Shape::Empty => DataDir::Empty,
                    _ => DataDir::Foreign,
                };
            }
            *builder::node(obs, name) = n;
            return;
        }
        Shape::Stopped | Shape::SqlFailed => {
            let stopped = matches!(d.shape, Shape::Stopped);
            let n = builder::node(obs, name);
            n.server = None;
            if let Some(f) = n.files.as_mut() {
                f.running = !stopped;
                if let Some(c) = f.control.as_mut() {
                    c.state = "shut down".into();
                }
            }
            if !stopped {
                n.errors = vec![format!(
                    "{name}: reading the server's state over SQL failed: connection refused"
                )];
            }
            return;
        }
        Shape::WrongRole => {
            if let Some(s) = builder::node(obs, name).server.as_mut() {
                s.in_recovery = !s.in_recovery;
                // What the server reports in its new role.
                if s.in_recovery {
                    s.receive_lsn = s.current_lsn.take();
                    s.replay_lsn = s.receive_lsn;
                } else {
                    s.current_lsn = s.replay_lsn;
                    s.wal_receiver = None;
                }
            }
        }
    }
    let Some(server) = builder::node(obs, name).server.as_mut() else {
        return;
    };
    for &(i, raw, pending) in &d.settings {
        let (guc, lo, hi) = DRIFT_SETTINGS[i];
        let v = lo + raw % (hi - lo + 1);
        let text = if hi == 1 {
            if v == 1 {
                "on".to_string()
            } else {
                "off".to_string()
            }
        } else {
            v.to_string()
        };
        let p = server
            .settings
            .entry(guc.to_string())
            .or_insert_with(|| builder::pg_setting(guc, &text, "default"));
        p.setting = text;
        p.source = "configuration file".into();
        p.pending_restart = pending;
    }
    let mut i = 0;
    server.slots.retain(|_| {
        let keep = d.drop_slots & (1 << (i % 8)) == 0;
        i += 1;
        keep
    });
    if d.wal_status_lost
        && let Some(s) = server.slots.first_mut()
    {
        s.wal_status = Some("lost".into());
    }
    if let Some((active, retained, status)) = d.extra_slot {
        server.slots.push(SlotFacts {
            name: "unmanaged_slot".into(),
            slot_type: "physical".into(),
            active,
            restart_lsn: Some(Lsn(0x0100_0000)),
            wal_status: Some(
                ["reserved", "extended", "unreserved", "lost"][status as usize % 4].into(),
            ),
            retained_bytes: Some(retained),
            invalidation_reason: None,
        });
    }
    let role = cfg.replication.user.clone();
    match d.role {
        1 => {
            server.roles.shift_remove(&role);
        }
        2 => {
            if let Some(r) = server.roles.get_mut(&role) {
                r.verifier = Some(builder::quick_verifier("not-the-password"));
            }
        }
        3 => {
            if let Some(r) = server.roles.get_mut(&role) {
                r.verifier = Some("md5c4ca4238a0b923820dcc509a6f75849b".into());
            }
        }
        4 => {
            if let Some(r) = server.roles.get_mut(&role) {
                r.login = false;
                r.replication = false;
            }
        }
        5 => {
            for r in server.roles.values_mut() {
                r.rewind_grants = false;
            }
        }
        _ => {}
    }
    match d.conninfo {
        1 => set(
            server,
            "primary_conninfo",
            "host=203.0.113.9 port=5432 user=replicator application_name=x",
        ),
        2 => set(server, "primary_conninfo", ""),
        3 => set(
            server,
            "primary_conninfo",
            "host=10.0.0.1 user=replicator password=(sensitive)",
        ),
        4 => set(server, "primary_slot_name", "some_other_slot"),
        _ => {}
    }
    let files = builder::files(obs, name);
    match d.hba {
        1 => files.hba_conf = None,
        2 => {
            files.hba_conf = files
                .hba_conf
                .as_ref()
                .map(|h| h.replace("scram-sha-256", "trust"));
        }
        3 => files.hba_conf = Some(builder::DEBIAN_HBA.to_string()),
        4 => {
            files.hba_conf = files.hba_conf.as_ref().map(|h| {
                let (block, rest): (Vec<&str>, Vec<&str>) = h
                    .lines()
                    .partition(|l| l.contains("pgrepl") || l.starts_with("host     "));
                format!("{}\n{}\n", rest.join("\n"), block.join("\n"))
            });
        }
        _ => {}
    }
    match d.passfile {
        1 => files.passfile_sha256 = None,
        2 => files.passfile_sha256 = Some("0".repeat(64)),
        3 => files.passfile_mode = Some("644".into()),
        _ => {}
    }
    if let Some(s) = d.standby_signal {
        files.standby_signal = s;
    }
}

fn set(server: &mut pgrepl::gather::ServerFacts, name: &str, value: &str) {
    let p = server
        .settings
        .entry(name.to_string())
        .or_insert_with(|| builder::pg_setting(name, value, "default"));
    p.setting = value.to_string();
}

const HOT_STANDBY_SENSITIVE: [&str; 5] = [
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
];

/// The rules every plan keeps, whatever it observed.
fn check_plan(cfg: &Config, obs: &Observed, plan: &Plan) -> Result<(), TestCaseError> {
    let blocked: HashSet<&str> = plan
        .blocked
        .iter()
        .filter_map(|b| b.node.as_deref())
        .collect();
    let index_of = |pred: &dyn Fn(&pgrepl::plan::Step) -> bool| plan.changes.iter().position(pred);

    for (i, step) in plan.changes.iter().enumerate() {
        // Every step is on a node of the file, one that could be read.
        prop_assert!(
            cfg.nodes.contains_key(&step.node),
            "step {} on unknown node {}",
            step.address,
            step.node
        );
        prop_assert!(
            !blocked.contains(step.node.as_str()),
            "step {} on blocked node {}",
            step.address,
            step.node
        );
        let node_prefix = format!("{}.", step.node);
        prop_assert!(
            step.address.starts_with(&node_prefix)
                || step.address.starts_with("role.")
                || step.address == "cluster.primary",
            "address {} does not name node {}",
            step.address,
            step.node
        );
        match &step.op {
            Op::BaseBackup { upstream, slot } => {
                // The slot exists on the upstream, or is created before.
                if let Some(slot) = slot {
                    let exists = obs
                        .nodes
                        .get(upstream)
                        .and_then(|n| n.server.as_ref())
                        .is_some_and(|s| s.slots.iter().any(|x| &x.name == slot));
                    let created = plan.changes[..i].iter().any(|s| {
                        &s.node == upstream
                            && matches!(&s.op, Op::CreateSlot { name } if name == slot)
                    });
                    prop_assert!(
                        exists || created,
                        "base backup of {} through slot {slot} that nothing creates",
                        step.node
                    );
                }
                // Roles and hba come before any base backup.
                let late = plan.changes[i..].iter().find(|s| {
                    matches!(
                        s.op,
                        Op::CreateRole { .. } | Op::UpdateRole { .. } | Op::WriteHba { .. }
                    )
                });
                prop_assert!(
                    late.is_none(),
                    "{:?} after the base backup of {}",
                    late.map(|s| &s.address),
                    step.node
                );
            }
            Op::WriteRecovery {
                primary_slot_name, ..
            } => {
                let upstream = cfg.nodes[&step.node].upstream.clone().unwrap_or_default();
                if !primary_slot_name.is_empty()
                    && let Some(create) = index_of(&|s| {
                        s.node == upstream
                            && matches!(&s.op, Op::CreateSlot { name } if name == primary_slot_name)
                    })
                {
                    prop_assert!(
                        create < i,
                        "slot {primary_slot_name} created after {} uses it",
                        step.address
                    );
                }
                let late = plan.changes[i..].iter().find(|s| {
                    matches!(s.op, Op::CreateRole { .. } | Op::UpdateRole { .. })
                        || (matches!(s.op, Op::WriteHba { .. }) && s.node == upstream)
                });
                prop_assert!(
                    late.is_none(),
                    "{:?} after {}",
                    late.map(|s| &s.address),
                    step.address
                );
            }
            _ => {}
        }
    }

    // Restarts: one step per node, one node at a time; standbys first
    // unless a hot-standby-sensitive setting goes down.
    let restarts: Vec<&str> = plan
        .changes
        .iter()
        .filter(|s| matches!(s.op, Op::Restart { .. }))
        .map(|s| s.node.as_str())
        .collect();
    let unique: HashSet<&&str> = restarts.iter().collect();
    prop_assert_eq!(
        unique.len(),
        restarts.len(),
        "a node restarts twice: {:?}",
        restarts
    );
    let primary = cfg.cluster.primary.as_str();
    if restarts.len() > 1 && restarts.contains(&primary) {
        // A name lowered on some nodes and raised on others is not a
        // lowering: its standbys stay at or above the primary either way.
        let changed = |down: bool| -> HashSet<&str> {
            plan.changes
                .iter()
                .filter(|s| matches!((s.before.as_deref().map(str::parse::<i64>), s.after.as_deref().map(str::parse::<i64>)), (Some(Ok(b)), Some(Ok(a))) if (a < b) == down && a != b))
                .filter_map(|s| {
                    HOT_STANDBY_SENSITIVE
                        .iter()
                        .copied()
                        .find(|g| s.address.ends_with(&format!(".setting.{g}")))
                })
                .collect()
        };
        // Mixed changes place each standby by its own values:
        // `no_restart_order_leaves_a_standby_below_its_primary` checks them.
        let (down, up) = (changed(true), changed(false));
        // A lowering put off to a second round leaves this round free.
        let second_round = plan
            .warnings
            .iter()
            .any(|w| w.message.contains("in a second round"));
        let lowered = !down.is_empty() && up.is_empty() && !second_round;
        let pos = restarts.iter().position(|n| *n == primary).unwrap_or(0);
        if lowered {
            prop_assert_eq!(
                pos,
                0,
                "lowered: the primary restarts first: {:?}",
                restarts
            );
        } else if down.is_empty() && !second_round {
            prop_assert_eq!(
                pos,
                restarts.len() - 1,
                "standbys restart before the primary: {:?}",
                restarts
            );
        }
    }
    // Restarts of nodes whose setting steps are all before them.
    for (i, step) in plan
        .changes
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s.op, Op::Restart { .. }))
    {
        let late = plan.changes[i..]
            .iter()
            .find(|s| s.node == step.node && s.restart && !matches!(s.op, Op::Restart { .. }));
        prop_assert!(
            late.is_none(),
            "{:?} comes after the restart of {}",
            late.map(|s| &s.address),
            step.node
        );
    }

    // Nothing secret in any rendering, and the JSON matches its schema.
    assert_no_secrets(plan);
    let json = render::json(plan);
    let errors = schema_errors(&plan_schema(), &json);
    prop_assert!(errors.is_empty(), "schema: {}\n{json:#}", errors.join("\n"));
    let _ = render::text(plan, Style { color: true });

    // Planning is deterministic.
    prop_assert_eq!(&diff::plan(cfg, obs), plan);
    Ok(())
}

/// --target: the targeted step is kept, with what it depends on, in order.
fn check_target(plan: &Plan, pick: usize) -> Result<(), TestCaseError> {
    if plan.changes.is_empty() {
        return Ok(());
    }
    let target = plan.changes[pick % plan.changes.len()].address.clone();
    let narrow = plan.clone().restrict_to(std::slice::from_ref(&target));
    prop_assert!(narrow.changes.iter().any(|s| s.address == target));
    // A subsequence of the full plan.
    let mut it = plan.changes.iter();
    for s in &narrow.changes {
        prop_assert!(
            it.any(|f| f == s),
            "{} is not in the full plan's order",
            s.address
        );
    }
    for s in &narrow.changes {
        let slot = match &s.op {
            Op::BaseBackup {
                slot: Some(slot), ..
            } => Some(slot),
            Op::WriteRecovery {
                primary_slot_name, ..
            } if !primary_slot_name.is_empty() => Some(primary_slot_name),
            _ => None,
        };
        if let Some(slot) = slot {
            let needed = plan
                .changes
                .iter()
                .find(|f| matches!(&f.op, Op::CreateSlot { name } if name == slot));
            if let Some(needed) = needed {
                prop_assert!(
                    narrow.changes.contains(needed),
                    "--target {target} dropped {}",
                    needed.address
                );
            }
        }
        // A new standby is built whole.
        if let Some(backup) = plan
            .changes
            .iter()
            .find(|f| f.node == s.node && matches!(f.op, Op::BaseBackup { .. }))
        {
            prop_assert!(
                narrow.changes.contains(backup),
                "--target {target} keeps {} without its base backup",
                s.address
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn planning_random_observed_states_keeps_the_rules(
        which in 0..=MORE_CONFIGS.len(),
        fresh in prop::bool::weighted(0.2),
        drifts in prop::collection::vec(drift(), 4),
        pick in any::<usize>(),
    ) {
        let cfg = config(which);
        let mut obs = if fresh { builder::fresh(&cfg) } else { builder::converged(&cfg) };
        builder::use_quick_verifiers(&cfg, &mut obs);
        let names: Vec<String> = cfg.nodes.keys().cloned().collect();
        for (name, d) in names.iter().zip(&drifts) {
            apply_drift(&cfg, &mut obs, name, d);
        }
        let plan = diff::plan(&cfg, &obs);
        check_plan(&cfg, &obs, &plan)?;
        check_target(&plan, pick)?;
    }

    /// Writing the managed block twice gives the file of writing it once.
    #[test]
    fn the_managed_hba_block_is_written_idempotently(
        which in 0..=MORE_CONFIGS.len(),
        lines in prop::collection::vec(
            prop_oneof![
                Just(String::new()),
                Just("# a comment".to_string()),
                Just("local all all peer".to_string()),
                Just("host all all 127.0.0.1/32 scram-sha-256".to_string()),
                "[ #a-z0-9./]{0,30}",
            ],
            0..12,
        ),
    ) {
        let cfg = config(which);
        let want = pgrepl::desired::desired_state(&cfg);
        let block = &want.nodes[&cfg.cluster.primary].hba_block;
        let current = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
        let once = pgrepl::hba::render(&current, block);
        let twice = pgrepl::hba::render(&once, block);
        prop_assert_eq!(&once, &twice);
        // Every line outside the block is kept, in order.
        let outside: Vec<&str> = current.lines().filter(|l| !l.trim().is_empty()).collect();
        let kept: Vec<&str> = once
            .lines()
            .filter(|l| !l.trim().is_empty() && !block.iter().any(|b| b == l))
            .collect();
        prop_assert_eq!(outside, kept);
    }
}

// ---- hot-standby-sensitive settings: restart order

/// The settings a standby needs at least as high as its primary's, with a
/// plausible base value (`max_wal_senders` is left out: validation ties it
/// to the number of standbys).
const HS_GENERATED: [(&str, i64); 4] = [
    ("max_connections", 100),
    ("max_worker_processes", 8),
    ("max_locks_per_transaction", 64),
    ("max_prepared_transactions", 0),
];

/// One node's values before and after, as offsets: the primary's are
/// `base + offset`; a standby's are its upstream's `+ offset` (never below).
#[derive(Debug, Clone)]
struct HsNode {
    old: [i64; 4],
    new: [i64; 4],
    /// Which settings the file names for this node at all.
    named: [bool; 4],
    /// A restart-only change too (shared_buffers).
    restart_only: bool,
}

fn hs_node() -> impl Strategy<Value = HsNode> {
    let offset = prop_oneof![3 => Just(0i64), 2 => 1i64..40];
    (
        [
            offset.clone(),
            offset.clone(),
            offset.clone(),
            offset.clone(),
        ],
        [offset.clone(), offset.clone(), offset.clone(), offset],
        [any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()],
        prop::bool::weighted(0.2),
    )
        .prop_map(|(old, new, named, restart_only)| HsNode {
            old,
            new,
            named,
            restart_only,
        })
}

/// The cluster file: n1 primary, n2.. standbys; with `cascade`, the last
/// node (of 3 or more) streams from n2.
fn hs_config(nodes: &[HsNode], cascade: bool, new: bool) -> (Config, Vec<[i64; 4]>) {
    let n = nodes.len();
    let upstream = |i: usize| -> Option<usize> {
        match i {
            0 => None,
            _ if cascade && n >= 3 && i == n - 1 => Some(1),
            _ => Some(0),
        }
    };
    // A setting is named on every node as soon as one draws it (a node
    // that leaves it out would run the default, below its upstream's).
    let any_named: Vec<bool> = (0..4).map(|k| nodes.iter().any(|x| x.named[k])).collect();
    let mut values: Vec<[i64; 4]> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let off = if new { node.new } else { node.old };
        let mut v = [0i64; 4];
        for k in 0..4 {
            v[k] = match (upstream(i), any_named[k]) {
                (_, false) => HS_GENERATED[k].1,
                (None, true) => HS_GENERATED[k].1 + off[k],
                (Some(u), true) => values[u][k] + off[k],
            };
        }
        values.push(v);
    }
    let mut text = String::from(
        r#"
[cluster]
name = "hs"
primary = "n1"
[replication]
user = "replicator"
password = { env = "PGREPL_REPLICATION_PASSWORD" }
[settings]
wal_level = "replica"
max_wal_senders = 10
"#,
    );
    for (i, node) in nodes.iter().enumerate() {
        text.push_str(&format!(
            "[nodes.n{}]\nhost = \"10.9.0.{}\"\n",
            i + 1,
            i + 10
        ));
        if let Some(u) = upstream(i) {
            text.push_str(&format!("upstream = \"n{}\"\n", u + 1));
        }
        text.push_str(&format!("[nodes.n{}.settings]\n", i + 1));
        for k in 0..4 {
            if any_named[k] {
                text.push_str(&format!("{} = {}\n", HS_GENERATED[k].0, values[i][k]));
            }
        }
        if new && node.restart_only {
            text.push_str("shared_buffers = \"256MB\"\n");
        }
    }
    (load(&text), values)
}

/// Walks the plan's steps in order, as apply runs them, and checks that no
/// standby ever runs, or is asked to start, with a value below the one its
/// primary's WAL records for it:
/// - while running, a standby below the primary's live value pauses its
///   recovery at the primary's parameter change;
/// - a restarted standby compares its new values with what its pg_control
///   recorded of the primary: after the primary's restart that is the old
///   or the new value (not known when it replays the change), unless the
///   restart first waits until it replayed the primary's change and made a
///   restartpoint (`catch_up_with`);
///
/// and that at the end every node runs the file's values, unless the plan
/// says a second round lowers the rest.
fn check_hot_standby_order(
    cfg: &Config,
    plan: &Plan,
    old: &[[i64; 4]],
    new: &[[i64; 4]],
) -> Result<(), TestCaseError> {
    let n = old.len();
    let idx = |name: &str| -> usize { name[1..].parse::<usize>().expect("nN") - 1 };
    let k_of = |name: &str| HS_GENERATED.iter().position(|(g, _)| *g == name);
    let mut live: Vec<[i64; 4]> = old.to_vec();
    let mut pending: Vec<[i64; 4]> = old.to_vec();
    // What a standby's pg_control may record of the primary: the highest
    // of the values it may not have replayed past yet.
    let mut may_record: Vec<[i64; 4]> = vec![old[0]; n];
    let primary = idx(&cfg.cluster.primary);
    for step in &plan.changes {
        let i = idx(&step.node);
        match &step.op {
            Op::SetSetting { name, .. } => {
                if let Some(k) = k_of(name) {
                    pending[i][k] = new[i][k];
                }
            }
            Op::Restart { catch_up_with } => {
                if i == primary {
                    prop_assert!(catch_up_with.is_none(), "{}", step.address);
                    live[i] = pending[i];
                    for (s, rec) in may_record.iter_mut().enumerate() {
                        if s != primary {
                            for k in 0..4 {
                                rec[k] = rec[k].max(live[primary][k]);
                            }
                        }
                    }
                } else {
                    let required = if catch_up_with.as_deref() == Some(cfg.cluster.primary.as_str())
                    {
                        live[primary]
                    } else {
                        may_record[i]
                    };
                    for k in 0..4 {
                        prop_assert!(
                            pending[i][k] >= required[k],
                            "{} restarts with {} = {} while its pg_control may record {} from the primary (catch_up_with {:?}); steps: {:?}",
                            step.node,
                            HS_GENERATED[k].0,
                            pending[i][k],
                            required[k],
                            catch_up_with,
                            plan.changes.iter().map(|s| &s.address).collect::<Vec<_>>()
                        );
                    }
                    live[i] = pending[i];
                    if catch_up_with.is_some() {
                        may_record[i] = live[primary];
                    }
                }
            }
            _ => {}
        }
        // At every moment: no running standby below the primary.
        for s in (0..n).filter(|s| *s != primary) {
            for k in 0..4 {
                prop_assert!(
                    live[s][k] >= live[primary][k],
                    "after {}: n{} runs {} = {} below the primary's {}; steps: {:?}",
                    step.address,
                    s + 1,
                    HS_GENERATED[k].0,
                    live[s][k],
                    live[primary][k],
                    plan.changes.iter().map(|s| &s.address).collect::<Vec<_>>()
                );
            }
        }
    }
    let second_round = plan
        .warnings
        .iter()
        .any(|w| w.message.contains("in a second round"));
    if !second_round {
        prop_assert_eq!(&live, &new.to_vec(), "the plan leaves values unchanged");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Raise, lower, both, restart-only, per node, 2-4 nodes, with and
    /// without a cascade: no order of the plan ever asks a standby to run
    /// with a hot-standby-sensitive value below its primary's.
    #[test]
    fn no_restart_order_leaves_a_standby_below_its_primary(
        nodes in prop::collection::vec(hs_node(), 2..=4),
        cascade in any::<bool>(),
    ) {
        let (old_cfg, old) = hs_config(&nodes, cascade, false);
        let (cfg, new) = hs_config(&nodes, cascade, true);
        let mut obs = builder::converged(&old_cfg);
        builder::use_quick_verifiers(&cfg, &mut obs);
        let plan = diff::plan(&cfg, &obs);
        prop_assert!(plan.blocked.is_empty(), "{:?}", plan.blocked);
        check_hot_standby_order(&cfg, &plan, &old, &new)?;
        check_plan(&cfg, &obs, &plan)?;
    }
}
