//! Poolers, pure: where each pooled database points, the steps a pooler's
//! drift plans, and a switchover that carries the poolers.

use pgrepl::config::Config;
use pgrepl::diff;
use pgrepl::gather::Observed;
use pgrepl::observed::pooler::{PoolDatabase, PoolerState};
use pgrepl::plan::Op;
use pgrepl::pooler;

use super::builder::{converged, cut, load, server};
use super::orders_text;

const POOLERS: &str = r#"
[pgbouncer]
[pgbouncer.databases]
app = { dbname = "appdb", to = "primary" }
app_ro = { dbname = "appdb", to = "standbys" }

[poolers.pgb1]
host = "10.0.2.20"
"#;

fn cfg(primary: &str) -> Config {
    load(&orders_text(POOLERS).replace("primary = \"db1\"", &format!("primary = \"{primary}\"")))
}

/// `obs` with pgb1 exactly as `cfg` wants it, unless `edit` changes it.
fn with_pooler(cfg: &Config, mut obs: Observed, edit: impl FnOnce(&mut PoolerState)) -> Observed {
    let want = pooler::desired(cfg, &obs, &mut Vec::new());
    let lines: Vec<String> = want.iter().map(|(d, t)| pooler::entry_line(d, t)).collect();
    let ini = format!(
        "[databases]\n{}\n[pgbouncer]\nlisten_port = 6432\n",
        pooler::render_block(&lines)
    );
    let mut state = PoolerState {
        name: "pgb1".into(),
        host: "10.0.2.20".into(),
        unreachable: None,
        ini: Some(ini),
        databases: Some(
            want.iter()
                .map(|(d, t)| PoolDatabase {
                    name: d.name.clone(),
                    host: t.host_list(),
                    port: t.port,
                    database: d.dbname.clone(),
                    paused: false,
                    disabled: false,
                })
                .collect(),
        ),
        errors: Vec::new(),
    };
    edit(&mut state);
    obs.poolers.insert("pgb1".into(), state);
    obs
}

fn pooler_steps(plan: &pgrepl::plan::Plan) -> Vec<String> {
    plan.changes
        .iter()
        .filter(|s| s.address.starts_with("pooler."))
        .map(|s| {
            format!(
                "{} {} {}",
                s.action.symbol(),
                s.address,
                s.after.clone().unwrap_or_default()
            )
        })
        .collect()
}

#[test]
fn the_read_only_target_is_the_streaming_standbys_else_the_primary() {
    let cfg = cfg("db1");
    let ro = |obs: &Observed| {
        let db = &cfg.pgbouncer.as_ref().expect("pgbouncer").databases[1];
        pooler::target(&cfg, obs, db, &mut Vec::new()).host_list()
    };
    let mut obs = converged(&cfg);
    assert_eq!(ro(&obs), "10.0.2.11,10.0.2.12");
    server(&mut obs, "db3").wal_receiver = None;
    assert_eq!(
        ro(&obs),
        "10.0.2.11",
        "a standby that does not stream leaves"
    );
    cut(&mut obs, "db2");
    assert_eq!(ro(&obs), "10.0.2.10", "no standby streams: the primary");
}

#[test]
fn a_matching_pooler_plans_nothing_and_each_drift_plans_its_step() {
    let cfg = cfg("db1");
    let plan = diff::plan(&cfg, &with_pooler(&cfg, converged(&cfg), |_| {}));
    assert!(plan.is_empty(), "{:?}", plan.changes);

    let paused = with_pooler(&cfg, converged(&cfg), |p| {
        p.databases.as_mut().expect("rows")[0].paused = true;
    });
    assert_eq!(
        pooler_steps(&diff::plan(&cfg, &paused)),
        ["~ pooler.pgb1.service resume app"]
    );

    let reloaded_elsewhere = with_pooler(&cfg, converged(&cfg), |p| {
        p.databases.as_mut().expect("rows")[0].host = "10.0.2.12".into();
    });
    assert_eq!(
        pooler_steps(&diff::plan(&cfg, &reloaded_elsewhere)),
        ["~ pooler.pgb1.service reload"]
    );

    let edited = with_pooler(&cfg, converged(&cfg), |p| {
        let ini = p.ini.take().expect("ini");
        p.ini = Some(ini.replace("app = host=10.0.2.10", "app = host=10.0.2.12"));
        p.databases.as_mut().expect("rows")[0].host = "10.0.2.12".into();
    });
    let plan = diff::plan(&cfg, &edited);
    assert_eq!(
        pooler_steps(&plan),
        ["~ pooler.pgb1.databases ", "~ pooler.pgb1.service reload"]
    );
    let diff = plan.changes[0].diff.as_deref().expect("a diff");
    assert!(
        diff.contains("-app = host=10.0.2.12") && diff.contains("+app = host=10.0.2.10"),
        "{diff}"
    );

    let gone = with_pooler(&cfg, converged(&cfg), |p| {
        p.unreachable = Some(pgrepl::gather::UnreachableInfo {
            kind: pgrepl::gather::Unreachable::Timeout,
            message: "no answer within 3s".into(),
        });
    });
    let plan = diff::plan(&cfg, &gone);
    assert!(pooler_steps(&plan).is_empty());
    assert_eq!(plan.blocked.len(), 1, "{:?}", plan.blocked);
    assert_eq!(plan.blocked[0].node.as_deref(), Some("pgb1"));
}

#[test]
fn a_switchover_pauses_the_read_write_pools_and_the_poolers_follow_it() {
    let before = cfg("db1");
    let obs = with_pooler(&before, converged(&before), |_| {});
    let plan = diff::plan(&cfg("db2"), &obs);
    let at = plan
        .changes
        .iter()
        .position(|s| matches!(s.op, Op::Switchover { .. }))
        .expect("a switchover");
    let Op::Switchover { poolers, .. } = &plan.changes[at].op else {
        unreachable!()
    };
    assert_eq!(poolers.len(), 1);
    assert_eq!(poolers[0].pause, ["app"]);
    assert!(
        poolers[0]
            .block
            .contains("app = host=10.0.2.11 port=5432 dbname=appdb")
    );
    assert!(
        plan.changes[at].reason.contains("PAUSEd"),
        "{}",
        plan.changes[at].reason
    );
    // The pooler's own steps come right after it.
    assert_eq!(plan.changes[at + 1].address, "pooler.pgb1.databases");
    assert_eq!(plan.changes[at + 2].address, "pooler.pgb1.service");
    assert!(plan.changes[at + 1].reason.contains("known after apply"));
}
