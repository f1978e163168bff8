//! The only reads of the outside world before planning: every node at once,
//! one SSH round trip for files and one pipelined SQL batch per node (and
//! a second round trip on a server that preloads repmgr, to look for repmgrd).
//! Read-only: `SELECT`/`SHOW`, file reads, `pg_controldata`, `test -e`.

mod poolers;

use std::time::Instant;

use anyhow::Context;
use indexmap::IndexMap;

pub use crate::digest::digest;
pub use crate::observed::*;

use crate::config::{self, Config};
use crate::node::sql::{ServerFiles, ServerQuery};
use crate::node::{Node, scripts};
use crate::transport::{NodeSession, RemoteOutput};

/// Gathers every node concurrently; one node's failure never stops the others.
/// Returns the open sessions too, for a caller that goes on to act.
pub async fn gather(cfg: &Config) -> (Observed, IndexMap<String, NodeSession>) {
    gather_with(cfg, IndexMap::new()).await
}

/// Like `gather_with`, but nodes and poolers already found unreachable in
/// this run are not dialled again: waiting out a connect timeout twice
/// learns nothing.
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
    let (results, poolers) = tokio::join!(
        futures_util::future::join_all(tasks),
        poolers::gather_poolers(cfg, skip)
    );
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
            poolers,
        },
        sessions,
    )
}

/// Everything pgrepl needs to know about one node.
pub async fn gather_node(cfg: &Config, node: &config::Node) -> (NodeState, Option<NodeSession>) {
    gather_node_with(cfg, node, None).await
}

async fn gather_node_with(
    cfg: &Config,
    node: &config::Node,
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
    let remote = Node::new(node, &session);
    let (files, server) = tokio::join!(read_files(cfg, remote), read_server(cfg, remote));
    match (files, server) {
        (Ok(mut files), Ok((server, on_disk))) if serves(node, &files, &server) => {
            files.running = true;
            fill(on_disk, &mut files);
            // Only a server that preloads repmgr's library can have a
            // repmgrd: only then is /proc searched for one (a second trip).
            if server
                .settings
                .get("shared_preload_libraries")
                .is_some_and(|s| parse::preloads_repmgr(&s.setting))
            {
                files.managers.extend(find_repmgrd(cfg, remote).await);
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
fn serves(node: &config::Node, files: &FileFacts, server: &ServerFacts) -> bool {
    let trim = |p: &str| p.trim_end_matches('/').to_string();
    let theirs = trim(&server.data_directory);
    files.data_dir == DataDir::Initialised
        && (theirs == trim(&node.postgres.data_dir)
            || files.data_dir_physical.as_deref().map(trim) == Some(theirs))
}

/// The gather script with the node's paths, then `extra`.
async fn run_gather(
    cfg: &Config,
    remote: Node<'_>,
    extra: &[&str],
) -> anyhow::Result<RemoteOutput> {
    let pg = &remote.spec.postgres;
    let conf_dir = pg.config_dir.as_deref().unwrap_or(&pg.data_dir);
    let passfile = crate::desired::passfile_path(cfg, remote.spec);
    let mut args = vec![pg.data_dir.as_str(), &pg.bin_dir, conf_dir, &passfile];
    args.extend_from_slice(extra);
    remote.script(scripts::GATHER, &args).await
}

async fn read_files(cfg: &Config, remote: Node<'_>) -> anyhow::Result<FileFacts> {
    let node = remote.spec;
    let libraries = crate::desired::preload_libraries(node);
    let joined = libraries.join("\n");
    let extra: &[&str] = if libraries.is_empty() {
        &[]
    } else {
        &["-", joined.as_str()]
    };
    // On a container node, its layout is checked alongside (one round trip
    // in parallel), and believed first.
    let (checked, out) = tokio::join!(remote.check_container(), run_gather(cfg, remote, extra));
    checked?;
    let out = out?;
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
async fn find_repmgrd(cfg: &Config, remote: Node<'_>) -> Vec<ManagerFacts> {
    let failed = |why: String| {
        vec![ManagerFacts {
            manager: Manager::Repmgrd,
            evidence: vec![format!(
                "the server preloads repmgr's library and looking for a repmgrd failed: {why}"
            )],
        }]
    };
    match run_gather(cfg, remote, &["repmgrd"]).await {
        Ok(out) if out.success() => parse::parse_manager_lines(&out.stdout),
        Ok(out) => failed(out.stderr.trim().to_string()),
        Err(e) => failed(format!("{e:#}")),
    }
}

/// A running server's own files, read over SQL, into what the gather
/// script would have read from a stopped node.
fn fill(on_disk: ServerFiles, files: &mut FileFacts) {
    files.auto_conf_has_password = on_disk
        .auto_conf
        .as_deref()
        .is_some_and(parse::auto_conf_has_password);
    files.auto_conf = on_disk.auto_conf.map(|t| parse::redact_auto_conf(&t));
    files.hba_conf = on_disk.hba_conf;
    files.histories = on_disk.histories;
    files.control = Some(on_disk.control);
    files.preload = on_disk.preload;
}

async fn read_server(cfg: &Config, remote: Node<'_>) -> anyhow::Result<(ServerFacts, ServerFiles)> {
    let spec = remote.spec;
    let mut roles = vec![cfg.replication.user.clone()];
    if let Some(r) = &cfg.rewind {
        roles.push(r.user.clone());
    }
    let query = ServerQuery {
        roles,
        auto_conf: format!("{}/postgresql.auto.conf", spec.postgres.data_dir),
        custom_settings: custom_setting_names(spec),
        libraries: crate::desired::preload_libraries(spec),
    };
    remote
        .sql()
        .await?
        .read_server(&query)
        .await
        .with_context(|| format!("{}: reading the server's state over SQL failed", spec.name))
}

/// The custom (dotted) setting names the file sets on `node`.
fn custom_setting_names(node: &config::Node) -> Vec<String> {
    node.settings
        .keys()
        .filter(|n| crate::guc::is_custom_name(n))
        .cloned()
        .collect()
}
