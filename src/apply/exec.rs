//! One executor per `Op`. Each re-reads the fact its step depends on right
//! before acting and does nothing when the work is already done, so every
//! step is safe to run twice.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use tokio_postgres::Client;

use crate::config::{Config, Node, Service};
use crate::desired::{self, HBA_BEGIN};
use crate::diff::sql_literal;
use crate::node::{Node as Remote, scripts};
use crate::plan::{Op, RoleKind, Step};
use crate::scram;
use crate::transport::NodeSession;

/// How long a standby may take to stream after it starts.
pub const STREAM_WAIT: Duration = Duration::from_secs(60);
/// How long a base backup may take.
pub const BASE_BACKUP_LIMIT: Duration = Duration::from_secs(6 * 3600);
/// How long pg_ctl may wait for a start, stop or restart.
pub const PG_CTL_WAIT_S: u64 = 120;

pub struct Ctx<'a> {
    pub cfg: &'a Config,
    pub node: &'a Node,
    pub session: &'a mut NodeSession,
    /// The other node of a two-node step (switchover: the old primary;
    /// re-base: the source).
    pub peer: Option<(&'a Node, &'a mut NodeSession)>,
    /// Progress lines (base backup percentage) for the operator.
    pub progress: &'a (dyn Fn(&str) + Sync),
}

impl Ctx<'_> {
    async fn client(&mut self) -> anyhow::Result<Client> {
        let pg = &self.node.postgres;
        self.session.pg_client(pg.port, &pg.socket_dir).await
    }

    /// This step's node, reached through its session.
    fn here(&self) -> Remote<'_> {
        Remote::new(self.node, self.session)
    }

    async fn run_ok(&self, argv: &[&str], what: &str) -> anyhow::Result<String> {
        self.here().run_ok(argv, what).await
    }

    async fn run_stdin_ok(
        &self,
        argv: &[&str],
        stdin: &[u8],
        what: &str,
    ) -> anyhow::Result<String> {
        self.here().run_stdin_ok(argv, stdin, what).await
    }

    fn log_file(&self) -> String {
        log_file_of(self.node)
    }

    fn bin(&self, name: &str) -> String {
        format!("{}/{name}", self.node.postgres.bin_dir)
    }
}

/// Executes one step on its node.
pub async fn execute(ctx: &mut Ctx<'_>, step: &Step) -> anyhow::Result<String> {
    match &step.op {
        Op::SetSetting {
            name,
            sql_value,
            offline: None,
        } => set_setting(ctx, name, sql_value).await,
        Op::SetSetting {
            name,
            offline: Some(value),
            ..
        } => set_setting_offline(ctx, name, value).await,
        Op::Reload => reload(ctx).await,
        Op::Restart {
            catch_up_with: None,
        } => restart(ctx).await,
        Op::Restart {
            catch_up_with: Some(primary),
        } => {
            let caught_up = catch_up(ctx, primary).await?;
            let restarted = restart(ctx).await?;
            Ok(format!("{caught_up}; {restarted}"))
        }
        Op::Start {
            once_with,
            catch_up_with,
        } if !once_with.is_empty() => {
            let Some(primary) = catch_up_with else {
                bail!("a start with other values once needs the primary to catch up with");
            };
            start_once_with(ctx, once_with, primary).await
        }
        Op::Start { .. } => start(ctx).await,
        Op::WriteHba { path, content } => write_hba(ctx, path, content).await,
        Op::CreateRole { name, kind } | Op::UpdateRole { name, kind, .. } => {
            ensure_role(ctx, name, *kind).await
        }
        Op::CreateSlot { name } => create_slot(ctx, name).await,
        Op::BaseBackup { upstream, slot } => base_backup(ctx, upstream, slot.as_deref()).await,
        Op::WriteRecovery {
            primary_conninfo,
            primary_slot_name,
            passfile,
        } => write_recovery(ctx, primary_conninfo, primary_slot_name, passfile).await,
        Op::DropSlot { name } => drop_slot(ctx, name).await,
        Op::RemoveClusterFiles { cluster, paths } => {
            remove_cluster_files(ctx, cluster, paths).await
        }
        Op::Switchover {
            from,
            synchronous_standby_names,
        } => switchover(ctx, from, synchronous_standby_names.as_deref()).await,
        Op::Promote {
            old,
            synchronous_standby_names,
        } => promote(ctx, old, synchronous_standby_names.as_deref()).await,
        Op::Rebase {
            source,
            rewind,
            keep_as,
        } => rebase(ctx, source, *rewind, keep_as).await,
    }
}

/// GUC names come from the catalog or are `ext.name`: plain words only.
fn guc_ident(name: &str) -> anyhow::Result<&str> {
    let ok = !name.is_empty()
        && name.split('.').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
    if ok {
        Ok(name)
    } else {
        bail!("refusing to set a setting named {name:?}")
    }
}

/// A role name as an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn set_setting(ctx: &mut Ctx<'_>, name: &str, sql_value: &str) -> anyhow::Result<String> {
    let name = guc_ident(name)?;
    let client = ctx.client().await?;
    // Before PostgreSQL 17, ALTER SYSTEM refuses a custom name that this
    // session has no placeholder for ("unrecognized configuration
    // parameter"): a SET makes one, and RESET leaves the session's value to
    // the files again, so the next reload sets it like any other session's.
    let custom = crate::guc::is_custom_name(name);
    if custom {
        client
            .simple_query(&format!("SET {name} = {sql_value}"))
            .await
            .with_context(|| format!("SET {name}"))?;
    }
    // ALTER SYSTEM cannot run in a transaction block and takes no parameters:
    // sent alone, with the literal quoted by the plan.
    let altered = client
        .simple_query(&format!("ALTER SYSTEM SET {name} = {sql_value}"))
        .await
        .with_context(|| format!("ALTER SYSTEM SET {name}"));
    if custom {
        client
            .simple_query(&format!("RESET {name}"))
            .await
            .with_context(|| format!("RESET {name}"))?;
    }
    altered?;
    Ok(format!("ALTER SYSTEM SET {name} = {sql_value}"))
}

/// A setting of a stopped server, written into postgresql.auto.conf as
/// ALTER SYSTEM would (which needs a running server).
async fn set_setting_offline(ctx: &mut Ctx<'_>, name: &str, value: &str) -> anyhow::Result<String> {
    let name = guc_ident(name)?;
    if server_runs(ctx.here()).await? {
        bail!("the server runs now, so {name} is not written offline; plan again");
    }
    write_auto_conf_offline(ctx.here(), &[(name, value)], false).await?;
    Ok(format!(
        "{name} = {} in postgresql.auto.conf (server stopped)",
        crate::gather::parse::conf_quote(value)
    ))
}

/// `pg_ctl status`: whether a postmaster serves the node's data directory.
async fn server_runs(node: Remote<'_>) -> anyhow::Result<bool> {
    let pg_ctl = node.bin("pg_ctl");
    Ok(node
        .run(&[&pg_ctl, "status", "-D", &node.spec.postgres.data_dir])
        .await?
        .code
        == Some(0))
}

/// Writes settings into a stopped server's postgresql.auto.conf, each
/// value quoted by the one rule PostgreSQL's config parser reads back.
async fn write_auto_conf_offline(
    remote: Remote<'_>,
    settings: &[(&str, &str)],
    standby_signal: bool,
) -> anyhow::Result<()> {
    let names = settings
        .iter()
        .map(|(n, _)| guc_ident(n).map(|n| n.replace('.', "\\.")))
        .collect::<anyhow::Result<Vec<_>>>()?
        .join("|");
    let quoted: Vec<(String, String)> = settings
        .iter()
        .map(|(n, v)| (n.to_string(), crate::gather::parse::conf_quote(v)))
        .collect();
    let mut args: Vec<&str> = vec![
        &remote.spec.postgres.data_dir,
        if standby_signal { "1" } else { "0" },
        &names,
    ];
    for (n, v) in &quoted {
        args.push(n);
        args.push(v);
    }
    let out = remote.script(scripts::AUTO_CONF_OFFLINE, &args).await?;
    if !out.success() {
        bail!(
            "{}: writing postgresql.auto.conf failed ({}): {}",
            remote.name(),
            out.exit(),
            out.stderr.trim()
        );
    }
    Ok(())
}

async fn reload(ctx: &mut Ctx<'_>) -> anyhow::Result<String> {
    let client = ctx.client().await?;
    check_config_files(&client).await?;
    client.simple_query("SELECT pg_reload_conf()").await?;
    Ok("pg_reload_conf()".into())
}

/// pg_reload_conf() returns true even when the files are invalid: look first.
async fn check_config_files(client: &Client) -> anyhow::Result<()> {
    let rows = client
        .query(
            "SELECT coalesce(sourcefile, '') || ':' || coalesce(sourceline, 0) || ': ' || error FROM pg_file_settings WHERE error IS NOT NULL AND error <> 'setting could not be applied'
             UNION ALL
             SELECT 'pg_hba.conf:' || coalesce(line_number, 0) || ': ' || error FROM pg_hba_file_rules WHERE error IS NOT NULL",
            &[],
        )
        .await?;
    if !rows.is_empty() {
        let errs: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        bail!(
            "configuration files are invalid, not reloading: {}",
            errs.join("; ")
        );
    }
    Ok(())
}

/// Restarts the node; the standbys that streamed from it before stream
/// again when this returns (at most `STREAM_WAIT`), so "no changes" at the
/// end of apply is the truth and not a cluster still reconnecting.
async fn restart(ctx: &mut Ctx<'_>) -> anyhow::Result<String> {
    const STREAMING: &str = "SELECT coalesce(array_agg(application_name ORDER BY application_name), '{}') FROM pg_stat_replication WHERE state = 'streaming'";
    let before: Vec<String> = match ctx.client().await {
        Ok(c) => bounded(
            QUERY_LIMIT,
            "reading pg_stat_replication",
            c.query_one(STREAMING, &[]),
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let done = service(ctx, "restart").await?;
    if before.is_empty() {
        return Ok(done);
    }
    let deadline = Instant::now() + STREAM_WAIT;
    let mut now: Vec<String> = Vec::new();
    while Instant::now() < deadline {
        if let Ok(c) = ctx.client().await
            && let Ok(r) = bounded(
                QUERY_LIMIT,
                "reading pg_stat_replication",
                c.query_one(STREAMING, &[]),
            )
            .await
        {
            now = r.get(0);
            if before.iter().all(|b| now.contains(b)) {
                return Ok(format!("{done}; {} stream again", before.join(", ")));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let missing: Vec<&String> = before.iter().filter(|b| !now.contains(b)).collect();
    bail!(
        "restarted, but {missing:?} did not stream from it again within {}s; check their logs, then run apply again",
        STREAM_WAIT.as_secs()
    )
}

async fn service(ctx: &mut Ctx<'_>, verb: &str) -> anyhow::Result<String> {
    control(ctx.here(), verb).await
}

/// Starts, stops or restarts PostgreSQL on `node` through its `service`;
/// the one place that knows pg_ctl, systemd and pg_ctlcluster.
///
/// With pg_ctl, a start does not use `-w` (which looks ten times a second):
/// pgrepl tries a connection every 20 ms instead, and returns once the
/// server accepts it (a hot standby: once it is consistent).
async fn control(remote: Remote<'_>, verb: &str) -> anyhow::Result<String> {
    let node = remote.spec;
    let pg = &node.postgres;
    let wait = PG_CTL_WAIT_S.to_string();
    let log = log_file_of(node);
    let argv: Vec<&str> = match &pg.service {
        // -l: without it the server keeps the SSH channel open and the command never returns.
        Service::PgCtl => scripts::PG_CTL.argv(&[&pg.bin_dir, &pg.data_dir, &wait, verb, &log]),
        Service::Systemd(unit) => vec!["sudo", "-n", "systemctl", verb, unit],
        Service::PgCtlCluster(c) => {
            let (v, n) = c.split_once('/').unwrap_or((c, "main"));
            if verb == "start" {
                vec!["pg_ctlcluster", v, n, verb, "--", "-w", "-t", &wait]
            } else {
                vec![
                    "pg_ctlcluster",
                    v,
                    n,
                    verb,
                    "-m",
                    "fast",
                    "--",
                    "-w",
                    "-t",
                    &wait,
                ]
            }
        }
    };
    let out = remote
        .run_with_stdin(&argv, None, Duration::from_secs(PG_CTL_WAIT_S + 30))
        .await?;
    let mut failure = (!out.success()).then(|| {
        format!(
            "{}: {verb} failed ({}): {}",
            node.name,
            out.exit(),
            out.stderr.trim()
        )
    });
    if failure.is_none() && matches!(pg.service, Service::PgCtl) && verb != "stop" {
        failure = wait_accepting(remote).await.err().map(|e| format!("{e:#}"));
    }
    if let Some(failure) = failure {
        let tail = remote
            .run(&["tail", "-n", "15", &log])
            .await
            .map(|o| o.stdout)
            .unwrap_or_default();
        bail!(
            "{failure}{}",
            if tail.is_empty() {
                String::new()
            } else {
                format!("\nlast lines of {log}:\n{tail}")
            }
        );
    }
    let how = match &pg.service {
        Service::PgCtl => format!("{}/pg_ctl {verb} -D {}", pg.bin_dir, pg.data_dir),
        _ => argv.join(" "),
    };
    Ok(format!("{verb} ({how})"))
}

/// Polls every 20 ms until the server accepts a connection, for at most
/// `PG_CTL_WAIT_S`; every half second, checks that the postmaster still
/// lives, so a server that fails to start is reported at once.
async fn wait_accepting(remote: Remote<'_>) -> anyhow::Result<()> {
    let node = remote.spec;
    let pg = &node.postgres;
    let pg_ctl = remote.bin("pg_ctl");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(PG_CTL_WAIT_S);
    let mut last_check = started;
    let mut last_error = String::new();
    while Instant::now() < deadline {
        match remote.pg_client().await {
            Ok(client) if client.simple_query("SELECT 1").await.is_ok() => {
                // The server that answered is the one just started (another
                // cluster on the same socket would answer too).
                let status = remote.run(&[&pg_ctl, "status", "-D", &pg.data_dir]).await?;
                if status.code == Some(0) {
                    return Ok(());
                }
                bail!(
                    "{}: a server answers on {}/.s.PGSQL.{}, but PostgreSQL on {} is not running",
                    node.name,
                    pg.socket_dir,
                    pg.port,
                    pg.data_dir
                );
            }
            Ok(_) => {}
            Err(e) => last_error = format!("{:#}", e.root_cause()),
        }
        if last_check.elapsed() >= Duration::from_millis(500) {
            last_check = Instant::now();
            let status = remote.run(&[&pg_ctl, "status", "-D", &pg.data_dir]).await?;
            if matches!(status.code, Some(3) | Some(4)) {
                bail!(
                    "{}: PostgreSQL exited while starting ({last_error})",
                    node.name
                );
            }
        }
        // Tight at first; each refused attempt is a line in the server's log.
        let pause = if started.elapsed() < Duration::from_secs(2) {
            20
        } else {
            250
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    bail!(
        "{}: PostgreSQL did not accept connections within {PG_CTL_WAIT_S}s ({last_error})",
        node.name
    )
}

async fn start(ctx: &mut Ctx<'_>) -> anyhow::Result<String> {
    let pg = &ctx.node.postgres;
    let check = ctx
        .run_ok(
            &scripts::STATUS.argv(&[&pg.bin_dir, &pg.data_dir]),
            "checking whether PostgreSQL runs",
        )
        .await?;
    let mut words = check.split_whitespace();
    let running = words.next() == Some("0");
    let is_standby = words.next() == Some("standby");
    // Re-checked right before acting: a node the file does not name primary
    // never starts without standby.signal, or it would run read-write.
    if !running && !is_standby && ctx.node.name != ctx.cfg.cluster.primary {
        bail!(
            "{} is not the primary in the file and has no standby.signal: starting it would make a second primary; plan again (its recovery settings are written first)",
            ctx.node.name
        );
    }
    let msg = if running {
        "already running".to_string()
    } else {
        service(ctx, "start").await?
    };
    // A standby is done when it streams; a diverged one never does.
    if is_standby {
        wait_streaming(ctx).await?;
        return Ok(format!("{msg}; streaming"));
    }
    Ok(msg)
}

/// How long a standby may take to replay its primary's WAL up to the
/// primary's position before a restart.
const CATCH_UP_WAIT: Duration = Duration::from_secs(120);

/// Before a standby restarts with a lower hot-standby-sensitive value: waits
/// until it has replayed `primary`'s WAL past `primary`'s parameter change
/// and makes a restartpoint past it, so that neither this start nor a later
/// one compares the lower value with the primary's old one.
///
/// The parameter change is written when the primary starts: a checkpoint of
/// the primary that began after its start is past it (else pgrepl runs a
/// CHECKPOINT there). The standby replays the primary's WAL up to the
/// primary's current position (which includes that checkpoint), then a
/// CHECKPOINT on the standby makes a restartpoint whose redo is past it.
async fn catch_up(ctx: &mut Ctx<'_>, primary: &str) -> anyhow::Result<String> {
    let me = ctx.node.name.clone();
    let standby = ctx.client().await?;
    if !in_recovery(&standby).await? {
        return Ok(format!("{me} is not in recovery: nothing to catch up with"));
    }
    let Some((pnode, psession)) = ctx.peer.take() else {
        bail!("{me}: waiting for {primary}'s WAL needs a connection to {primary}");
    };
    let pg = &pnode.postgres;
    let pclient = psession
        .pg_client(pg.port, &pg.socket_dir)
        .await
        .with_context(|| {
            format!("{me} waits for {primary}'s WAL before its restart, but {primary} cannot be reached over SQL")
        })?;
    if in_recovery(&pclient).await? {
        bail!("{primary} is not a primary any more; plan again");
    }
    const PRIMARY_CHECKPOINT: &str = "SELECT redo_lsn::text, checkpoint_time > pg_postmaster_start_time() FROM pg_control_checkpoint()";
    let row = bounded(
        QUERY_LIMIT,
        "pg_control_checkpoint()",
        pclient.query_one(PRIMARY_CHECKPOINT, &[]),
    )
    .await?;
    let mut redo: String = row.get(0);
    if !row.get::<_, bool>(1) {
        bounded(
            CHECKPOINT_LIMIT,
            &format!("CHECKPOINT on {primary}"),
            pclient.simple_query("CHECKPOINT"),
        )
        .await?;
        redo = bounded(
            QUERY_LIMIT,
            "pg_control_checkpoint()",
            pclient.query_one(PRIMARY_CHECKPOINT, &[]),
        )
        .await?
        .get(0);
    }
    let target: String = bounded(
        QUERY_LIMIT,
        "pg_current_wal_lsn()",
        pclient.query_one("SELECT pg_current_wal_lsn()::text", &[]),
    )
    .await?
    .get(0);
    drop(pclient);
    let deadline = Instant::now() + CATCH_UP_WAIT;
    loop {
        let row = bounded(
            QUERY_LIMIT,
            "pg_last_wal_replay_lsn()",
            standby.query_one(
                &format!(
                    "SELECT coalesce(pg_last_wal_replay_lsn() >= '{target}'::pg_lsn, false), coalesce(pg_last_wal_replay_lsn()::text, 'none'), pg_get_wal_replay_pause_state(), coalesce((SELECT status FROM pg_stat_wal_receiver), 'no WAL receiver')"
                ),
                &[],
            ),
        )
        .await?;
        if row.get::<_, bool>(0) {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "{me} did not replay {primary}'s WAL up to {target} within {}s (replayed {}, replay {}, {}); it is not restarted: a standby restarted before it replays {primary}'s parameter change refuses a value below {primary}'s old one",
                CATCH_UP_WAIT.as_secs(),
                row.get::<_, String>(1),
                row.get::<_, String>(2),
                row.get::<_, String>(3)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The restartpoint: CHECKPOINT on a standby makes one at the last
    // checkpoint record it replayed, which may take a moment to be seen.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        bounded(
            CHECKPOINT_LIMIT,
            &format!("CHECKPOINT on {me}"),
            standby.simple_query("CHECKPOINT"),
        )
        .await?;
        let row = bounded(
            QUERY_LIMIT,
            "pg_control_checkpoint()",
            standby.query_one(
                &format!(
                    "SELECT redo_lsn >= '{redo}'::pg_lsn, redo_lsn::text FROM pg_control_checkpoint()"
                ),
                &[],
            ),
        )
        .await?;
        let mine: String = row.get(1);
        if row.get::<_, bool>(0) {
            return Ok(format!(
                "replayed {primary}'s WAL to {target}; restartpoint at {mine} (past {primary}'s checkpoint at {redo})"
            ));
        }
        if Instant::now() >= deadline {
            bail!(
                "{me}'s restartpoint stays at {mine}, before {primary}'s checkpoint at {redo}; it is not restarted (it could refuse to start with a value below {primary}'s old one)"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// pg_ctl's `-o` for a one-time start: `-c name=value` for each, and the
/// marker that makes pgrepl's next restart a plain start.
fn once_options(once_with: &std::collections::BTreeMap<String, String>) -> anyhow::Result<String> {
    let mut opts = Vec::new();
    for (name, value) in once_with {
        let name = guc_ident(name)?;
        if value.is_empty() || !value.chars().all(|c| c.is_ascii_digit()) {
            bail!("refusing to start with {name} = {value:?}: not a number");
        }
        opts.push(format!("-c {name}={value}"));
    }
    opts.push("-c pgrepl.once=1".into());
    Ok(opts.join(" "))
}

/// Repairs a standby whose pg_control records higher values of its primary
/// than its own (it refuses to start): starts it once with the recorded
/// values, lets it replay the primary's parameter change, makes a
/// restartpoint, stops it, and starts it with its own values.
async fn start_once_with(
    ctx: &mut Ctx<'_>,
    once_with: &std::collections::BTreeMap<String, String>,
    primary: &str,
) -> anyhow::Result<String> {
    let me = ctx.node.name.clone();
    let pg = &ctx.node.postgres;
    if server_runs(ctx.here()).await? {
        return start(ctx).await;
    }
    let sig = format!("{}/standby.signal", pg.data_dir);
    if ctx.here().run(&["test", "-e", &sig]).await?.code != Some(0) {
        bail!("{me} has no standby.signal: not starting it; plan again");
    }
    let opts = once_options(once_with)?;
    let shown = once_with
        .iter()
        .map(|(n, v)| format!("{n} = {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let wait = PG_CTL_WAIT_S.to_string();
    let log = ctx.log_file();
    let argv: Vec<&str> = match &pg.service {
        Service::PgCtl => {
            scripts::PG_CTL.argv(&[&pg.bin_dir, &pg.data_dir, &wait, "start-once", &log, &opts])
        }
        Service::PgCtlCluster(c) => {
            let (v, n) = c.split_once('/').unwrap_or((c, "main"));
            vec![
                "pg_ctlcluster",
                v,
                n,
                "start",
                "--",
                "-w",
                "-t",
                &wait,
                "-o",
                &opts,
            ]
        }
        Service::Systemd(unit) => bail!(
            "{me} needs to start once with {shown} (its pg_control records these values of {primary}), which systemd unit {unit} cannot pass; start it by hand once with `pg_ctl start -D {} -o '{opts}'`, wait until it replays {primary}'s WAL, run CHECKPOINT on it, stop it, and apply again",
            pg.data_dir
        ),
    };
    let out = ctx
        .here()
        .run_with_stdin(&argv, None, Duration::from_secs(PG_CTL_WAIT_S + 30))
        .await?;
    let mut failure = (!out.success()).then(|| {
        format!(
            "{me}: start with {shown} failed (exit {:?}): {}",
            out.code,
            out.stderr.trim()
        )
    });
    if failure.is_none() && matches!(pg.service, Service::PgCtl) {
        failure = wait_accepting(ctx.here())
            .await
            .err()
            .map(|e| format!("{e:#}"));
    }
    if let Some(failure) = failure {
        let tail = ctx
            .here()
            .run(&["tail", "-n", "15", &log])
            .await
            .map(|o| o.stdout)
            .unwrap_or_default();
        bail!("{failure}\nlast lines of {log}:\n{tail}");
    }
    (ctx.progress)(&format!("started once with {shown}"));
    let caught_up = catch_up(ctx, primary).await?;
    (ctx.progress)(&caught_up);
    // Whether its own values are now at or above what pg_control records:
    // not yet when the primary still runs with the higher value (its
    // lowering comes later); it then keeps running with the recorded values
    // and apply's next round restarts it, after the primary's.
    // pg_control's values are not in SQL: pg_controldata reads them from
    // the running server's file.
    let recorded = controldata(ctx.here()).await?.recorded_settings;
    let client = ctx.client().await?;
    // The values the next start takes: the files' last line for each name.
    let rows = bounded(
        QUERY_LIMIT,
        "pg_file_settings",
        client.query(
            "SELECT name, setting FROM pg_file_settings WHERE error IS NULL OR error = 'setting could not be applied' ORDER BY seqno",
            &[],
        ),
    )
    .await?;
    drop(client);
    let mut configured: std::collections::HashMap<String, String> = Default::default();
    for r in rows {
        configured.insert(r.get(0), r.get(1));
    }
    let still_low: Vec<String> = recorded
        .iter()
        .filter(|(n, rec)| {
            configured
                .get(n.as_str())
                .and_then(|v| v.trim().parse::<i64>().ok())
                .is_some_and(|v| v < **rec)
        })
        .map(|(n, rec)| format!("{n} = {rec}"))
        .collect();
    if !still_low.is_empty() {
        return Ok(format!(
            "started once with {shown}; {caught_up}; {primary} still records {}, so {me} keeps running with these values until {primary} lowers them (apply's next round restarts it)",
            still_low.join(", ")
        ));
    }
    control(ctx.here(), "stop").await?;
    let started = start(ctx).await?;
    Ok(format!(
        "started once with {shown}; {caught_up}; stopped; {started} with its own values"
    ))
}

/// Polls pg_stat_wal_receiver every 20 ms until it streams, or fails with the server's log.
pub async fn wait_streaming(ctx: &mut Ctx<'_>) -> anyhow::Result<()> {
    let deadline = Instant::now() + STREAM_WAIT;
    let mut last = String::from("no WAL receiver");
    // One connection for the whole wait, opened again only if it breaks.
    let mut client = None;
    while Instant::now() < deadline {
        if client.is_none() {
            client = ctx.client().await.ok();
        }
        if let Some(c) = &client {
            match c
                .query("SELECT status FROM pg_stat_wal_receiver", &[])
                .await
            {
                Ok(rows) => match rows.first().map(|r| r.get::<_, String>(0)) {
                    Some(s) if s == "streaming" => return Ok(()),
                    Some(s) => last = format!("WAL receiver {s}"),
                    None => last = "no WAL receiver".into(),
                },
                Err(_) => client = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = ctx.log_file();
    let tail = ctx
        .here()
        .run(&["tail", "-n", "10", &log])
        .await
        .map(|o| o.stdout)
        .unwrap_or_default();
    bail!(
        "the standby did not stream within {}s ({last}); last lines of {log}:\n{tail}",
        STREAM_WAIT.as_secs()
    )
}

async fn write_hba(ctx: &mut Ctx<'_>, path: &str, content: &str) -> anyhow::Result<String> {
    if !content.lines().any(|l| l.starts_with(HBA_BEGIN)) {
        bail!("refusing to write a pg_hba.conf without pgrepl's block");
    }
    let current = ctx.run_ok(&["cat", path], "reading pg_hba.conf").await?;
    if current == content {
        return Ok("already in place".into());
    }
    ctx.run_stdin_ok(
        &scripts::WRITE_FILE.argv(&[path]),
        content.as_bytes(),
        "writing pg_hba.conf",
    )
    .await?;
    // pg_hba_file_rules reads the file on disk: validate before any reload.
    let client = ctx.client().await?;
    let rows = client
        .query(
            "SELECT coalesce(line_number, 0), error FROM pg_hba_file_rules WHERE error IS NOT NULL",
            &[],
        )
        .await?;
    if !rows.is_empty() {
        let errs: Vec<String> = rows
            .iter()
            .map(|r| format!("line {}: {}", r.get::<_, i32>(0), r.get::<_, String>(1)))
            .collect();
        let bak = format!("{path}.pgrepl-bak");
        ctx.run_ok(
            &["mv", "-f", &bak, path],
            "restoring the previous pg_hba.conf",
        )
        .await?;
        bail!(
            "PostgreSQL rejects the new pg_hba.conf ({}); the previous file is back in place and nothing was reloaded",
            errs.join("; ")
        );
    }
    Ok(format!("wrote {path} (previous kept as {path}.pgrepl-bak)"))
}

async fn ensure_role(ctx: &mut Ctx<'_>, name: &str, kind: RoleKind) -> anyhow::Result<String> {
    let password = match kind {
        RoleKind::Replication => ctx.cfg.replication.password.expose().to_string(),
        RoleKind::Rewind => ctx
            .cfg
            .rewind
            .as_ref()
            .map(|r| r.password.expose().to_string())
            .ok_or_else(|| anyhow!("no [rewind] section in the cluster file"))?,
    };
    let client = ctx.client().await?;
    let row = client
        .query_opt(
            "SELECT rolcanlogin, rolreplication, rolpassword,
               rolvaliduntil IS NOT NULL AND rolvaliduntil <> 'infinity', rolconnlimit
             FROM pg_authid WHERE rolname = $1",
            &[&name],
        )
        .await?;
    let ident = quote_ident(name);
    let attrs = match kind {
        RoleKind::Replication => "LOGIN REPLICATION",
        RoleKind::Rewind => "LOGIN",
    };
    let mut done = Vec::new();
    match row {
        None => {
            // The verifier is computed here: the clear password never reaches the server.
            let verifier = scram::new_verifier(&password);
            client
                .simple_query(&format!(
                    "CREATE ROLE {ident} {attrs} PASSWORD {}",
                    sql_literal(&verifier)
                ))
                .await
                .with_context(|| format!("CREATE ROLE {ident}"))?;
            done.push("created");
        }
        Some(r) => {
            let (login, repl, expires, limit): (bool, bool, bool, i32) =
                (r.get(0), r.get(1), r.get(3), r.get(4));
            let replication = kind == RoleKind::Replication;
            let mut clauses = Vec::new();
            if !login || (replication && !repl) {
                clauses.push(attrs);
            }
            // An expiry, even a future one, stops the standbys one day.
            if expires {
                clauses.push("VALID UNTIL 'infinity'");
            }
            if desired::connection_limit_too_low(ctx.cfg, replication, limit) {
                clauses.push("CONNECTION LIMIT -1");
            }
            if !clauses.is_empty() {
                let sql = format!("ALTER ROLE {ident} {}", clauses.join(" "));
                client
                    .simple_query(&sql)
                    .await
                    .with_context(|| sql.clone())?;
                done.push("attributes set");
            }
            let stored: Option<String> = r.get(2);
            if !stored
                .as_deref()
                .is_some_and(|v| scram::verifies(v, &password))
            {
                let verifier = scram::new_verifier(&password);
                client
                    .simple_query(&format!(
                        "ALTER ROLE {ident} PASSWORD {}",
                        sql_literal(&verifier)
                    ))
                    .await
                    .with_context(|| format!("ALTER ROLE {ident} PASSWORD"))?;
                done.push("password set");
            }
        }
    }
    if kind == RoleKind::Rewind {
        for f in [
            "pg_catalog.pg_ls_dir(text, boolean, boolean)",
            "pg_catalog.pg_stat_file(text, boolean)",
            "pg_catalog.pg_read_binary_file(text)",
            "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
        ] {
            client
                .simple_query(&format!("GRANT EXECUTE ON FUNCTION {f} TO {ident}"))
                .await
                .with_context(|| format!("GRANT EXECUTE ON FUNCTION {f}"))?;
        }
        done.push("pg_rewind grants");
    }
    Ok(if done.is_empty() {
        "already as wanted".into()
    } else {
        done.join(", ")
    })
}

async fn create_slot(ctx: &mut Ctx<'_>, name: &str) -> anyhow::Result<String> {
    let client = ctx.client().await?;
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&name],
        )
        .await?
        .is_some();
    if exists {
        return Ok("already exists".into());
    }
    // Reserve WAL at once: the base backup that follows streams through it.
    client
        .query(
            "SELECT pg_create_physical_replication_slot($1, true)",
            &[&name],
        )
        .await
        .with_context(|| format!("creating slot {name}"))?;
    Ok(format!("created slot {name}"))
}

async fn write_passfile(ctx: &Ctx<'_>, path: &str) -> anyhow::Result<()> {
    let content = desired::passfile_content(ctx.cfg, ctx.node);
    ctx.run_stdin_ok(
        &scripts::WRITE_PASSFILE.argv(&[path]),
        content.as_bytes(),
        "writing the passfile",
    )
    .await?;
    Ok(())
}

async fn base_backup(
    ctx: &mut Ctx<'_>,
    upstream: &str,
    slot: Option<&str>,
) -> anyhow::Result<String> {
    let up = ctx
        .cfg
        .nodes
        .get(upstream)
        .ok_or_else(|| anyhow!("upstream {upstream} is not in the cluster file"))?;
    let dd = ctx.node.postgres.data_dir.clone();
    // Precondition: nothing to lose. A data directory with files is never
    // touched. A missing one is built beside it and renamed into place, so
    // an interrupted backup never leaves a half-filled data directory; the
    // leftover of an earlier interrupted attempt is moved aside, not deleted.
    let prepare = ctx
        .here()
        .script(
            scripts::PREPARE_BASE_BACKUP,
            &[&dd, &crate::apply::utc_now()],
        )
        .await?;
    let target = match prepare.stdout.trim() {
        "direct" => dd.clone(),
        "building" => format!("{dd}.pgrepl-building"),
        _ => bail!(
            "{dd} is not empty; pgrepl never overwrites a data directory (move it aside first){}",
            if prepare.stderr.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", prepare.stderr.trim())
            }
        ),
    };
    let passfile = desired::passfile_path(ctx.cfg, ctx.node);
    write_passfile(ctx, &passfile).await?;
    let port = up.postgres.port.to_string();
    let bb = ctx.bin("pg_basebackup");
    let env_pass = format!("PGPASSFILE={passfile}");
    let mut argv: Vec<&str> = vec![
        "env",
        &env_pass,
        &bb,
        "-h",
        &up.host,
        "-p",
        &port,
        "-U",
        &ctx.cfg.replication.user,
        "-D",
        &target,
        "-X",
        "stream",
        "--checkpoint=fast",
        "--no-password",
        "--progress",
    ];
    if let Some(s) = slot {
        argv.extend(["-S", s]);
    }
    let progress = ctx.progress;
    let started = Instant::now();
    let mut last_shown = Instant::now() - Duration::from_secs(10);
    let out = ctx
        .here()
        .run_streaming(&argv, None, BASE_BACKUP_LIMIT, |line| {
            if last_shown.elapsed() >= Duration::from_millis(500) || line.contains("100%") {
                last_shown = Instant::now();
                progress(&format!("pg_basebackup: {}", line.trim()));
            }
            super::pause::point_blocking("rebase:during-base-backup");
        })
        .await?;
    if !out.success() {
        bail!(
            "pg_basebackup from {upstream} failed ({}): {}",
            out.exit(),
            out.stderr
                .lines()
                .filter(|l| !l.contains("kB ("))
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
        );
    }
    if target != dd {
        ctx.run_ok(
            &["mv", "-T", &target, &dd],
            "moving the new data directory into place",
        )
        .await?;
    }
    own_hba_offline(ctx).await?;
    Ok(format!(
        "base backup of {upstream} in {:.2}s",
        started.elapsed().as_secs_f64()
    ))
}

/// A base backup or pg_rewind copies the source's pg_hba.conf: put this
/// node's own managed block in before it first starts (the rules are the
/// ones every node already runs with).
async fn own_hba_offline(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    let pg = &ctx.node.postgres;
    if pg.config_dir.is_some() {
        return Ok(()); // configuration outside the data directory is not copied
    }
    let path = format!("{}/pg_hba.conf", pg.data_dir);
    let current = ctx
        .run_ok(&["cat", &path], "reading the copied pg_hba.conf")
        .await?;
    let next = crate::diff::render_hba(&current, &desired::hba_block(ctx.cfg, ctx.node));
    if next != current {
        ctx.run_stdin_ok(
            &scripts::WRITE_FILE.argv(&[&path]),
            next.as_bytes(),
            "writing pg_hba.conf",
        )
        .await?;
    }
    Ok(())
}

async fn write_recovery(
    ctx: &mut Ctx<'_>,
    conninfo: &str,
    slot: &str,
    passfile: &str,
) -> anyhow::Result<String> {
    if conninfo.to_ascii_lowercase().contains("password") && !conninfo.contains("passfile=") {
        bail!("refusing to write a password into primary_conninfo");
    }
    write_passfile(ctx, passfile).await?;
    let dd = ctx.node.postgres.data_dir.clone();
    let running = server_runs(ctx.here()).await?;
    if running {
        let client = ctx.client().await?;
        client
            .simple_query(&format!(
                "ALTER SYSTEM SET primary_conninfo = {}",
                sql_literal(conninfo)
            ))
            .await?;
        client
            .simple_query(&format!(
                "ALTER SYSTEM SET primary_slot_name = {}",
                sql_literal(slot)
            ))
            .await?;
        ctx.run_ok(
            &["touch", &format!("{dd}/standby.signal")],
            "creating standby.signal",
        )
        .await?;
        super::pause::point("recovery:before-reload").await;
        Ok("ALTER SYSTEM primary_conninfo, primary_slot_name; standby.signal; passfile".into())
    } else {
        write_auto_conf_offline(
            ctx.here(),
            &[("primary_conninfo", conninfo), ("primary_slot_name", slot)],
            true,
        )
        .await?;
        Ok("postgresql.auto.conf (server stopped): primary_conninfo, primary_slot_name; standby.signal; passfile".into())
    }
}

async fn drop_slot(ctx: &mut Ctx<'_>, name: &str) -> anyhow::Result<String> {
    let client = ctx.client().await?;
    // A standby re-pointed just before leaves its walsender behind for a
    // moment: wait for it to go, at most 10 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    let row = loop {
        let row = client
            .query_opt(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                &[&name],
            )
            .await?
            .map(|r| r.get::<_, bool>(0));
        if row != Some(true) || Instant::now() >= deadline {
            break row;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    match row {
        None => Ok("already gone".into()),
        Some(true) => bail!(
            "slot {name} is still in use after 10 s; not dropping it (is its standby still streaming from {}?)",
            ctx.node.name
        ),
        Some(false) => {
            client
                .query("SELECT pg_drop_replication_slot($1)", &[&name])
                .await?;
            Ok(format!("dropped slot {name}"))
        }
    }
}

async fn remove_cluster_files(
    ctx: &mut Ctx<'_>,
    cluster: &str,
    paths: &[String],
) -> anyhow::Result<String> {
    // Only the files a former name of this cluster keeps here, whatever a
    // saved plan says.
    if cluster == ctx.cfg.cluster.name || paths != desired::cluster_files(ctx.node, cluster) {
        bail!(
            "the step names files that are not cluster {cluster}'s beside {}; plan again",
            ctx.node.postgres.data_dir
        );
    }
    let lock = paths
        .iter()
        .find(|p| p.ends_with(".lock"))
        .map_or("", String::as_str);
    let mut args = vec![lock];
    args.extend(paths.iter().map(String::as_str));
    ctx.run_ok(
        &scripts::REMOVE_CLUSTER_FILES.argv(&args),
        &format!("removing cluster {cluster}'s files"),
    )
    .await?;
    Ok(format!("removed cluster {cluster}'s passfile and lock"))
}

fn log_file_of(node: &Node) -> String {
    let dd = node.postgres.data_dir.trim_end_matches('/');
    let parent = dd
        .rsplit_once('/')
        .map_or("/tmp", |(p, _)| if p.is_empty() { "/" } else { p });
    format!("{parent}/pgrepl-postgresql.log")
}

/// `pg_controldata` of a stopped node: (cluster state, latest checkpoint).
async fn controldata(remote: Remote<'_>) -> anyhow::Result<crate::gather::ControlData> {
    let out = remote
        .run(&[
            "env",
            "LC_ALL=C",
            &remote.bin("pg_controldata"),
            &remote.spec.postgres.data_dir,
        ])
        .await?;
    if !out.success() {
        bail!(
            "{}: pg_controldata failed: {}",
            remote.name(),
            out.stderr.trim()
        );
    }
    Ok(crate::gather::parse::parse_controldata(&out.stdout))
}

/// How long one query of a role change may take before the node counts as lost.
const QUERY_LIMIT: Duration = Duration::from_secs(10);
/// How long a CHECKPOINT may take.
const CHECKPOINT_LIMIT: Duration = Duration::from_secs(300);

/// A query bounded by `limit`: a cut network makes an open connection hang.
async fn bounded<T>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.with_context(|| what.to_string()),
        // The timeout stays in the chain: a rerun may pass (apply::failure).
        Err(elapsed) => Err(anyhow::Error::new(elapsed)
            .context(format!("{what}: no answer within {}s", limit.as_secs()))),
    }
}

async fn in_recovery(client: &Client) -> anyhow::Result<bool> {
    Ok(bounded(
        QUERY_LIMIT,
        "SELECT pg_is_in_recovery()",
        client.query_one("SELECT pg_is_in_recovery()", &[]),
    )
    .await?
    .get::<_, bool>(0))
}

/// Sets synchronous_standby_names on a standby about to be promoted: it
/// ignores it until then, and enforces it from its first commit on.
async fn set_sync_names(client: &Client, names: Option<&str>) -> anyhow::Result<()> {
    let Some(names) = names else { return Ok(()) };
    bounded(
        QUERY_LIMIT,
        "ALTER SYSTEM SET synchronous_standby_names",
        client.simple_query(&format!(
            "ALTER SYSTEM SET synchronous_standby_names = {}",
            sql_literal(names)
        )),
    )
    .await?;
    bounded(
        QUERY_LIMIT,
        "SELECT pg_reload_conf()",
        client.simple_query("SELECT pg_reload_conf()"),
    )
    .await?;
    Ok(())
}

/// Starts the old primary again as the primary, after a failure before the
/// promotion. It must not carry standby.signal (then it was never the primary
/// of this switchover).
async fn start_old_primary(old: Remote<'_>) -> anyhow::Result<()> {
    let sig = format!("{}/standby.signal", old.spec.postgres.data_dir);
    if old.run(&["test", "-e", &sig]).await?.code == Some(0) {
        bail!(
            "{}: has standby.signal; not starting it as the primary",
            old.name()
        );
    }
    control(old, "start").await?;
    Ok(())
}

/// Clean switchover from `from` to this node; resumable. Phases (each a
/// pause point of the fault-injection tests):
/// 1. `from` runs: preflight, CHECKPOINT, fast shutdown. `from` already
///    stopped (an interrupted run): skip, unless this node lacks its
///    shutdown checkpoint — then `from` starts again as the primary first.
/// 2. until the promotion: `from`'s shutdown checkpoint from pg_control,
///    wait until this node received it, synchronous_standby_names, a last
///    check that this node answers. Any failure here starts `from` again as
///    the primary.
/// 3. pg_promote: if its answer is lost, whether it happened is unknown;
///    `from` stays stopped and a rerun finds out.
/// 4. CHECKPOINT; `from` gets its recovery settings offline and starts as a
///    standby, without pg_rewind.
async fn switchover(
    ctx: &mut Ctx<'_>,
    from: &str,
    sync_names: Option<&str>,
) -> anyhow::Result<String> {
    let cfg = ctx.cfg;
    let me = ctx.node.name.clone();
    let Some((old, old_session)) = ctx.peer.take() else {
        bail!("the switchover needs a connection to the old primary {from}");
    };
    let old_node = Remote::new(old, old_session);
    let candidate_client = ctx.client().await?;
    if !in_recovery(&candidate_client).await? {
        return Ok(format!("{me} is already the primary"));
    }
    let mut old_runs = server_runs(old_node).await?;
    if !old_runs {
        let cd = controldata(old_node).await?;
        let has_it = match (cd.state.as_str(), cd.checkpoint_lsn) {
            ("shut down", Some(lsn)) => received_past(&candidate_client, lsn).await?,
            _ => false,
        };
        if !has_it {
            start_old_primary(old_node).await.with_context(|| {
                format!("{from} is stopped ({}) and {me} lacks some of its WAL, so it must run again first", cd.state)
            })?;
            (ctx.progress)(&format!(
                "{from} was stopped ({}) and {me} lacked some of its WAL: started it again as the primary",
                cd.state
            ));
            wait_streaming(ctx).await?;
            old_runs = true;
        }
    }
    let t0 = Instant::now();
    if old_runs {
        let old_pg = &old.postgres;
        let old_client = old_session
            .pg_client(old_pg.port, &old_pg.socket_dir)
            .await?;
        if in_recovery(&old_client).await? {
            bail!("{from} is not a primary any more; plan again");
        }
        // The candidate streams (from the old primary or, cascaded, from a
        // standby of it) and is within max_lag_on_failover of it.
        let streaming = bounded(
            QUERY_LIMIT,
            "reading pg_stat_wal_receiver",
            candidate_client.query_opt("SELECT status FROM pg_stat_wal_receiver", &[]),
        )
        .await?
        .map(|r| r.get::<_, String>(0));
        if streaming.as_deref() != Some("streaming") {
            bail!("{me} is not streaming ({streaming:?}); not switching over");
        }
        let current: String = bounded(
            QUERY_LIMIT,
            "pg_current_wal_lsn()",
            old_client.query_one("SELECT pg_current_wal_lsn()::text", &[]),
        )
        .await?
        .get(0);
        // As the planner counts it: what the candidate received or replayed.
        let row = bounded(
            QUERY_LIMIT,
            "pg_last_wal_receive_lsn()",
            candidate_client.query_one(
                "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text",
                &[],
            ),
        )
        .await?;
        let has = [
            row.get::<_, Option<String>>(0),
            row.get::<_, Option<String>>(1),
        ]
        .into_iter()
        .flatten()
        .filter_map(|l| l.parse::<crate::gather::Lsn>().ok())
        .max();
        let lag: i64 = match (current.parse::<crate::gather::Lsn>(), has) {
            (Ok(c), Some(h)) => i64::try_from(c.0.saturating_sub(h.0)).unwrap_or(i64::MAX),
            _ => -1,
        };
        if lag < 0 || lag as u64 > cfg.replication.max_lag_on_failover {
            bail!(
                "{me} is {} behind {from} (max_lag_on_failover is {} bytes); not switching over",
                if lag < 0 {
                    "an unknown amount".to_string()
                } else {
                    format!("{lag} bytes")
                },
                cfg.replication.max_lag_on_failover
            );
        }
        bounded(
            CHECKPOINT_LIMIT,
            "CHECKPOINT",
            old_client.simple_query("CHECKPOINT"),
        )
        .await?;
        drop(old_client);
        super::pause::point("switchover:before-shutdown").await;
        control(old_node, "stop").await?;
        (ctx.progress)(&format!("{from} stopped (fast shutdown)"));
        super::pause::point("switchover:after-shutdown").await;
    }
    // Until pg_promote is sent, the old primary is the one to run again.
    let before_promotion = async {
        let cd = controldata(old_node).await?;
        let (Some(shutdown_lsn), "shut down") = (cd.checkpoint_lsn, cd.state.as_str()) else {
            bail!("{from} did not shut down cleanly ({})", cd.state);
        };
        // The shutdown checkpoint record starts at shutdown_lsn: past it means received.
        let deadline = Instant::now() + Duration::from_secs(15);
        while !received_past(&candidate_client, shutdown_lsn).await? {
            if Instant::now() >= deadline {
                bail!(
                    "{me} did not receive {from}'s shutdown checkpoint ({shutdown_lsn}) within 15s"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        set_sync_names(&candidate_client, sync_names).await?;
        super::pause::point("switchover:before-promote").await;
        // A last sign of life: a failure now is surely before the promotion.
        bounded(
            Duration::from_secs(2),
            "checking that the candidate answers",
            candidate_client.simple_query("SELECT 1"),
        )
        .await?;
        anyhow::Ok(shutdown_lsn)
    };
    let shutdown_lsn = match before_promotion.await {
        Ok(lsn) => lsn,
        Err(e) => {
            return match start_old_primary(old_node).await {
                Ok(()) => Err(e.context(format!(
                    "nothing was promoted; {from} was started again as the primary"
                ))),
                Err(e2) => Err(e.context(format!(
                    "nothing was promoted, and starting {from} again as the primary failed too ({e2:#}); run apply again once both nodes answer"
                ))),
            };
        }
    };
    if let Err(e) = bounded(
        Duration::from_secs(70),
        "pg_promote()",
        candidate_client.query_one("SELECT pg_promote(true, 60)", &[]),
    )
    .await
    {
        return Err(e.context(format!(
            "whether {me} was promoted is not known: {from} stays stopped (it shut down cleanly and {me} has all of its WAL); run apply again once {me} answers, it finishes the switchover"
        )));
    }
    let promoted_in = t0.elapsed();
    super::pause::point("switchover:after-promote").await;
    // No CHECKPOINT here: only pg_rewind needs the new timeline in
    // pg_control, and a re-base makes its own CHECKPOINT on its source.
    // The old primary rejoins as a standby of the new one; it shut down
    // cleanly and the candidate has all of its WAL, so no pg_rewind.
    let conninfo = desired::primary_conninfo(cfg, old, ctx.node);
    let slot = if cfg.replication.slots {
        old.name.clone()
    } else {
        String::new()
    };
    let passfile = desired::passfile_path(cfg, old);
    let content = desired::passfile_content(cfg, old);
    let out = old_node
        .run_with_stdin(
            &scripts::WRITE_PASSFILE.argv(&[&passfile]),
            Some(content.as_bytes()),
            crate::transport::ssh::DEFAULT_COMMAND_TIMEOUT,
        )
        .await?;
    if !out.success() {
        bail!("{from}: writing the passfile failed: {}", out.stderr.trim());
    }
    write_auto_conf_offline(
        old_node,
        &[
            ("primary_conninfo", &conninfo),
            ("primary_slot_name", &slot),
        ],
        true,
    )
    .await?;
    super::pause::point("switchover:before-old-start").await;
    control(old_node, "start").await?;
    let mut old_ctx = Ctx {
        cfg,
        node: old,
        session: old_session,
        peer: None,
        progress: ctx.progress,
    };
    wait_streaming(&mut old_ctx).await?;
    Ok(format!(
        "{from} stopped at {shutdown_lsn}, {me} promoted {:.2}s after the shutdown began; {from} streams from it",
        promoted_in.as_secs_f64()
    ))
}

/// Whether the candidate received WAL past `lsn`.
async fn received_past(client: &Client, lsn: crate::gather::Lsn) -> anyhow::Result<bool> {
    Ok(bounded(
        QUERY_LIMIT,
        "pg_last_wal_receive_lsn()",
        client.query_one(
            &format!("SELECT pg_last_wal_receive_lsn() > '{lsn}'::pg_lsn"),
            &[],
        ),
    )
    .await?
    .get::<_, Option<bool>>(0)
    .unwrap_or(false))
}

async fn promote(ctx: &mut Ctx<'_>, old: &str, sync_names: Option<&str>) -> anyhow::Result<String> {
    let client = ctx.client().await?;
    if !in_recovery(&client).await? {
        return Ok("already the primary".into());
    }
    set_sync_names(&client, sync_names).await?;
    super::pause::point("failover:before-promote").await;
    // A last sign of life: a failure now is surely before the promotion.
    bounded(
        Duration::from_secs(2),
        "checking that the candidate answers",
        client.simple_query("SELECT 1"),
    )
    .await
    .context("nothing was promoted")?;
    bounded(
        Duration::from_secs(70),
        "pg_promote()",
        client.query_one("SELECT pg_promote(true, 60)", &[]),
    )
    .await
    .context("whether the candidate was promoted is not known; run apply again once it answers")?;
    super::pause::point("failover:after-promote").await;
    Ok(format!(
        "promoted without {old}; {old} is re-based when it is back"
    ))
}

/// Keeps the WAL a rewind discards, for the operator to inspect or replay
/// (pg_waldump): the node's own timeline from where the source's history
/// forked off it. The node is stopped.
async fn keep_diverged_wal(
    ctx: &Ctx<'_>,
    src_client: &Client,
    keep_as: &str,
) -> anyhow::Result<String> {
    let control = controldata(ctx.here()).await?;
    let timeline = match control.state.as_str() {
        "shut down in recovery" | "in archive recovery" => control
            .min_recovery_end_timeline
            .or(control.checkpoint_timeline),
        _ => control.checkpoint_timeline,
    }
    .ok_or_else(|| anyhow!("pg_controldata shows no timeline"))?;
    let row = src_client
        .query_one(
            "SELECT (SELECT setting::int8 FROM pg_settings WHERE name = 'wal_segment_size'),
               (SELECT CASE WHEN (pg_stat_file(f, true)).isdir IS FALSE THEN pg_read_binary_file(f) END
                  FROM (SELECT 'pg_wal/' || upper(lpad(to_hex(timeline_id), 8, '0')) || '.history' AS f
                          FROM pg_control_checkpoint()) h)",
            &[],
        )
        .await?;
    let segment_size =
        u64::try_from(row.get::<_, Option<i64>>(0).unwrap_or(16 << 20)).unwrap_or(16 << 20);
    let history = row
        .get::<_, Option<Vec<u8>>>(1)
        .map(|b| crate::timeline::parse_history(&String::from_utf8_lossy(&b)))
        .unwrap_or_default();
    let first = crate::timeline::first_diverged_segment(timeline, &history, segment_size);
    // A clean shutdown's checkpoint is the last record: the end of WAL.
    let last = match (control.state.as_str(), control.checkpoint_lsn) {
        ("shut down", Some(lsn)) => crate::timeline::wal_file_name(timeline, lsn, segment_size),
        _ => String::new(),
    };
    // As long as a copy may take: the divergence can be gigabytes.
    let out = ctx
        .here()
        .run_with_stdin(
            &scripts::KEEP_DIVERGED_WAL.argv(&[
                &ctx.node.postgres.data_dir,
                &format!("{timeline:08X}"),
                &first,
                keep_as,
                &last,
            ]),
            None,
            BASE_BACKUP_LIMIT,
        )
        .await?;
    if !out.success() {
        bail!(
            "copying timeline {timeline}'s WAL from {first} to {keep_as} failed ({}): {}",
            out.exit(),
            out.stderr.trim()
        );
    }
    let n: u64 = out.stdout.trim().parse().unwrap_or(0);
    let bytes = n * segment_size;
    Ok(format!(
        "the diverged WAL ({n} segment{} of timeline {timeline} from {first}, {}) is kept at {keep_as}",
        if n == 1 { "" } else { "s" },
        crate::diff::human_bytes(bytes)
    ))
}

async fn rebase(
    ctx: &mut Ctx<'_>,
    source: &str,
    rewind: bool,
    keep_as: &str,
) -> anyhow::Result<String> {
    let keep_as = &keep_as.replace(crate::topology::APPLY_TIME, &crate::apply::utc_now());
    let cfg = ctx.cfg;
    let dd = ctx.node.postgres.data_dir.clone();
    let Some((src, src_session)) = ctx.peer.take() else {
        bail!("re-basing needs a connection to the source {source}");
    };
    // Stop the diverged node (it must never run as if it were fine).
    let running = server_runs(ctx.here()).await?;
    if running {
        control(ctx.here(), "stop").await?;
        (ctx.progress)("stopped (fast shutdown)");
    }
    super::pause::point("rebase:after-stop").await;
    // A pg_rewind that started and never finished leaves this marker: the
    // directory is then only good for keeping aside.
    let marker = format!("{}.pgrepl-rewinding", dd.trim_end_matches('/'));
    let interrupted = ctx.here().run(&["test", "-e", &marker]).await?.code == Some(0);
    let rewind = rewind && !interrupted;
    // A pg_rewind or pg_basebackup of a killed earlier run may still write here.
    ctx.run_ok(
        &scripts::STOP_ORPHANS.argv(&[&dd]),
        "stopping what an interrupted run left running",
    )
    .await?;
    let src_client = src_session
        .pg_client(src.postgres.port, &src.postgres.socket_dir)
        .await?;
    // pg_rewind reads the source's control file: it must show the new timeline.
    src_client.simple_query("CHECKPOINT").await?;
    (ctx.progress)(&format!("CHECKPOINT on {source} done"));
    // Nothing is lost: what pg_rewind discards is copied aside first.
    let kept_wal = if rewind && cfg.rewind.is_some() {
        let wal_dir = keep_as.replace(".pgrepl-old-", ".pgrepl-diverged-wal-");
        Some(
            keep_diverged_wal(ctx, &src_client, &wal_dir)
                .await
                .with_context(|| {
                    format!(
                        "{}: the node is stopped and nothing was rewound; fix the cause and run apply again",
                        ctx.node.name
                    )
                })?,
        )
    } else {
        None
    };
    if let Some(kept) = &kept_wal {
        (ctx.progress)(kept);
    }
    drop(src_client);
    let passfile = desired::passfile_path(cfg, ctx.node);
    write_passfile(ctx, &passfile).await?;
    let mut how = String::new();
    let mut rewound = false;
    if rewind && let Some(rw) = &cfg.rewind {
        let source_server = [
            ("host", src.host.clone()),
            ("port", src.postgres.port.to_string()),
            ("user", rw.user.clone()),
            ("dbname", "postgres".to_string()),
            ("passfile", passfile.clone()),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", desired::conninfo_value(v)))
        .collect::<Vec<_>>()
        .join(" ");
        ctx.run_ok(&["touch", &marker], "marking the rewind as started")
            .await?;
        let progress = ctx.progress;
        let out = ctx
            .here()
            .run_streaming(
                &[
                    &ctx.bin("pg_rewind"),
                    "-D",
                    &dd,
                    &format!("--source-server={source_server}"),
                    "--progress",
                ],
                None,
                BASE_BACKUP_LIMIT,
                |l| {
                    progress(&format!("pg_rewind: {}", l.trim()));
                    super::pause::point_blocking("rebase:during-rewind");
                },
            )
            .await?;
        if out.success() {
            ctx.run_ok(&["rm", "-f", &marker], "removing the rewind marker")
                .await?;
            rewound = true;
            how = "pg_rewind".into();
            if let Some(kept) = &kept_wal {
                how.push_str(&format!("; {kept}"));
            }
        } else {
            let why = out
                .stderr
                .lines()
                .filter(|l| l.contains("error") || l.contains("fatal"))
                .collect::<Vec<_>>()
                .join("; ");
            (ctx.progress)(&format!(
                "pg_rewind failed ({why}); falling back to a fresh base backup"
            ));
            how = format!("base backup (pg_rewind failed: {why})");
        }
    }
    if !rewound {
        // Keep the diverged directory aside; never delete it.
        ctx.run_ok(
            &["mv", "-T", &dd, keep_as],
            "moving the diverged data directory aside",
        )
        .await?;
        // The marker belonged to the directory now kept aside.
        ctx.run_ok(&["rm", "-f", &marker], "removing the rewind marker")
            .await?;
        if how.is_empty() {
            how = "base backup".into();
        }
        base_backup(
            ctx,
            source,
            cfg.replication.slots.then_some(ctx.node.name.as_str()),
        )
        .await?;
        how.push_str(&format!(
            "; the diverged data directory is kept at {keep_as}"
        ));
    }
    let conninfo = desired::primary_conninfo(cfg, ctx.node, src);
    let slot = if cfg.replication.slots {
        ctx.node.name.clone()
    } else {
        String::new()
    };
    write_auto_conf_offline(
        ctx.here(),
        &[
            ("primary_conninfo", &conninfo),
            ("primary_slot_name", &slot),
        ],
        true,
    )
    .await?;
    own_hba_offline(ctx).await?;
    super::pause::point("rebase:before-start").await;
    service(ctx, "start").await?;
    wait_streaming(ctx).await?;
    Ok(format!("re-based from {source} by {how}; streaming"))
}
