//! Issue 12, cases 5, 7 and 8, on hand-built observed states: a role that
//! cannot log in, custom settings, and what `status` and the plan show of
//! a standby that does not stream.

use pgrepl::gather::{Lsn, SlotFacts};
use pgrepl::status::{self, NodeStatus, Role};

use super::*;

fn node_status<'a>(st: &'a status::ClusterStatus, name: &str) -> &'a NodeStatus {
    st.nodes
        .iter()
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("no {name} in {st:#?}"))
}

fn warnings(plan: &Plan) -> String {
    plan.warnings
        .iter()
        .map(|w| w.message.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

// ---- case 5: a replication role that cannot log in is drift

#[test]
fn an_expired_replication_role_and_a_zero_connection_limit_are_drift() {
    let cfg = orders("");
    let mut obs = converged(&cfg);
    let roles = &mut server(&mut obs, "db1").roles;
    let repl = roles.get_mut("replicator").expect("replicator");
    repl.valid_until = Some("2000-01-01 00:00:00+00".into());
    repl.expired = true;
    let rewind = roles.get_mut("pgrepl_rewind").expect("rewind role");
    rewind.connection_limit = 0;
    let plan = diff::plan(&cfg, &obs);
    assert_eq!(
        steps(&plan),
        [
            "~ role.replicator update_role",
            "~ role.pgrepl_rewind update_role"
        ]
    );
    let repl = &plan.changes[0];
    assert_eq!(
        repl.before.as_deref(),
        Some("VALID UNTIL '2000-01-01 00:00:00+00' (expired)")
    );
    assert_eq!(repl.after.as_deref(), Some("VALID UNTIL 'infinity'"));
    assert!(repl.reason.contains("cannot log in"), "{}", repl.reason);
    assert!(
        matches!(
            repl.op,
            pgrepl::plan::Op::UpdateRole {
                attributes: true,
                password: false,
                grants: false,
                ..
            }
        ),
        "{:?}",
        repl.op
    );
    let rw = &plan.changes[1];
    assert_eq!(rw.before.as_deref(), Some("CONNECTION LIMIT 0"));
    assert_eq!(rw.after.as_deref(), Some("CONNECTION LIMIT -1"));
    assert!(rw.reason.contains("pg_rewind"), "{}", rw.reason);
    // The plan file's facts carry both: a saved plan goes stale on them.
    let facts = &plan.facts;
    assert!(
        facts["db1.role.replicator"].contains("valid_until=2000-01-01 00:00:00+00"),
        "{facts:#?}"
    );
    assert!(
        facts["db1.role.pgrepl_rewind"].contains("connection_limit=0"),
        "{facts:#?}"
    );
    check_rendering("issue12_role_cannot_log_in", &plan);
}

#[test]
fn any_expiry_is_drift_and_a_limit_is_only_when_below_what_replication_needs() {
    let cfg = orders("");
    // A future expiry stops the standbys on that day.
    let mut obs = converged(&cfg);
    let repl = server(&mut obs, "db1")
        .roles
        .get_mut("replicator")
        .expect("replicator");
    repl.valid_until = Some("2999-01-01 00:00:00+00".into());
    let plan = diff::plan(&cfg, &obs);
    assert_eq!(steps(&plan), ["~ role.replicator update_role"]);
    assert_eq!(
        plan.changes[0].before.as_deref(),
        Some("VALID UNTIL '2999-01-01 00:00:00+00'")
    );
    // 3 nodes: two standbys may each stream or copy (two connections).
    for (limit, drift) in [(-1, false), (4, false), (100, false), (3, true), (0, true)] {
        let mut obs = converged(&cfg);
        server(&mut obs, "db1")
            .roles
            .get_mut("replicator")
            .expect("replicator")
            .connection_limit = limit;
        let plan = diff::plan(&cfg, &obs);
        assert_eq!(!plan.changes.is_empty(), drift, "limit {limit}");
    }
    assert_eq!(pgrepl::desired::role_connections_needed(&cfg, true), 4);
    assert_eq!(pgrepl::desired::role_connections_needed(&cfg, false), 2);
}

#[test]
fn a_superuser_rewind_role_is_a_warning_and_not_a_change() {
    let cfg = orders("");
    let mut obs = converged(&cfg);
    let rewind = server(&mut obs, "db1")
        .roles
        .get_mut("pgrepl_rewind")
        .expect("rewind role");
    rewind.superuser = true;
    let plan = diff::plan(&cfg, &obs);
    assert!(plan.changes.is_empty(), "{:#?}", steps(&plan));
    let w = warnings(&plan);
    assert!(w.contains("role pgrepl_rewind is a SUPERUSER"), "{w}");
    assert!(
        w.contains("does not remove privileges it did not grant"),
        "{w}"
    );
    assert!(
        w.contains("ALTER ROLE \"pgrepl_rewind\" NOSUPERUSER"),
        "{w}"
    );
    assert!(plan.facts["db1.role.pgrepl_rewind"].contains("superuser=true"));
}

// ---- case 7: custom settings are set, and compared for real

fn custom(value: Option<&str>) -> (Config, Observed) {
    let cfg = orders(r#""myapp.foo" = "bar""#);
    let mut obs = converged(&cfg);
    for name in ["db1", "db2", "db3"] {
        let s = server(&mut obs, name);
        assert!(!s.settings.contains_key("myapp.foo"));
        s.custom_settings
            .insert("myapp.foo".into(), value.map(String::from));
    }
    (cfg, obs)
}

#[test]
fn a_custom_setting_that_is_not_set_is_set_on_every_node() {
    let (cfg, obs) = custom(None);
    let plan = diff::plan(&cfg, &obs);
    assert_eq!(
        steps(&plan),
        [
            "~ db1.setting.myapp.foo set_setting",
            "~ db1.service reload",
            "~ db2.setting.myapp.foo set_setting",
            "~ db2.service reload",
            "~ db3.setting.myapp.foo set_setting",
            "~ db3.service reload",
        ]
    );
    let s = &plan.changes[0];
    assert_eq!(s.before.as_deref(), Some("(not set)"));
    assert_eq!(s.after.as_deref(), Some("bar"));
    assert!(
        matches!(&s.op, pgrepl::plan::Op::SetSetting { name, sql_value, offline: None }
            if name == "myapp.foo" && sql_value == "'bar'"),
        "{:?}",
        s.op
    );
    assert!(!s.restart);
    assert!(
        !warnings(&plan).contains("does not exist"),
        "{}",
        warnings(&plan)
    );
    assert_eq!(plan.facts["db1.setting.myapp.foo"], "(not set)");
    check_rendering("issue12_custom_setting_not_set", &plan);
}

#[test]
fn a_custom_setting_is_equal_only_when_its_value_is() {
    let (cfg, obs) = custom(Some("bar"));
    let plan = diff::plan(&cfg, &obs);
    assert!(plan.changes.is_empty(), "{:#?}", steps(&plan));
    assert!(plan.warnings.is_empty(), "{}", warnings(&plan));
    assert_eq!(plan.facts["db2.setting.myapp.foo"], "bar");

    let (cfg, mut obs) = custom(Some("bar"));
    server(&mut obs, "db3")
        .custom_settings
        .insert("myapp.foo".into(), Some("baz".into()));
    let plan = diff::plan(&cfg, &obs);
    assert_eq!(
        steps(&plan),
        [
            "~ db3.setting.myapp.foo set_setting",
            "~ db3.service reload"
        ]
    );
    assert_eq!(plan.changes[0].before.as_deref(), Some("baz"));
}

#[test]
fn an_unquoted_custom_setting_says_to_quote_it_and_a_bad_name_is_refused() {
    let text = orders_text("myapp.foo = \"bar\"");
    let err = pgrepl::config::load_str(
        &text,
        std::path::Path::new("pgrepl.toml"),
        &crate::config::FakeSources::default(),
    )
    .map(|_| ())
    .expect_err("a table `myapp` is not a setting");
    let err = err.to_string();
    assert!(err.contains("unknown setting `myapp`"), "{err}");
    assert!(err.contains("quote its name: \"myapp.foo\" = ..."), "{err}");

    let text = orders_text("\"myapp.1foo\" = \"bar\"");
    let err = pgrepl::config::load_str(
        &text,
        std::path::Path::new("pgrepl.toml"),
        &crate::config::FakeSources::default(),
    )
    .map(|_| ())
    .expect_err("not a valid custom name");
    assert!(
        err.to_string()
            .contains("`myapp.1foo` is not a valid custom setting name"),
        "{err}"
    );
}

// ---- case 8: status and the plan show what a standby that does not stream costs

/// db3 stopped cleanly as a standby; its slot on db1 inactive, retaining 5 MB.
fn db3_stopped() -> (Config, Observed) {
    let cfg = orders("");
    let mut obs = converged(&cfg);
    let n = node(&mut obs, "db3");
    n.server = None;
    let files = n.files.as_mut().expect("files");
    files.running = false;
    if let Some(c) = files.control.as_mut() {
        c.state = "shut down in recovery".into();
    }
    let s1 = server(&mut obs, "db1");
    let slot: &mut SlotFacts = s1
        .slots
        .iter_mut()
        .find(|s| s.name == "db3")
        .expect("slot db3");
    slot.active = false;
    slot.retained_bytes = Some(5 << 20);
    s1.replication.retain(|r| r.application_name != "db3");
    (cfg, obs)
}

#[test]
fn a_stopped_standby_shows_its_slot_on_the_primary_with_the_wal_it_retains() {
    let (cfg, obs) = db3_stopped();
    let st = status::derive(&cfg, &obs);
    let n3 = node_status(&st, "db3");
    assert_eq!(n3.role, Role::Stopped);
    assert_eq!(n3.slot.as_deref(), Some("db3"));
    assert_eq!(n3.slot_wal_status.as_deref(), Some("reserved"));
    assert_eq!(n3.slot_retained_bytes, Some(5 << 20));
    assert!(
        n3.problems.iter().any(|p| p
            == "its slot db3 on db1 is inactive and retains 5.0 MB of WAL (wal_status reserved), more for as long as db3 does not stream"),
        "{:#?}",
        n3.problems
    );
    let table = status::render_table(&st);
    assert!(table.contains("db3 (reserved, 5.0 MB)"), "{table}");

    // The plan starts db3 and warns about the slot, with its size.
    let plan = diff::plan(&cfg, &obs);
    assert_eq!(steps(&plan), ["~ db3.service start"]);
    let w = warnings(&plan);
    assert!(
        w.contains(
            "slot db3 is inactive: db3 does not stream through it; it retains 5.0 MB of WAL"
        ),
        "{w}"
    );
}

#[test]
fn a_standby_whose_replay_is_paused_is_unhealthy() {
    let cfg = orders("");
    let mut obs = converged(&cfg);
    server(&mut obs, "db2").replay_paused = true;
    let st = status::derive(&cfg, &obs);
    let n2 = node_status(&st, "db2");
    assert_eq!(n2.role, Role::Standby);
    assert!(!n2.healthy);
    assert!(
        n2.problems
            .iter()
            .any(|p| p.contains("WAL replay is paused") && p.contains("pg_wal_replay_resume()")),
        "{:#?}",
        n2.problems
    );
    assert!(!st.healthy);
    assert!(node_status(&st, "db3").healthy);
}

#[test]
fn a_data_directory_with_junk_is_role_foreign() {
    let cfg = orders("");
    let mut obs = converged(&cfg);
    let n = node(&mut obs, "db2");
    n.server = None;
    let files = n.files.as_mut().expect("files");
    files.running = false;
    files.control = None;
    files.data_dir = pgrepl::gather::DataDir::Foreign;
    let st = status::derive(&cfg, &obs);
    let n2 = node_status(&st, "db2");
    assert_eq!(n2.role, Role::Foreign);
    assert_eq!(n2.role.as_str(), "foreign");
    assert!(!n2.healthy);
    assert!(
        serde_json::to_value(n2).expect("json")["role"] == "foreign",
        "{n2:?}"
    );
}

#[test]
fn before_a_failover_the_most_advanced_standby_is_not_called_diverged() {
    let cfg = load(&orders_text("").replace("primary = \"db1\"", "primary = \"db2\""));
    let mut obs = converged(&orders(""));
    cut(&mut obs, "db1");
    let ahead = server(&mut obs, "db2").receive_lsn.map(|l| Lsn(l.0 + 4096));
    let s3 = server(&mut obs, "db3");
    s3.receive_lsn = ahead;
    s3.replay_lsn = ahead;
    // The plan re-bases db3 once db2 is promoted (it holds WAL db2 lacks) ...
    let plan = diff::plan(&cfg, &obs);
    assert!(
        plan.changes.iter().any(|s| s.address == "db3.timeline"),
        "{:#?}",
        steps(&plan)
    );
    // ... but nothing diverged yet: db3 is a standby, the most advanced one.
    let st = status::derive(&cfg, &obs);
    let n3 = node_status(&st, "db3");
    assert_eq!(n3.role, Role::Standby, "{n3:#?}");
    assert!(
        !n3.problems.iter().any(|p| p.contains("diverged")),
        "{:#?}",
        n3.problems
    );
}

#[test]
fn a_failover_from_a_stopped_reachable_primary_does_not_call_it_unreachable() {
    let cfg = load(&orders_text("").replace("primary = \"db1\"", "primary = \"db2\""));
    let mut obs = converged(&orders(""));
    // db1 stopped while its own crash recovery ran: not a clean old
    // primary to finish a switchover with, but reachable.
    let n = node(&mut obs, "db1");
    n.server = None;
    let files = n.files.as_mut().expect("files");
    files.running = false;
    if let Some(c) = files.control.as_mut() {
        c.state = "in crash recovery".into();
    }
    for name in ["db2", "db3"] {
        server(&mut obs, name).wal_receiver = None;
    }
    let plan = diff::plan(&cfg, &obs);
    let promote = plan
        .changes
        .iter()
        .find(|s| s.address == "cluster.primary")
        .unwrap_or_else(|| panic!("{:#?} {:#?}", steps(&plan), plan.blocked));
    assert_eq!(promote.before.as_deref(), Some("db1 (not running)"));
    assert!(
        promote.reason.contains("the old primary is not running"),
        "{}",
        promote.reason
    );
    assert!(
        !promote.reason.contains("cannot be reached"),
        "{}",
        promote.reason
    );
    assert!(
        plan.needs_force
            .as_deref()
            .is_some_and(|m| m.contains("db1 is not running")),
        "{:?}",
        plan.needs_force
    );
}

#[test]
fn a_switchover_counts_what_the_candidate_has_not_replayed() {
    let cfg = load(&orders_text("").replace("primary = \"db1\"", "primary = \"db2\""));
    let mut obs = converged(&orders(""));
    // db2 received everything db1 wrote and replayed 4 MB less.
    let s2 = server(&mut obs, "db2");
    let received = s2.receive_lsn.expect("lsn");
    s2.replay_lsn = Some(Lsn(received.0 - (4 << 20)));
    let plan = diff::plan(&cfg, &obs);
    let s = plan
        .changes
        .iter()
        .find(|s| s.address == "cluster.primary")
        .unwrap_or_else(|| panic!("{:#?}", steps(&plan)));
    assert!(
        s.reason
            .contains("(lag now 0 B not received, 4.0 MB not replayed)"),
        "{}",
        s.reason
    );
}

// ---- case 9: what a rename or a removal leaves behind is said, and removed

/// A renamed cluster: the passfile and lock the former name left beside a
/// data directory go, last, after the standby's recovery settings name the
/// new passfile and were reloaded.
#[test]
fn a_former_cluster_names_files_are_removed_after_the_new_passfile_is_in_use() {
    let cfg = load(&orders_text("").replace("name = \"orders\"", "name = \"shop\""));
    let mut obs = converged(&cfg);
    let files = builder::files;
    files(&mut obs, "db1").stale_clusters = vec!["orders".into()];
    files(&mut obs, "db2").stale_clusters = vec!["orders".into()];
    files(&mut obs, "db2").passfile_sha256 = None;
    let plan = diff::plan(&cfg, &obs);
    assert_eq!(
        steps(&plan),
        [
            "~ db2.recovery write_recovery",
            "~ db2.service reload",
            "- db1.cluster_files.orders remove_cluster_files",
            "- db2.cluster_files.orders remove_cluster_files",
        ]
    );
    let step = &plan.changes[3];
    assert_eq!(
        step.op,
        pgrepl::plan::Op::RemoveClusterFiles {
            cluster: "orders".into(),
            paths: [
                "/var/lib/postgresql/15/.pgrepl-orders.pgpass",
                "/var/lib/postgresql/15/.pgrepl-orders.lock",
                "/var/lib/postgresql/15/.pgrepl-orders.lock.holder",
            ]
            .map(String::from)
            .to_vec(),
        }
    );
    let text = shown(&plan);
    assert!(
        text.contains("former cluster name: its passfile holds passwords"),
        "{text}"
    );
    // --target db2.cluster_files.orders brings the recovery change along.
    let targeted = plan
        .clone()
        .restrict_to(&["db2.cluster_files.orders".to_string()]);
    assert_eq!(
        steps(&targeted),
        [
            "~ db2.recovery write_recovery",
            "~ db2.service reload",
            "- db2.cluster_files.orders remove_cluster_files",
        ]
    );
}

/// A node taken out of the file keeps streaming through its slot: the plan
/// says so instead of staying silent about the slot it leaves behind.
#[test]
fn a_node_removed_from_the_file_that_still_streams_is_warned_about() {
    let all = orders("");
    let obs_all = converged(&all);
    let cfg = load(&orders_text("").replace("[nodes.db3]\nhost = \"10.0.2.12\"\n", ""));
    let mut obs = converged(&cfg);
    // db1 still serves db3 as before: its slot, its walsender.
    let was = obs_all.nodes["db1"].server.clone().expect("db1 server");
    let s = server(&mut obs, "db1");
    s.slots = was.slots.clone();
    s.replication = was.replication.clone();
    let plan = diff::plan(&cfg, &obs);
    assert!(plan.changes.is_empty(), "{:?}", steps(&plan));
    let w = warnings(&plan);
    assert!(
        w.contains("slot db3 is not in the file, yet a standby named db3 (from 10.0.2.12) streams through it"),
        "{w}"
    );
}

// ---- issue 17: majors

/// A standby must run its upstream's major: the plan refuses one that does
/// not, naming both versions; `status` shows every node's version.
#[test]
fn a_standby_of_another_major_than_its_upstream_is_refused_and_status_shows_versions() {
    let cfg = orders("");
    let mut obs = converged(&cfg);
    server(&mut obs, "db3").version_num = 180006;
    let plan = diff::plan(&cfg, &obs);
    let blocked: Vec<&str> = plan
        .blocked
        .iter()
        .filter(|b| b.node.as_deref() == Some("db3"))
        .map(|b| b.message.as_str())
        .collect();
    assert_eq!(
        blocked,
        [
            "runs PostgreSQL 18 but its upstream db1 runs PostgreSQL 15: streaming replication does not cross majors; upgrade one of them, or stream db3 from a node of its major"
        ]
    );
    assert!(
        plan.blocked
            .iter()
            .all(|b| b.node.as_deref() == Some("db3")),
        "{:?}",
        plan.blocked
    );
    let st = status::derive(&cfg, &obs);
    let versions: Vec<Option<&str>> = st.nodes.iter().map(|n| n.version.as_deref()).collect();
    let db1 = server(&mut obs, "db1").version_num;
    let db1 = format!("{}.{}", db1 / 10000, db1 % 10000);
    assert_eq!(
        versions,
        [Some(db1.as_str()), Some(db1.as_str()), Some("18.6")]
    );
    let table = status::render_table(&st);
    assert!(
        table
            .lines()
            .next()
            .is_some_and(|h| h.contains("ROLE     PG")),
        "{table}"
    );
}
