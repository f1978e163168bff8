//! One executor per `Op`. Each re-reads the fact its step depends on right
//! before acting and does nothing when the work is already done, so every
//! step is safe to run twice. The nodes are reached only through
//! `node::Node`: this module decides, the node module does.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use crate::config::{self, Config, Service};
use crate::desired;
use crate::hba::HBA_BEGIN;
use crate::node::{BackupTarget, BaseBackup, Node, STREAM_WAIT, Sql};
use crate::observed::Lsn;
use crate::plan::{Op, PoolerRepoint, RoleKind, Step};
use crate::quote::{conf_value, setting_name};
use crate::scram;
use crate::transport::NodeSession;

use super::pause;

pub struct Ctx<'a> {
    pub cfg: &'a Config,
    pub node: &'a config::Node,
    pub session: &'a mut NodeSession,
    /// The other node of a two-node step (switchover: the old primary;
    /// re-base: the source).
    pub peer: Option<(&'a config::Node, &'a mut NodeSession)>,
    /// Progress lines (base backup percentage) for the operator.
    pub progress: &'a (dyn Fn(&str) + Sync),
}

impl<'a> Ctx<'a> {
    /// This step's node.
    fn here(&self) -> Node<'_> {
        Node::new(self.node, self.session)
    }

    /// The other node of a two-node step, for the rest of the step.
    fn take_peer(&mut self) -> Option<Node<'a>> {
        self.peer
            .take()
            .map(|(spec, session)| Node::new(spec, session))
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
            poolers,
        } => switchover(ctx, from, synchronous_standby_names.as_deref(), poolers).await,
        Op::Promote {
            old,
            synchronous_standby_names,
        } => promote(ctx, old, synchronous_standby_names.as_deref()).await,
        Op::Rebase {
            source,
            rewind,
            keep_as,
        } => rebase(ctx, source, *rewind, keep_as).await,
        Op::WritePoolerBlock { .. } | Op::PoolerService { .. } => {
            bail!(
                "{}: a pooler step runs on its pooler, not on a node",
                step.address
            )
        }
    }
}

async fn set_setting(ctx: &mut Ctx<'_>, name: &str, sql_value: &str) -> anyhow::Result<String> {
    let name = setting_name(name)?;
    let custom = crate::guc::is_custom_name(name);
    // The literal was quoted by the plan.
    ctx.here()
        .sql()
        .await?
        .alter_system(name, sql_value, custom)
        .await?;
    Ok(format!("ALTER SYSTEM SET {name} = {sql_value}"))
}

/// A setting of a stopped server, written into postgresql.auto.conf as
/// ALTER SYSTEM would (which needs a running server).
async fn set_setting_offline(ctx: &mut Ctx<'_>, name: &str, value: &str) -> anyhow::Result<String> {
    let name = setting_name(name)?;
    let here = ctx.here();
    if here.runs().await? {
        bail!("the server runs now, so {name} is not written offline; plan again");
    }
    here.write_auto_conf_offline(&[(name, value)], false)
        .await?;
    Ok(format!(
        "{name} = {} in postgresql.auto.conf (server stopped)",
        conf_value(value)
    ))
}

async fn reload(ctx: &mut Ctx<'_>) -> anyhow::Result<String> {
    let sql = ctx.here().sql().await?;
    // pg_reload_conf() returns true even when the files are invalid: look first.
    let errors = sql.config_errors().await?;
    if !errors.is_empty() {
        bail!(
            "configuration files are invalid, not reloading: {}",
            errors.join("; ")
        );
    }
    sql.reload().await?;
    Ok("pg_reload_conf()".into())
}

/// Restarts the node; the standbys that streamed from it before stream
/// again when this returns (at most `STREAM_WAIT`), so "no changes" at the
/// end of apply is the truth and not a cluster still reconnecting.
async fn restart(ctx: &mut Ctx<'_>) -> anyhow::Result<String> {
    let here = ctx.here();
    let streaming = move || async move {
        match here.sql().await {
            Ok(sql) => sql.streaming_standbys().await.ok(),
            Err(_) => None,
        }
    };
    let before = streaming().await.unwrap_or_default();
    let done = here.restart().await?;
    if before.is_empty() {
        return Ok(done);
    }
    let deadline = Instant::now() + STREAM_WAIT;
    let mut now: Vec<String> = Vec::new();
    while Instant::now() < deadline {
        if let Some(names) = streaming().await {
            now = names;
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

async fn start(ctx: &mut Ctx<'_>) -> anyhow::Result<String> {
    let here = ctx.here();
    let status = here.status().await?;
    let (running, is_standby) = (status.runs(), status.standby_signal);
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
        here.start().await?
    };
    // A standby is done when it streams; a diverged one never does.
    if is_standby {
        here.wait_streaming().await?;
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
    let standby = ctx.here().sql().await?;
    if !standby.in_recovery().await? {
        return Ok(format!("{me} is not in recovery: nothing to catch up with"));
    }
    let Some(p) = ctx.take_peer() else {
        bail!("{me}: waiting for {primary}'s WAL needs a connection to {primary}");
    };
    let psql = p.sql().await.with_context(|| {
        format!("{me} waits for {primary}'s WAL before its restart, but {primary} cannot be reached over SQL")
    })?;
    if psql.in_recovery().await? {
        bail!("{primary} is not a primary any more; plan again");
    }
    let (mut redo, after_start) = psql.last_checkpoint().await?;
    if !after_start {
        psql.checkpoint().await?;
        redo = psql.last_checkpoint().await?.0;
    }
    let target = psql.current_wal_lsn().await?;
    drop(psql);
    let deadline = Instant::now() + CATCH_UP_WAIT;
    loop {
        let replay = standby.replay_towards(&target).await?;
        if replay.reached {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "{me} did not replay {primary}'s WAL up to {target} within {}s (replayed {}, replay {}, {}); it is not restarted: a standby restarted before it replays {primary}'s parameter change refuses a value below {primary}'s old one",
                CATCH_UP_WAIT.as_secs(),
                replay.replayed,
                replay.pause_state,
                replay.receiver
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The restartpoint: CHECKPOINT on a standby makes one at the last
    // checkpoint record it replayed, which may take a moment to be seen.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        standby.checkpoint().await?;
        let (past, mine) = standby.restartpoint_past(&redo).await?;
        if past {
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
fn once_options(once_with: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let mut opts = Vec::new();
    for (name, value) in once_with {
        let name = setting_name(name)?;
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
    once_with: &BTreeMap<String, String>,
    primary: &str,
) -> anyhow::Result<String> {
    let me = ctx.node.name.clone();
    let here = ctx.here();
    if here.runs().await? {
        return start(ctx).await;
    }
    if !here.has_standby_signal().await? {
        bail!("{me} has no standby.signal: not starting it; plan again");
    }
    let opts = once_options(once_with)?;
    let shown = once_with
        .iter()
        .map(|(n, v)| format!("{n} = {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    if let Service::Systemd(unit) = &ctx.node.postgres.service {
        bail!(
            "{me} needs to start once with {shown} (its pg_control records these values of {primary}), which systemd unit {unit} cannot pass; start it by hand once with `pg_ctl start -D {} -o '{opts}'`, wait until it replays {primary}'s WAL, run CHECKPOINT on it, stop it, and apply again",
            ctx.node.postgres.data_dir
        );
    }
    here.start_once(&opts, &shown).await?;
    (ctx.progress)(&format!("started once with {shown}"));
    let caught_up = catch_up(ctx, primary).await?;
    (ctx.progress)(&caught_up);
    let here = ctx.here();
    // Whether its own values are now at or above what pg_control records:
    // not yet when the primary still runs with the higher value (its
    // lowering comes later); it then keeps running with the recorded values
    // and apply's next round restarts it, after the primary's.
    // pg_control's values are not in SQL: pg_controldata reads them from
    // the running server's file.
    let recorded = here.controldata().await?.recorded_settings;
    // The values the next start takes: the files' last line for each name.
    let configured: HashMap<String, String> = here
        .sql()
        .await?
        .file_settings()
        .await?
        .into_iter()
        .collect();
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
    here.stop().await?;
    let started = start(ctx).await?;
    Ok(format!(
        "started once with {shown}; {caught_up}; stopped; {started} with its own values"
    ))
}

async fn write_hba(ctx: &mut Ctx<'_>, path: &str, content: &str) -> anyhow::Result<String> {
    if !content.lines().any(|l| l.starts_with(HBA_BEGIN)) {
        bail!("refusing to write a pg_hba.conf without pgrepl's block");
    }
    let here = ctx.here();
    let current = here.read_file(path, "reading pg_hba.conf").await?;
    if current == content {
        return Ok("already in place".into());
    }
    here.write_file(path, content, "writing pg_hba.conf")
        .await?;
    // pg_hba_file_rules reads the file on disk: validate before any reload.
    let errors = here.sql().await?.hba_errors().await?;
    if !errors.is_empty() {
        let errs: Vec<String> = errors
            .iter()
            .map(|(line, e)| format!("line {line}: {e}"))
            .collect();
        here.restore_previous(path, "restoring the previous pg_hba.conf")
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
    let sql = ctx.here().sql().await?;
    let attrs = match kind {
        RoleKind::Replication => "LOGIN REPLICATION",
        RoleKind::Rewind => "LOGIN",
    };
    let mut done = Vec::new();
    match sql.role(name).await? {
        None => {
            // The verifier is computed here: the clear password never reaches the server.
            sql.create_role(name, attrs, &scram::new_verifier(&password))
                .await?;
            done.push("created");
        }
        Some(r) => {
            let replication = kind == RoleKind::Replication;
            let mut clauses = Vec::new();
            if !r.login || (replication && !r.replication) {
                clauses.push(attrs);
            }
            // An expiry, even a future one, stops the standbys one day.
            if r.expires {
                clauses.push("VALID UNTIL 'infinity'");
            }
            if desired::connection_limit_too_low(ctx.cfg, replication, r.connection_limit) {
                clauses.push("CONNECTION LIMIT -1");
            }
            if !clauses.is_empty() {
                sql.alter_role(name, &clauses.join(" ")).await?;
                done.push("attributes set");
            }
            if !r
                .verifier
                .as_deref()
                .is_some_and(|v| scram::verifies(v, &password))
            {
                sql.set_password(name, &scram::new_verifier(&password))
                    .await?;
                done.push("password set");
            }
        }
    }
    if kind == RoleKind::Rewind {
        sql.grant_rewind_functions(name).await?;
        done.push("pg_rewind grants");
    }
    Ok(if done.is_empty() {
        "already as wanted".into()
    } else {
        done.join(", ")
    })
}

async fn create_slot(ctx: &mut Ctx<'_>, name: &str) -> anyhow::Result<String> {
    let sql = ctx.here().sql().await?;
    if sql.slot_active(name).await?.is_some() {
        return Ok("already exists".into());
    }
    sql.create_slot(name).await?;
    Ok(format!("created slot {name}"))
}

async fn write_passfile(ctx: &Ctx<'_>, path: &str) -> anyhow::Result<()> {
    let content = desired::passfile_content(ctx.cfg, ctx.node);
    ctx.here().write_passfile(path, &content).await
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
    let dd = &ctx.node.postgres.data_dir;
    let here = ctx.here();
    // Precondition: nothing to lose. A data directory with files is never
    // touched. A missing one is built beside it and renamed into place, so
    // an interrupted backup never leaves a half-filled data directory; the
    // leftover of an earlier interrupted attempt is pgrepl's own copy.
    let target = match here.prepare_base_backup(&super::utc_now()).await? {
        BackupTarget::Direct => dd.clone(),
        BackupTarget::Building(building) => building,
        BackupTarget::Occupied(why) => bail!(
            "{dd} is not empty; pgrepl never overwrites a data directory (move it aside first){}",
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            }
        ),
    };
    let passfile = desired::passfile_path(ctx.cfg, ctx.node);
    write_passfile(ctx, &passfile).await?;
    let progress = ctx.progress;
    let started = Instant::now();
    let mut last_shown = Instant::now() - Duration::from_secs(10);
    let conninfo = desired::base_backup_conninfo(ctx.cfg, ctx.node, up);
    let backup = BaseBackup {
        conninfo: &conninfo,
        slot,
        target: &target,
    };
    let out = here
        .pg_basebackup(&backup, |line| {
            if last_shown.elapsed() >= Duration::from_millis(500) || line.contains("100%") {
                last_shown = Instant::now();
                progress(&format!("pg_basebackup: {}", line.trim()));
            }
            pause::point_blocking("rebase:during-base-backup");
        })
        .await?;
    if !out.success() {
        let said = out
            .stderr
            .lines()
            .filter(|l| !l.contains("kB ("))
            .collect::<Vec<_>>()
            .join("\n");
        bail!(
            "pg_basebackup on {} from {upstream} failed ({}): {}{}",
            ctx.node.name,
            out.exit(),
            said.trim(),
            tls_hint(&said)
        );
    }
    if target != *dd {
        here.rename_dir(&target, dd, "moving the new data directory into place")
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
    let here = ctx.here();
    let current = here
        .read_file(&path, "reading the copied pg_hba.conf")
        .await?;
    let next = crate::hba::render(&current, &desired::hba_block(ctx.cfg, ctx.node));
    if next != current {
        here.write_file(&path, &next, "writing pg_hba.conf").await?;
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
    let here = ctx.here();
    if here.runs().await? {
        let sql = here.sql().await?;
        sql.set_text("primary_conninfo", conninfo).await?;
        sql.set_text("primary_slot_name", slot).await?;
        here.create_standby_signal().await?;
        pause::point("recovery:before-reload").await;
        Ok("ALTER SYSTEM primary_conninfo, primary_slot_name; standby.signal; passfile".into())
    } else {
        here.write_recovery_offline(conninfo, slot).await?;
        Ok("postgresql.auto.conf (server stopped): primary_conninfo, primary_slot_name; standby.signal; passfile".into())
    }
}

async fn drop_slot(ctx: &mut Ctx<'_>, name: &str) -> anyhow::Result<String> {
    let sql = ctx.here().sql().await?;
    // A standby re-pointed just before leaves its walsender behind for a
    // moment: wait for it to go, at most 10 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    let active = loop {
        let active = sql.slot_active(name).await?;
        if active != Some(true) || Instant::now() >= deadline {
            break active;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    match active {
        None => Ok("already gone".into()),
        Some(true) => bail!(
            "slot {name} is still in use after 10 s; not dropping it (is its standby still streaming from {}?)",
            ctx.node.name
        ),
        Some(false) => {
            sql.drop_slot(name).await?;
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
    ctx.here()
        .remove_files_unless_locked(lock, paths, &format!("removing cluster {cluster}'s files"))
        .await?;
    Ok(format!("removed cluster {cluster}'s passfile and lock"))
}

/// The slot a standby of `node`'s name streams through, empty without slots.
fn slot_of(cfg: &Config, node: &config::Node) -> String {
    if cfg.replication.slots {
        node.name.clone()
    } else {
        String::new()
    }
}

/// Sets synchronous_standby_names on a standby about to be promoted: it
/// ignores it until then, and enforces it from its first commit on.
async fn set_sync_names(sql: &Sql, names: Option<&str>) -> anyhow::Result<()> {
    let Some(names) = names else { return Ok(()) };
    sql.set_text("synchronous_standby_names", names).await?;
    sql.reload().await
}

/// Starts the old primary again as the primary, after a failure before the
/// promotion. It must not carry standby.signal (then it was never the primary
/// of this switchover).
async fn start_old_primary(old: Node<'_>) -> anyhow::Result<()> {
    if old.has_standby_signal().await? {
        bail!(
            "{}: has standby.signal; not starting it as the primary",
            old.name()
        );
    }
    old.start().await?;
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
/// 4. `from` gets its recovery settings offline and starts as a standby,
///    without pg_rewind.
async fn switchover(
    ctx: &mut Ctx<'_>,
    from: &str,
    sync_names: Option<&str>,
    poolers: &[PoolerRepoint],
) -> anyhow::Result<String> {
    let me = ctx.node.name.clone();
    let cfg = ctx.cfg;
    let Some(old) = ctx.take_peer() else {
        bail!("the switchover needs a connection to the old primary {from}");
    };
    let here = ctx.here();
    let candidate = here.sql().await?;
    if !candidate.in_recovery().await? {
        return Ok(format!("{me} is already the primary"));
    }
    let old_runs = old_primary_runs_if_needed(here, old, &candidate, ctx.progress).await?;
    if old_runs {
        preflight_and_checkpoint(cfg, here, old, &candidate).await?;
    }
    // Clients of the read-write pools wait from here on, instead of failing.
    let held_from = Instant::now();
    let hold = super::pooler::pause(cfg, poolers).await?;
    if !poolers.is_empty() {
        (ctx.progress)("read-write pools paused on every pooler");
        pause::point("switchover:after-pause").await;
    }
    let t0 = Instant::now();
    let promoted = promote_paused(here, old, &candidate, sync_names, old_runs, ctx.progress).await;
    let shutdown_lsn = match promoted {
        Ok(lsn) => lsn,
        Err(e) => {
            return Err(match hold.resume().await {
                Ok(()) if poolers.is_empty() => e,
                Ok(()) => e.context("the poolers were resumed"),
                Err(e2) => e.context(format!(
                    "resuming the poolers failed too ({e2:#}); run apply again to resume them"
                )),
            });
        }
    };
    let promoted_in = t0.elapsed();
    let repointed = hold.repoint_and_resume().await;
    let held_for = held_from.elapsed();
    pause::point("switchover:after-promote").await;
    // No CHECKPOINT here: only pg_rewind needs the new timeline in
    // pg_control, and a re-base makes its own CHECKPOINT on its source.
    let rejoined = old_primary_rejoins(cfg, ctx.node, old).await;
    repointed.context(format!(
        "{me} was promoted, but re-pointing the poolers failed; run apply again"
    ))?;
    rejoined?;
    let pools = if poolers.is_empty() {
        String::new()
    } else {
        format!(
            "; {} pooler(s) re-pointed, clients held {:.2}s",
            poolers.len(),
            held_for.as_secs_f64()
        )
    };
    Ok(format!(
        "{from} stopped at {shutdown_lsn}, {me} promoted {:.2}s after the shutdown began; {from} streams from it{pools}",
        promoted_in.as_secs_f64()
    ))
}

/// Phases 1 (the shutdown, when `from` runs) to 3 (the promotion). Any
/// failure before pg_promote is sent starts `from` again as the primary.
async fn promote_paused(
    here: Node<'_>,
    old: Node<'_>,
    candidate: &Sql,
    sync_names: Option<&str>,
    old_runs: bool,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Lsn> {
    let (me, from) = (here.name(), old.name());
    if old_runs {
        pause::point("switchover:before-shutdown").await;
        let how = old.stop().await?;
        progress(&format!(
            "{from} stopped (fast shutdown: {})",
            stop_how(&how)
        ));
        pause::point("switchover:after-shutdown").await;
    }
    // Until pg_promote is sent, the old primary is the one to run again.
    let shutdown_lsn = match until_promotion(here, old, candidate, sync_names).await {
        Ok(lsn) => lsn,
        Err(e) => return Err(restart_old(old, e).await),
    };
    if let Err(e) = candidate.promote().await {
        return Err(e.context(format!(
            "whether {me} was promoted is not known: {from} stays stopped (it shut down cleanly and {me} has all of its WAL); run apply again once {me} answers, it finishes the switchover"
        )));
    }
    Ok(shutdown_lsn)
}

/// A failure before the promotion: `from` runs again as the primary.
async fn restart_old(old: Node<'_>, e: anyhow::Error) -> anyhow::Error {
    let from = old.name();
    match start_old_primary(old).await {
        Ok(()) => e.context(format!(
            "nothing was promoted; {from} was started again as the primary"
        )),
        Err(e2) => e.context(format!(
            "nothing was promoted, and starting {from} again as the primary failed too ({e2:#}); run apply again once both nodes answer"
        )),
    }
}

/// Phase 1 of a rerun: whether the old primary runs. Stopped without this
/// node having received its shutdown checkpoint (or not cleanly), it is
/// started again as the primary and this node streams from it first.
async fn old_primary_runs_if_needed(
    here: Node<'_>,
    old: Node<'_>,
    candidate: &Sql,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<bool> {
    if old.runs().await? {
        return Ok(true);
    }
    let (me, from) = (here.name(), old.name());
    let cd = old.controldata().await?;
    let has_it = match (cd.state.as_str(), cd.checkpoint_lsn) {
        ("shut down", Some(lsn)) => candidate.received_past(lsn).await?,
        _ => false,
    };
    if has_it {
        return Ok(false);
    }
    start_old_primary(old).await.with_context(|| {
        format!(
            "{from} is stopped ({}) and {me} lacks some of its WAL, so it must run again first",
            cd.state
        )
    })?;
    progress(&format!(
        "{from} was stopped ({}) and {me} lacked some of its WAL: started it again as the primary",
        cd.state
    ));
    here.wait_streaming().await?;
    Ok(true)
}

/// Phase 1: the preflight (the old node is still the primary, the candidate
/// streams from it, directly or cascaded, within `max_lag_on_failover`)
/// and a CHECKPOINT; the fast shutdown follows once the poolers paused.
async fn preflight_and_checkpoint(
    cfg: &Config,
    here: Node<'_>,
    old: Node<'_>,
    candidate: &Sql,
) -> anyhow::Result<()> {
    let (me, from) = (here.name(), old.name());
    let old_sql = old.sql().await?;
    if old_sql.in_recovery().await? {
        bail!("{from} is not a primary any more; plan again");
    }
    let streaming = candidate.wal_receiver_status().await?;
    if streaming.as_deref() != Some("streaming") {
        bail!("{me} is not streaming ({streaming:?}); not switching over");
    }
    let current = old_sql.current_wal_lsn().await?;
    // As the planner counts it: what the candidate received or replayed.
    let has = candidate.received_or_replayed().await?;
    let max = cfg.replication.max_lag_on_failover;
    match lag_behind(&current, has) {
        Some(lag) if lag <= max => {}
        lag => bail!(
            "{me} is {} behind {from} (max_lag_on_failover is {max} bytes); not switching over",
            lag.map_or("an unknown amount".to_string(), |l| format!("{l} bytes"))
        ),
    }
    old_sql.checkpoint().await?;
    Ok(())
}

/// How far `has` is behind the position `current`; `None` when unknown.
fn lag_behind(current: &str, has: Option<Lsn>) -> Option<u64> {
    let current = current.parse::<Lsn>().ok()?;
    Some(current.0.saturating_sub(has?.0))
}

/// Phase 2: the old primary's shutdown checkpoint, received by the
/// candidate; synchronous_standby_names; a last sign of life. Any failure
/// here is surely before the promotion.
async fn until_promotion(
    here: Node<'_>,
    old: Node<'_>,
    candidate: &Sql,
    sync_names: Option<&str>,
) -> anyhow::Result<Lsn> {
    let (me, from) = (here.name(), old.name());
    let cd = old.controldata().await?;
    let (Some(shutdown_lsn), "shut down") = (cd.checkpoint_lsn, cd.state.as_str()) else {
        bail!("{from} did not shut down cleanly ({})", cd.state);
    };
    // The shutdown checkpoint record starts at shutdown_lsn: past it means received.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !candidate.received_past(shutdown_lsn).await? {
        if Instant::now() >= deadline {
            bail!("{me} did not receive {from}'s shutdown checkpoint ({shutdown_lsn}) within 15s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    set_sync_names(candidate, sync_names).await?;
    pause::point("switchover:before-promote").await;
    candidate.answers_now().await?;
    Ok(shutdown_lsn)
}

/// Phase 4: the old primary rejoins as a standby of `new_primary`; it shut
/// down cleanly and the new primary has all of its WAL, so no pg_rewind.
async fn old_primary_rejoins(
    cfg: &Config,
    new_primary: &config::Node,
    old: Node<'_>,
) -> anyhow::Result<()> {
    let conninfo = desired::primary_conninfo(cfg, old.spec, new_primary);
    let passfile = desired::passfile_path(cfg, old.spec);
    old.write_passfile(&passfile, &desired::passfile_content(cfg, old.spec))
        .await
        .with_context(|| format!("{}: rejoining as a standby", old.name()))?;
    old.write_recovery_offline(&conninfo, &slot_of(cfg, old.spec))
        .await?;
    pause::point("switchover:before-old-start").await;
    old.start().await?;
    old.wait_streaming().await
}

async fn promote(ctx: &mut Ctx<'_>, old: &str, sync_names: Option<&str>) -> anyhow::Result<String> {
    let sql = ctx.here().sql().await?;
    if !sql.in_recovery().await? {
        return Ok("already the primary".into());
    }
    set_sync_names(&sql, sync_names).await?;
    pause::point("failover:before-promote").await;
    // A last sign of life: a failure now is surely before the promotion.
    sql.answers_now().await.context("nothing was promoted")?;
    sql.promote().await.context(
        "whether the candidate was promoted is not known; run apply again once it answers",
    )?;
    pause::point("failover:after-promote").await;
    Ok(format!(
        "promoted without {old}; {old} is re-based when it is back"
    ))
}

/// Keeps the WAL a rewind discards, for the operator to inspect or replay
/// (pg_waldump): the node's own timeline from where the source's history
/// forked off it. The node is stopped.
async fn keep_diverged_wal(here: Node<'_>, source: &Sql, keep_as: &str) -> anyhow::Result<String> {
    let control = here.controldata().await?;
    let timeline = match control.state.as_str() {
        "shut down in recovery" | "in archive recovery" => control
            .min_recovery_end_timeline
            .or(control.checkpoint_timeline),
        _ => control.checkpoint_timeline,
    }
    .ok_or_else(|| anyhow!("pg_controldata shows no timeline"))?;
    let (segment_size, history) = source.segment_size_and_history().await?;
    let history = history
        .map(|h| crate::timeline::parse_history(&h))
        .unwrap_or_default();
    let first = crate::timeline::first_diverged_segment(timeline, &history, segment_size);
    // A clean shutdown's checkpoint is the last record: the end of WAL.
    let last = match (control.state.as_str(), control.checkpoint_lsn) {
        ("shut down", Some(lsn)) => crate::timeline::wal_file_name(timeline, lsn, segment_size),
        _ => String::new(),
    };
    let (n, kept_at) = here
        .keep_diverged_wal(timeline, &first, keep_as, &last)
        .await?;
    Ok(format!(
        "the diverged WAL ({n} segment{} of timeline {timeline} from {first}, {}) is kept at {kept_at}",
        if n == 1 { "" } else { "s" },
        crate::text::human_bytes(n * segment_size)
    ))
}

/// Re-bases this node from `source`: stopped, then rewound (its diverged
/// WAL kept first) or, when that is impossible or fails, rebuilt by a base
/// backup (the old directory kept aside); then it starts as a standby.
async fn rebase(
    ctx: &mut Ctx<'_>,
    source: &str,
    rewind: bool,
    keep_as: &str,
) -> anyhow::Result<String> {
    let keep_as = &keep_as.replace(crate::plan::APPLY_TIME, &super::utc_now());
    let cfg = ctx.cfg;
    let Some(src) = ctx.take_peer() else {
        bail!("re-basing needs a connection to the source {source}");
    };
    let here = ctx.here();
    // Stop the diverged node (it must never run as if it were fine).
    if here.runs().await? {
        let how = here.stop().await?;
        (ctx.progress)(&format!("stopped (fast shutdown: {})", stop_how(&how)));
    }
    pause::point("rebase:after-stop").await;
    // A pg_rewind that started and never finished leaves its marker: the
    // directory is then only good for keeping aside.
    let rewind = rewind && !here.rewind_interrupted().await?;
    // A pg_rewind or pg_basebackup of a killed earlier run may still write here.
    here.stop_orphans().await?;
    let kept_wal = checkpoint_source(
        here,
        src,
        rewind && cfg.rewind.is_some(),
        keep_as,
        ctx.progress,
    )
    .await?;
    let passfile = desired::passfile_path(cfg, ctx.node);
    write_passfile(ctx, &passfile).await?;
    let rewound = match (rewind, &cfg.rewind) {
        (true, Some(rw)) => rewind_from(here, src, cfg, rw, kept_wal, ctx.progress).await?,
        _ => Rewind::Rebuild("base backup".into()),
    };
    let how = match rewound {
        Rewind::Done(how) => how,
        Rewind::Rebuild(by) => {
            // Keep the diverged directory aside; never delete it.
            here.rename_dir(
                &ctx.node.postgres.data_dir,
                keep_as,
                "moving the diverged data directory aside",
            )
            .await?;
            // The marker belonged to the directory now kept aside.
            here.remove_rewind_marker().await?;
            let slot = cfg.replication.slots.then_some(ctx.node.name.as_str());
            base_backup(ctx, source, slot).await?;
            format!("{by}; the diverged data directory is kept at {keep_as}")
        }
    };
    let here = ctx.here();
    let conninfo = desired::primary_conninfo(cfg, ctx.node, src.spec);
    here.write_recovery_offline(&conninfo, &slot_of(cfg, ctx.node))
        .await?;
    own_hba_offline(ctx).await?;
    pause::point("rebase:before-start").await;
    here.start().await?;
    here.wait_streaming().await?;
    Ok(format!("re-based from {source} by {how}; streaming"))
}

/// How a rewind went: done (how, for the report), or the node is rebuilt
/// by a base backup instead (and why).
enum Rewind {
    Done(String),
    Rebuild(String),
}

/// A CHECKPOINT on the source (pg_rewind reads its control file: it must
/// show the new timeline); with `keep`, this node's diverged WAL copied
/// aside, so that nothing a rewind discards is lost.
async fn checkpoint_source(
    here: Node<'_>,
    src: Node<'_>,
    keep: bool,
    keep_as: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Option<String>> {
    let src_sql = src.sql().await?;
    src_sql.checkpoint().await?;
    progress(&format!("CHECKPOINT on {} done", src.name()));
    if !keep {
        return Ok(None);
    }
    let wal_dir = keep_as.replace(".pgrepl-old-", ".pgrepl-diverged-wal-");
    let kept = keep_diverged_wal(here, &src_sql, &wal_dir)
        .await
        .with_context(|| {
            format!(
                "{}: the node is stopped and nothing was rewound; fix the cause and run apply again",
                here.name()
            )
        })?;
    progress(&kept);
    Ok(Some(kept))
}

/// pg_rewind from `src` with the rewind role, under its marker.
async fn rewind_from(
    here: Node<'_>,
    src: Node<'_>,
    cfg: &config::Config,
    rw: &config::Rewind,
    kept_wal: Option<String>,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Rewind> {
    let source_server = desired::rewind_conninfo(cfg, here.spec, src.spec, &rw.user);
    here.mark_rewind_started().await?;
    let out = here
        .pg_rewind(&source_server, |l| {
            progress(&format!("pg_rewind: {}", l.trim()));
            pause::point_blocking("rebase:during-rewind");
        })
        .await?;
    if out.success() {
        here.remove_rewind_marker().await?;
        return Ok(Rewind::Done(match kept_wal {
            Some(kept) => format!("pg_rewind; {kept}"),
            None => "pg_rewind".into(),
        }));
    }
    // It could not reach its source: nothing was rewound, and a base backup
    // from the same source over the same connection would fail alike.
    if let Some(failed) = connect_failure(&out.stderr) {
        here.remove_rewind_marker().await?;
        bail!(
            "pg_rewind on {} could not connect to its source {}: {failed}{}; the node is stopped and nothing was rewound; fix the cause and run apply again",
            here.name(),
            src.name(),
            tls_hint(&failed)
        );
    }
    let why = out
        .stderr
        .lines()
        .filter(|l| l.contains("error") || l.contains("fatal"))
        .collect::<Vec<_>>()
        .join("; ");
    progress(&format!(
        "pg_rewind failed ({why}); falling back to a fresh base backup"
    ));
    Ok(Rewind::Rebuild(format!(
        "base backup (pg_rewind failed: {why})"
    )))
}

/// libpq's line saying a connection could not be made, as pg_rewind or
/// pg_basebackup print it (with `LC_ALL=C`): `connection to server at
/// "HOST", port N failed: ...` (libpq 14 and later) or `could not connect
/// to server: ...`.
fn connect_failure(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .find(|l| {
            (l.contains("connection to server") && l.contains("failed"))
                || l.contains("could not connect to server")
        })
        .map(|l| l.trim().to_string())
}

/// What to check when libpq's message is about TLS (a certificate the
/// client could not verify, a file it could not read, a server without
/// TLS): the `[replication]` TLS keys. Empty otherwise.
fn tls_hint(said: &str) -> &'static str {
    let tls = ["SSL", "certificate", "sslrootcert", "sslcert", "sslkey"];
    if tls.iter().any(|w| said.contains(w)) {
        " (a TLS problem: check replication.sslmode, sslrootcert, sslcert and sslkey against the servers' certificates)"
    } else {
        ""
    }
}

/// What stopped a server, from `Node::stop`'s `stop (HOW)`: `pg_ctl stop
/// -D ...`, `docker stop NAME`, a unit.
fn stop_how(said: &str) -> &str {
    said.strip_prefix("stop (")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or(said)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_and_tls_are_recognised() {
        let rewind = "pg_rewind: error: connection to server at \"10.0.0.1\", port 5432 failed: SSL error: certificate verify failed\n";
        let failed = connect_failure(rewind);
        assert_eq!(
            failed.as_deref(),
            Some(rewind.trim()),
            "the whole line, libpq's reason included"
        );
        assert!(tls_hint(rewind).contains("replication.sslmode"));
        let old = "pg_rewind: fatal: could not connect to server: Connection refused";
        assert_eq!(connect_failure(old).as_deref(), Some(old));
        assert_eq!(tls_hint(old), "");
        let rewind_failed = "pg_rewind: error: could not find common ancestor of the source and target cluster's timelines";
        assert_eq!(connect_failure(rewind_failed), None);
    }

    #[test]
    fn lag_is_unknown_without_both_positions() {
        let has = Some(Lsn(0x0300_0000));
        assert_eq!(lag_behind("0/3000100", has), Some(0x100));
        assert_eq!(lag_behind("0/2000000", has), Some(0), "ahead is no lag");
        assert_eq!(lag_behind("0/3000100", None), None);
        assert_eq!(lag_behind("nonsense", has), None);
    }

    #[test]
    fn once_options_are_numbers_and_the_marker() {
        let once: BTreeMap<String, String> = [
            ("max_connections".to_string(), "200".to_string()),
            ("max_wal_senders".to_string(), "12".to_string()),
        ]
        .into();
        assert_eq!(
            once_options(&once).ok().as_deref(),
            Some("-c max_connections=200 -c max_wal_senders=12 -c pgrepl.once=1")
        );
        let bad: BTreeMap<String, String> =
            [("max_connections".to_string(), "1 -c x=y".to_string())].into();
        assert!(once_options(&bad).is_err());
    }
}
