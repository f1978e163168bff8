//! The only reads of the outside world before planning: every node at once,
//! one SSH round trip for files and one pipelined SQL batch per node (and
//! a second round trip on a server that preloads repmgr, to look for repmgrd).
//! Read-only: `SELECT`/`SHOW`, file reads, `pg_controldata`, `test -e`.

use std::time::Instant;

use anyhow::Context;
use indexmap::IndexMap;
use tokio_postgres::Client;

pub use crate::digest::digest;
pub use crate::observed::*;

use crate::config::{Config, Node};
use crate::node::{self, scripts};
use crate::transport::NodeSession;

/// Gathers every node concurrently; one node's failure never stops the others.
/// Returns the open sessions too, for a caller that goes on to act.
pub async fn gather(cfg: &Config) -> (Observed, IndexMap<String, NodeSession>) {
    gather_with(cfg, IndexMap::new()).await
}

/// Like `gather_with`, but nodes already found unreachable in this run are
/// not dialled again: waiting out a connect timeout twice learns nothing.
pub async fn regather(
    cfg: &Config,
    open: IndexMap<String, NodeSession>,
    known_unreachable: &IndexMap<String, UnreachableInfo>,
) -> (Observed, IndexMap<String, NodeSession>) {
    gather_some(cfg, open, known_unreachable).await
}

/// Like `gather`, reusing the sessions that are still open.
pub async fn gather_with(
    cfg: &Config,
    open: IndexMap<String, NodeSession>,
) -> (Observed, IndexMap<String, NodeSession>) {
    gather_some(cfg, open, &IndexMap::new()).await
}

async fn gather_some(
    cfg: &Config,
    mut open: IndexMap<String, NodeSession>,
    skip: &IndexMap<String, UnreachableInfo>,
) -> (Observed, IndexMap<String, NodeSession>) {
    let tasks = cfg
        .nodes
        .values()
        .filter(|node| !skip.contains_key(&node.name))
        .map(|node| {
            let existing = open.shift_remove(&node.name);
            gather_node_with(cfg, node, existing)
        })
        .collect::<Vec<_>>();
    let results = futures_util::future::join_all(tasks).await;
    let mut gathered = IndexMap::new();
    let mut sessions = IndexMap::new();
    for (state, session) in results {
        if let Some(s) = session {
            sessions.insert(state.name.clone(), s);
        }
        gathered.insert(state.name.clone(), state);
    }
    // In the file's order; skipped nodes keep what made them unreachable.
    let mut nodes = IndexMap::new();
    for node in cfg.nodes.values() {
        let state = match (gathered.shift_remove(&node.name), skip.get(&node.name)) {
            (Some(state), _) => state,
            (None, info) => NodeState {
                name: node.name.clone(),
                host: node.host.clone(),
                unreachable: info.cloned(),
                files: None,
                server: None,
                errors: Vec::new(),
                gather_ms: 0,
            },
        };
        nodes.insert(node.name.clone(), state);
    }
    (
        Observed {
            cluster: cfg.cluster.name.clone(),
            nodes,
        },
        sessions,
    )
}

/// Everything pgrepl needs to know about one node.
pub async fn gather_node(cfg: &Config, node: &Node) -> (NodeState, Option<NodeSession>) {
    gather_node_with(cfg, node, None).await
}

async fn gather_node_with(
    cfg: &Config,
    node: &Node,
    existing: Option<NodeSession>,
) -> (NodeState, Option<NodeSession>) {
    let started = Instant::now();
    let mut state = NodeState {
        name: node.name.clone(),
        host: node.host.clone(),
        unreachable: None,
        files: None,
        server: None,
        errors: Vec::new(),
        gather_ms: 0,
    };
    let connected = match existing {
        Some(s) => Ok(s),
        None => NodeSession::connect(node).await,
    };
    let session = match connected {
        Ok(s) => s,
        Err(e) => {
            state.unreachable = Some(UnreachableInfo {
                kind: e.kind,
                message: e.to_string(),
            });
            state.gather_ms = started.elapsed().as_millis() as u64;
            return (state, None);
        }
    };
    // The file check and the SQL batch go out together; a node without a
    // live server simply refuses the SQL connection, which is not an error.
    let (files, server) = tokio::join!(
        read_files(cfg, &session, node),
        read_server(cfg, &session, node)
    );
    match (files, server) {
        (Ok(mut files), Ok((server, on_disk))) if serves(node, &files, &server) => {
            files.running = true;
            on_disk.fill(&mut files);
            // Only a server that preloads repmgr's library can have a
            // repmgrd: only then is /proc searched for one (a second trip).
            if server
                .settings
                .get("shared_preload_libraries")
                .is_some_and(|s| crate::manager::preloads_repmgr(&s.setting))
            {
                files
                    .managers
                    .extend(find_repmgrd(cfg, &session, node).await);
            }
            state.files = Some(files);
            state.server = Some(server);
        }
        (Ok(files), Ok((server, _))) => {
            let pg = &node.postgres;
            state.errors.push(format!(
                "{}: the PostgreSQL server on {}/.s.PGSQL.{} serves {}, not the data directory {} of the cluster file; check data_dir, port and socket_dir for this node",
                node.name, pg.socket_dir, pg.port, server.data_directory, pg.data_dir
            ));
            state.files = Some(files);
        }
        (Ok(files), Err(e)) => {
            if files.running {
                state.errors.push(format!("{e:#}"));
            }
            state.files = Some(files);
        }
        (Err(e), _) => state.errors.push(format!("{e:#}")),
    }
    state.gather_ms = started.elapsed().as_millis() as u64;
    (state, Some(session))
}

/// Whether the server that answered SQL is this node's: its data directory
/// is the file's (as written, or with symlinks resolved) and initialised.
fn serves(node: &Node, files: &FileFacts, server: &ServerFacts) -> bool {
    let trim = |p: &str| p.trim_end_matches('/').to_string();
    let theirs = trim(&server.data_directory);
    files.data_dir == DataDir::Initialised
        && (theirs == trim(&node.postgres.data_dir)
            || files.data_dir_physical.as_deref().map(trim) == Some(theirs))
}

/// The libraries the file preloads on `node` (its `shared_preload_libraries`),
/// without names holding a newline (no library file has one).
pub fn preload_wanted(node: &Node) -> Vec<String> {
    let Some(s) = node.settings.get("shared_preload_libraries") else {
        return Vec::new();
    };
    let value = match &s.value {
        toml::Value::String(v) => v.clone(),
        other => other.to_string(),
    };
    parse::preload_names(&value)
        .into_iter()
        .filter(|n| !n.contains('\n'))
        .collect()
}

/// The gather script with the node's paths, then `extra`.
async fn run_gather(
    cfg: &Config,
    remote: node::Node<'_>,
    extra: &[&str],
) -> anyhow::Result<crate::transport::RemoteOutput> {
    let pg = &remote.spec.postgres;
    let conf_dir = pg.config_dir.as_deref().unwrap_or(&pg.data_dir);
    let passfile = crate::desired::passfile_path(cfg, remote.spec);
    let mut args = vec![pg.data_dir.as_str(), &pg.bin_dir, conf_dir, &passfile];
    args.extend_from_slice(extra);
    remote.script(scripts::GATHER, &args).await
}

async fn read_files(cfg: &Config, session: &NodeSession, node: &Node) -> anyhow::Result<FileFacts> {
    let libraries = preload_wanted(node);
    let joined = libraries.join("\n");
    let extra: &[&str] = if libraries.is_empty() {
        &[]
    } else {
        &["-", joined.as_str()]
    };
    let out = run_gather(cfg, node::Node::new(node, session), extra).await?;
    if !out.success() {
        anyhow::bail!(
            "{}: reading the data directory failed: {}",
            node.name,
            out.stderr.trim()
        );
    }
    let mut files = parse::parse_gather_output(&out.stdout)
        .map_err(|e| anyhow::anyhow!("{}: {e}", node.name))?;
    files.preload = parse::parse_preload_check(&out.stdout, &libraries);
    Ok(files)
}

/// The gather script's repmgrd search alone (its last argument `repmgrd`).
/// A failed search counts as a repmgrd: pgrepl cannot rule one out.
async fn find_repmgrd(cfg: &Config, session: &NodeSession, node: &Node) -> Vec<ManagerFacts> {
    let failed = |why: String| {
        vec![ManagerFacts {
            manager: Manager::Repmgrd,
            evidence: vec![format!(
                "the server preloads repmgr's library and looking for a repmgrd failed: {why}"
            )],
        }]
    };
    match run_gather(cfg, node::Node::new(node, session), &["repmgrd"]).await {
        Ok(out) if out.success() => parse::parse_manager_lines(&out.stdout),
        Ok(out) => failed(out.stderr.trim().to_string()),
        Err(e) => failed(format!("{e:#}")),
    }
}

const SQL_SERVER: &str = "SELECT current_setting('server_version_num')::int4,
  pg_is_in_recovery(),
  (SELECT system_identifier::text FROM pg_control_system()),
  CASE WHEN pg_is_in_recovery()
       THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver), (SELECT timeline_id FROM pg_control_checkpoint()))::int4
       ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int4 END,
  CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
  pg_last_wal_receive_lsn()::text,
  pg_last_wal_replay_lsn()::text,
  extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8,
  current_setting('data_directory'),
  current_setting('hba_file'),
  CASE WHEN pg_is_in_recovery() THEN NULL ELSE (SELECT sum(pg_database_size(oid)) FROM pg_database)::int8 END,
  pg_is_in_recovery() AND pg_is_wal_replay_paused()";

const SQL_SETTINGS: &str =
    "SELECT name, setting, unit, context, vartype, pending_restart, source FROM pg_settings";
const SQL_FILE_SETTINGS: &str = "SELECT coalesce(sourcefile, '') || ':' || coalesce(sourceline, 0) || ': ' || coalesce(name, '') || ': ' || error FROM pg_file_settings WHERE error IS NOT NULL AND error <> 'setting could not be applied'";
const SQL_ROLES: &str = "SELECT rolname::text, rolcanlogin, rolreplication, rolsuper, rolpassword,
  has_function_privilege(oid, 'pg_catalog.pg_ls_dir(text, boolean, boolean)', 'EXECUTE')
  AND has_function_privilege(oid, 'pg_catalog.pg_stat_file(text, boolean)', 'EXECUTE')
  AND has_function_privilege(oid, 'pg_catalog.pg_read_binary_file(text)', 'EXECUTE')
  AND has_function_privilege(oid, 'pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)', 'EXECUTE'),
  CASE WHEN rolvaliduntil IS NULL OR rolvaliduntil = 'infinity' THEN NULL ELSE rolvaliduntil::text END,
  coalesce(rolvaliduntil < now(), false), rolconnlimit
  FROM pg_authid WHERE rolname = ANY($1)";
// Custom (dotted) names: a placeholder is never in pg_settings, but
// current_setting() reads it (NULL when it is not set at all).
const SQL_CUSTOM_SETTINGS: &str = "SELECT n, current_setting(n, true) FROM unnest($1::text[]) WITH ORDINALITY AS t(n, i) ORDER BY i";
const SQL_HBA_ERRORS: &str =
    "SELECT coalesce(line_number, 0), error FROM pg_hba_file_rules WHERE error IS NOT NULL";
const SQL_SLOTS: &str = "SELECT slot_name::text, slot_type, active, restart_lsn::text, wal_status,
  CASE WHEN restart_lsn IS NULL THEN NULL
       ELSE pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) ELSE pg_current_wal_lsn() END, restart_lsn)::int8 END
  FROM pg_replication_slots ORDER BY slot_name";
// pg_stat_replication's own sources: the view also joins every backend
// and pg_authid, which costs a fresh backend more than the rest of the batch.
const SQL_REPLICATION: &str = "SELECT coalesce(a.application_name, ''), host(a.client_addr), w.state, w.sent_lsn::text, w.flush_lsn::text, w.replay_lsn::text,
  w.sync_state, extract(epoch FROM w.replay_lag)::float8
  FROM pg_stat_get_wal_senders() w, LATERAL pg_stat_get_activity(w.pid) a ORDER BY 1";
// flushed_lsn was received_lsn before PostgreSQL 13.
const SQL_WAL_RECEIVER: &str = "SELECT status, received_tli,
  coalesce(to_jsonb(w) ->> 'flushed_lsn', to_jsonb(w) ->> 'received_lsn'), slot_name, sender_host, sender_port
  FROM pg_stat_wal_receiver w";

// pg_control as the running server sees it; the state is what
// pg_controldata would print for a server that is up.
const SQL_CONTROL: &str =
    "SELECT CASE WHEN pg_is_in_recovery() THEN 'in archive recovery' ELSE 'in production' END,
  s.system_identifier::text, c.checkpoint_lsn::text, c.redo_lsn::text, c.timeline_id,
  r.min_recovery_end_lsn::text, r.min_recovery_end_timeline,
  current_setting('wal_log_hints')::bool, current_setting('data_checksums')::bool
  FROM pg_control_system() s, pg_control_checkpoint() c, pg_control_recovery() r";
// Whole files as bytes (text would reject invalid encoding); NULL if absent.
const SQL_READ_FILES: &str =
    "SELECT CASE WHEN (pg_stat_file(f, true)).isdir IS FALSE THEN pg_read_binary_file(f) END
  FROM unnest($1::text[]) WITH ORDINALITY AS t(f, i) ORDER BY i";
const SQL_HISTORIES: &str = "SELECT name, pg_read_binary_file('pg_wal/' || name)
  FROM pg_ls_dir('pg_wal') AS name WHERE name ~ '^[0-9A-F]{8}[.]history$' ORDER BY name";

// The libraries the file preloads ($1), each looked for as PostgreSQL
// does: `$libdir/` is the server's PKGLIBDIR, a name with a `/` is a path,
// any other a file in PKGLIBDIR; NAME or NAME.so. pg_config is a
// superuser's view, as are the file functions used above. Sent only when
// the file sets shared_preload_libraries.
const SQL_PRELOAD: &str = "SELECT c.d, l, EXISTS (SELECT 1 FROM unnest(ARRAY[p, p || '.so']) f
    WHERE (pg_stat_file(f, true)).isdir IS FALSE)
  FROM (SELECT setting AS d FROM pg_config WHERE name = 'PKGLIBDIR') c,
  unnest($1::text[]) WITH ORDINALITY AS t(l, i),
  LATERAL (SELECT CASE WHEN l LIKE '$libdir/%' THEN c.d || substr(l, 8)
                       WHEN strpos(l, '/') > 0 THEN l ELSE c.d || '/' || l END AS p) x
  ORDER BY i";

/// A running server's own files, read over SQL rather than by the script.
struct OnDisk {
    control: ControlData,
    hba_conf: Option<String>,
    auto_conf: Option<String>,
    histories: Vec<(u32, String)>,
    preload: Option<PreloadCheck>,
}

impl OnDisk {
    fn fill(self, files: &mut FileFacts) {
        files.auto_conf_has_password = self
            .auto_conf
            .as_deref()
            .is_some_and(parse::auto_conf_has_password);
        files.auto_conf = self.auto_conf.map(|t| parse::redact_auto_conf(&t));
        files.hba_conf = self.hba_conf;
        files.histories = self.histories;
        files.control = Some(self.control);
        files.preload = self.preload;
    }
}

async fn read_server(
    cfg: &Config,
    session: &NodeSession,
    node: &Node,
) -> anyhow::Result<(ServerFacts, OnDisk)> {
    let client = session
        .pg_client(node.postgres.port, &node.postgres.socket_dir)
        .await?;
    read_server_sql(cfg, node, &client)
        .await
        .with_context(|| format!("{}: reading the server's state over SQL failed", node.name))
}

async fn read_server_sql(
    cfg: &Config,
    node: &Node,
    client: &Client,
) -> anyhow::Result<(ServerFacts, OnDisk)> {
    let mut role_names = vec![cfg.replication.user.clone()];
    if let Some(r) = &cfg.rewind {
        role_names.push(r.user.clone());
    }
    let role_param: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&role_names];
    let pg = &node.postgres;
    let conf_dir = pg.config_dir.as_deref().unwrap_or(&pg.data_dir);
    // The same paths the script reads on a stopped node, and apply writes.
    let paths = vec![
        format!("{conf_dir}/pg_hba.conf"),
        format!("{}/postgresql.auto.conf", pg.data_dir),
    ];
    let path_param: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&paths];
    let custom_names = custom_setting_names(node);
    let custom_param: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&custom_names];
    // Only when the file names one: an empty batch entry still costs a round.
    let custom = async {
        if custom_names.is_empty() {
            Ok(Vec::new())
        } else {
            client.query(SQL_CUSTOM_SETTINGS, &custom_param).await
        }
    };
    let libraries = preload_wanted(node);
    let lib_param: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&libraries];
    let preload = async {
        if libraries.is_empty() {
            Ok(None)
        } else {
            client.query(SQL_PRELOAD, &lib_param).await.map(Some)
        }
    };
    // Issued together: tokio-postgres pipelines them on one connection.
    let (
        server,
        settings,
        file_errors,
        roles,
        hba,
        slots,
        replication,
        receiver,
        control,
        read,
        histories,
        custom,
        preload,
    ) = tokio::try_join!(
        client.query_one(SQL_SERVER, &[]),
        client.query(SQL_SETTINGS, &[]),
        client.query(SQL_FILE_SETTINGS, &[]),
        client.query(SQL_ROLES, &role_param),
        client.query(SQL_HBA_ERRORS, &[]),
        client.query(SQL_SLOTS, &[]),
        client.query(SQL_REPLICATION, &[]),
        client.query(SQL_WAL_RECEIVER, &[]),
        client.query_one(SQL_CONTROL, &[]),
        client.query(SQL_READ_FILES, &path_param),
        client.query(SQL_HISTORIES, &[]),
        custom,
        preload,
    )?;
    let lsn = |v: Option<String>| v.and_then(|s| s.parse::<Lsn>().ok());
    let settings: IndexMap<String, PgSetting> = settings
        .iter()
        .map(|r| {
            let name: String = r.get(0);
            let mut setting: String = r.get::<_, Option<String>>(1).unwrap_or_default();
            if name == "primary_conninfo" {
                setting = parse::redact_conninfo(&setting);
            }
            (
                name.clone(),
                PgSetting {
                    name,
                    setting,
                    unit: r.get(2),
                    context: r.get(3),
                    vartype: r.get(4),
                    pending_restart: r.get(5),
                    source: r.get(6),
                },
            )
        })
        .collect();
    let roles = roles
        .iter()
        .map(|r| {
            let name: String = r.get(0);
            let verifier: Option<String> = r.get(4);
            (
                name.clone(),
                RoleFacts {
                    name,
                    login: r.get(1),
                    replication: r.get(2),
                    superuser: r.get(3),
                    valid_until: r.get(6),
                    expired: r.get(7),
                    connection_limit: r.get(8),
                    verifier_digest: verifier.as_deref().map(digest),
                    verifier,
                    rewind_grants: r.get(5),
                },
            )
        })
        .collect();
    let text = |b: Option<Vec<u8>>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
    let on_disk = OnDisk {
        control: ControlData {
            state: control.get(0),
            system_identifier: control.get(1),
            checkpoint_lsn: lsn(control.get(2)),
            checkpoint_redo_lsn: lsn(control.get(3)),
            checkpoint_timeline: u32::try_from(control.get::<_, i32>(4)).ok(),
            min_recovery_end_lsn: lsn(control.get(5)).filter(|l| l.0 != 0),
            min_recovery_end_timeline: u32::try_from(control.get::<_, i32>(6))
                .ok()
                .filter(|t| *t != 0),
            wal_log_hints: control.get(7),
            data_checksums: control.get(8),
            recorded_settings: Default::default(),
        },
        hba_conf: read.first().and_then(|r| text(r.get(0))),
        auto_conf: read.get(1).and_then(|r| text(r.get(0))),
        histories: histories
            .iter()
            .filter_map(|r| {
                let name: String = r.get(0);
                let tli = u32::from_str_radix(name.strip_suffix(".history")?, 16).ok()?;
                Some((tli, text(r.get(1))?))
            })
            .collect(),
        preload: preload.map(|rows| PreloadCheck {
            libdir: rows.first().map(|r| r.get(0)),
            missing: rows
                .iter()
                .filter(|r| !r.get::<_, bool>(2))
                .map(|r| r.get(1))
                .collect(),
        }),
    };
    let server = ServerFacts {
        version_num: u32::try_from(server.get::<_, i32>(0)).unwrap_or(0),
        in_recovery: server.get(1),
        system_identifier: server.get(2),
        timeline: u32::try_from(server.get::<_, i32>(3)).unwrap_or(0),
        current_lsn: lsn(server.get(4)),
        receive_lsn: lsn(server.get(5)),
        replay_lsn: lsn(server.get(6)),
        replay_delay_s: server.get(7),
        data_directory: server.get(8),
        hba_file: server.get(9),
        database_size_bytes: server.get(10),
        replay_paused: server.get::<_, Option<bool>>(11).unwrap_or(false),
        custom_settings: custom
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, Option<String>>(1)))
            .filter(|(n, _)| !settings.contains_key(n))
            .collect(),
        settings,
        file_setting_errors: file_errors.iter().map(|r| r.get(0)).collect(),
        roles,
        hba_errors: hba.iter().map(|r| (r.get(0), r.get(1))).collect(),
        slots: slots
            .iter()
            .map(|r| SlotFacts {
                name: r.get(0),
                slot_type: r.get(1),
                active: r.get(2),
                restart_lsn: lsn(r.get(3)),
                wal_status: r.get(4),
                retained_bytes: r.get(5),
            })
            .collect(),
        replication: replication
            .iter()
            .map(|r| ReplicationFacts {
                application_name: r.get(0),
                client_addr: r.get(1),
                state: r.get(2),
                sent_lsn: lsn(r.get(3)),
                flush_lsn: lsn(r.get(4)),
                replay_lsn: lsn(r.get(5)),
                sync_state: r.get(6),
                replay_lag_s: r.get(7),
            })
            .collect(),
        wal_receiver: receiver.first().map(|r| WalReceiverFacts {
            status: r.get(0),
            received_tli: r
                .get::<_, Option<i32>>(1)
                .and_then(|t| u32::try_from(t).ok()),
            flushed_lsn: lsn(r.get(2)),
            slot_name: r.get(3),
            sender_host: r.get(4),
            sender_port: r.get(5),
        }),
    };
    Ok((server, on_disk))
}

/// The custom (dotted) setting names the file sets on `node`.
fn custom_setting_names(node: &Node) -> Vec<String> {
    node.settings
        .keys()
        .filter(|n| crate::guc::is_custom_name(n))
        .cloned()
        .collect()
}
