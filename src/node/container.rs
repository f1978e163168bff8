//! A PostgreSQL container as `docker container inspect` (or podman's)
//! describes it, and the argument vectors that act on it: its lifecycle
//! (the container is the service: start, stop, restart) and one-off
//! containers of the same image, on the same volumes, as the image's
//! postgres user, for the work that needs the server stopped (offline
//! auto.conf, standby.signal, pg_rewind, pg_controldata, a base backup into
//! the volume). Files written that way belong to the right uid by
//! construction: no `chown` is ever needed.
//!
//! Pure: it parses JSON and builds argument vectors; the node's `Access`
//! runs them. No argument vector built here carries an environment
//! variable, and nothing of the container's own environment (where
//! `POSTGRES_PASSWORD` lives) is ever read: secrets travel on stdin only.

use std::fmt;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

/// How long `docker stop` lets PostgreSQL shut down before it kills it
/// (`-t`): a fast shutdown writes a checkpoint first, which may take far
/// longer than docker's default 10 s, and a SIGKILL then means crash
/// recovery at the next start. The same bound as pg_ctl's waits.
pub const STOP_TIMEOUT_S: u32 = 120;
/// What a docker CLI command may take beyond its own waits (the daemon's
/// answer, a container's start).
pub const CLI_MARGIN: Duration = Duration::from_secs(30);

/// The container engine's CLI on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Docker,
    Podman,
}

impl Engine {
    pub fn program(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.program())
    }
}

/// What a container is doing, as `.State.Status` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Made by `docker create` (or `run`) and never started.
    Created,
    Running,
    Paused,
    Restarting,
    /// Stopped: `docker stop`, or its main process ended.
    Exited,
    Removing,
    Dead,
    /// A status this version does not know (podman has `configured`,
    /// `stopped`, `stopping`), kept as written.
    Other(String),
}

impl State {
    fn parse(status: &str) -> State {
        match status {
            "created" | "configured" => State::Created,
            "running" => State::Running,
            "paused" => State::Paused,
            "restarting" => State::Restarting,
            "exited" | "stopped" => State::Exited,
            "removing" => State::Removing,
            "dead" => State::Dead,
            other => State::Other(other.to_string()),
        }
    }

    /// Whether the server may be running: offline work must wait, and a
    /// one-off container on the same volume would be a second writer.
    pub fn may_run(&self) -> bool {
        !matches!(self, State::Created | State::Exited | State::Dead)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Created => "created",
            State::Running => "running",
            State::Paused => "paused",
            State::Restarting => "restarting",
            State::Exited => "exited",
            State::Removing => "removing",
            State::Dead => "dead",
            State::Other(s) => s,
        })
    }
}

/// Where a mount's data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A named volume (`docker volume`), by name.
    Volume(String),
    /// A directory of the host, by its path there.
    Bind(String),
    /// A tmpfs: nothing to carry over but the mount point.
    Tmpfs,
}

/// One mount of the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: Source,
    /// The path inside the container.
    pub destination: String,
    pub read_only: bool,
}

impl Mount {
    /// Whether `path` (inside the container) lies on this mount.
    pub fn covers(&self, path: &str) -> bool {
        let dest = self.destination.trim_end_matches('/');
        let path = path.trim_end_matches('/');
        dest.is_empty() || path == dest || path.starts_with(&format!("{dest}/"))
    }

    /// The `docker run` arguments that give a one-off container this mount.
    fn run_args(&self) -> anyhow::Result<[String; 2]> {
        let ro = if self.read_only { ":ro" } else { "" };
        // `-v SOURCE:DEST[:ro]` cannot say a path with a ':' (and --mount's
        // CSV cannot say a ',' the same way in docker and podman).
        let plain = |p: &str| !p.contains(':') && !p.contains(',') && !p.is_empty();
        if !plain(&self.destination) {
            bail!(
                "the mount point {:?} holds ':' or ',', which `-v` cannot pass on",
                self.destination
            );
        }
        Ok(match &self.source {
            Source::Volume(name) | Source::Bind(name) if !plain(name) => bail!(
                "the mount source {name:?} (at {}) holds ':' or ',', which `-v` cannot pass on",
                self.destination
            ),
            Source::Volume(name) | Source::Bind(name) => {
                ["-v".to_string(), format!("{name}:{}{ro}", self.destination)]
            }
            Source::Tmpfs => ["--tmpfs".to_string(), self.destination.clone()],
        })
    }
}

/// A user and group id, as `--user UID:GID` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
}

impl fmt::Display for Ids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

/// Who one-off containers (and `exec`) run as: the container's own user
/// when it names one (numeric, or a name to look up in the image), else
/// the image's `postgres` (the official image starts as root and its
/// entrypoint drops to postgres, uid 999).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunAs {
    Ids(Ids),
    /// A user name, with a group when `.Config.User` said one: looked up in
    /// the image with [`user_probe`].
    Lookup {
        user: String,
        group: Option<String>,
    },
}

/// The container as `inspect` describes it: only what pgrepl acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// As the cluster file and the engine name it (no leading `/`).
    pub name: String,
    pub id: String,
    /// The image's ID (`sha256:...`): one-off containers use it, not the
    /// name, so a tag moved since (`postgres:16` pulled again) changes
    /// nothing.
    pub image_id: String,
    /// The image as the container was created from it (`postgres:16`), for
    /// messages.
    pub image_name: String,
    pub state: State,
    /// `.Config.User`, when not empty.
    pub user: Option<String>,
    /// `.HostConfig.NetworkMode` (`host`, `bridge`, a compose network).
    pub network_mode: String,
    pub mounts: Vec<Mount>,
    /// `.Config.StopSignal`; `None` means SIGTERM, a smart shutdown, which
    /// waits for every client to leave.
    pub stop_signal: Option<String>,
}

// What `inspect` prints, leniently: docker and podman differ in details.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawContainer {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: String,
    /// podman's name of the image.
    #[serde(default)]
    image_name: Option<String>,
    #[serde(default)]
    state: Option<RawState>,
    #[serde(default)]
    config: Option<RawConfig>,
    #[serde(default)]
    host_config: Option<RawHostConfig>,
    #[serde(default)]
    mounts: Option<Vec<RawMount>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawState {
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    stop_signal: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawHostConfig {
    #[serde(default)]
    network_mode: Option<String>,
}

#[derive(Deserialize)]
struct RawMount {
    #[serde(rename = "Type", default)]
    kind: String,
    #[serde(rename = "Name", default)]
    name: Option<String>,
    #[serde(rename = "Source", default)]
    source: Option<String>,
    #[serde(rename = "Destination", default)]
    destination: String,
    #[serde(rename = "RW", default = "yes")]
    rw: bool,
}

fn yes() -> bool {
    true
}

/// The argument vector that describes `container`: its stdout goes to
/// [`parse_inspect`]. It names a container only, never an image of the same
/// name.
pub fn inspect(engine: Engine, container: &str) -> Vec<String> {
    let mut argv = words(&[engine.program(), "container", "inspect"]);
    argv.push("--".to_string());
    argv.push(container.to_string());
    argv
}

/// The container `inspect` printed, or `None` when it does not exist (the
/// engine prints `[]`, and exits non-zero). Anything else that is not one
/// container is an error naming `container`.
pub fn parse_inspect(container: &str, json: &str) -> anyhow::Result<Option<Container>> {
    let all: Vec<RawContainer> = serde_json::from_str(json.trim()).with_context(|| {
        format!("container {container}: `inspect` printed something that is not its JSON array")
    })?;
    let raw = match all.len() {
        0 => return Ok(None),
        1 => all.into_iter().next(),
        n => bail!("container {container}: `inspect` described {n} containers, not one"),
    };
    let Some(raw) = raw else { return Ok(None) };
    Ok(Some(from_raw(container, raw)?))
}

fn from_raw(container: &str, raw: RawContainer) -> anyhow::Result<Container> {
    if raw.image.is_empty() {
        bail!("container {container}: `inspect` names no image");
    }
    let config = raw.config;
    let mounts = raw
        .mounts
        .unwrap_or_default()
        .into_iter()
        .map(|m| mount_from_raw(container, m))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let name = raw.name.trim_start_matches('/');
    let image_name = config
        .as_ref()
        .and_then(|c| c.image.clone())
        .or(raw.image_name)
        .unwrap_or_else(|| raw.image.clone());
    Ok(Container {
        name: if name.is_empty() { container } else { name }.to_string(),
        id: raw.id,
        image_id: raw.image,
        image_name,
        state: State::parse(&raw.state.map(|s| s.status).unwrap_or_default()),
        user: config
            .as_ref()
            .and_then(|c| c.user.clone())
            .filter(|u| !u.is_empty()),
        network_mode: raw
            .host_config
            .and_then(|h| h.network_mode)
            .unwrap_or_default(),
        mounts,
        stop_signal: config.and_then(|c| c.stop_signal).filter(|s| !s.is_empty()),
    })
}

fn mount_from_raw(container: &str, m: RawMount) -> anyhow::Result<Mount> {
    let source = match m.kind.as_str() {
        "volume" => Source::Volume(m.name.filter(|n| !n.is_empty()).with_context(|| {
            format!(
                "container {container}: the volume at {} has no name",
                m.destination
            )
        })?),
        "bind" => Source::Bind(m.source.filter(|s| !s.is_empty()).with_context(|| {
            format!(
                "container {container}: the bind mount at {} has no source",
                m.destination
            )
        })?),
        "tmpfs" => Source::Tmpfs,
        other => bail!(
            "container {container}: its mount at {} is of type {other:?}, which a one-off container cannot share",
            m.destination
        ),
    };
    if !m.destination.starts_with('/') {
        bail!(
            "container {container}: a mount point {:?} that is not an absolute path",
            m.destination
        );
    }
    Ok(Mount {
        source,
        destination: m.destination,
        read_only: !m.rw,
    })
}

/// Why the data directory cannot be worked on offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDirProblem {
    /// It is in the container's own writable layer: a one-off container
    /// would not see it (and it goes with the container).
    NotOnAMount,
    /// On a tmpfs: gone at the container's next stop.
    OnTmpfs,
    ReadOnly,
}

impl fmt::Display for DataDirProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataDirProblem::NotOnAMount => {
                "is on no volume or bind mount of the container, so a one-off container of its image cannot reach it: give the container a volume there"
            }
            DataDirProblem::OnTmpfs => {
                "is on a tmpfs of the container: it is lost at every stop; give the container a volume there"
            }
            DataDirProblem::ReadOnly => "is on a read-only mount of the container",
        })
    }
}

impl Container {
    /// The mount that holds `path`: the deepest one that covers it.
    pub fn mount_of(&self, path: &str) -> Option<&Mount> {
        self.mounts
            .iter()
            .filter(|m| m.covers(path))
            .max_by_key(|m| m.destination.trim_end_matches('/').len())
    }

    /// The mount that holds the data directory, or why offline work
    /// cannot reach it.
    pub fn data_dir_mount(&self, data_dir: &str) -> Result<&Mount, DataDirProblem> {
        let m = self.mount_of(data_dir).ok_or(DataDirProblem::NotOnAMount)?;
        match (&m.source, m.read_only) {
            (Source::Tmpfs, _) => Err(DataDirProblem::OnTmpfs),
            (_, true) => Err(DataDirProblem::ReadOnly),
            _ => Ok(m),
        }
    }

    /// Why pgrepl cannot manage a server whose data directory is
    /// `data_dir` in this container, if it cannot: the data directory must
    /// be on a writable volume or bind mount (one-off containers work on it
    /// while the server is stopped), and so must its parent directory,
    /// where pgrepl keeps the passfile, its markers and what it sets aside
    /// (the official image's layout from PostgreSQL 18 on: a volume at
    /// /var/lib/postgresql, PGDATA below it).
    pub fn layout_problem(&self, data_dir: &str) -> Option<String> {
        let dd = data_dir.trim_end_matches('/');
        let mount = match self.data_dir_mount(dd) {
            Ok(m) => m,
            Err(p) => return Some(format!("the data directory {dd} {p}")),
        };
        let parent = match dd.rsplit_once('/') {
            Some(("", _)) | None => "/",
            Some((p, _)) => p,
        };
        let layout = format!(
            "put it in a subdirectory of a volume instead: keep the volume and set PGDATA to a directory in it (e.g. PGDATA={dd}/pgdata, as the official image's documentation shows), or mount the volume at {parent} with PGDATA below it (the official image's layout from PostgreSQL 18 on); README \"PostgreSQL in containers\" shows how to move an existing volume's data"
        );
        if mount.destination.trim_end_matches('/') == dd {
            return Some(format!(
                "the data directory {dd} is the mount point of its volume: pgrepl sets a data directory aside and builds a new one beside it (a re-base), and keeps its passfile and markers beside it, none of which a mount point allows; {layout}"
            ));
        }
        match self.mount_of(parent) {
            Some(m) if !m.read_only && m.source != Source::Tmpfs => None,
            _ => Some(format!(
                "the parent {parent} of the data directory {dd} is on no writable volume, where pgrepl keeps its passfile and markers; {layout}"
            )),
        }
    }

    /// Whether `docker stop` asks for a fast shutdown (SIGINT). With
    /// SIGTERM (docker's default) PostgreSQL waits for its clients to
    /// leave, and docker kills it when its time is up.
    pub fn stops_fast(&self) -> bool {
        matches!(self.stop_signal.as_deref(), Some("SIGINT" | "INT" | "2"))
    }

    /// Who one-off containers run as (see [`RunAs`]). Root is never the
    /// answer: a container that names root starts as root and drops to
    /// postgres in its entrypoint, as the official image does.
    pub fn run_as(&self) -> RunAs {
        let postgres = RunAs::Lookup {
            user: "postgres".to_string(),
            group: None,
        };
        let Some(spec) = self.user.as_deref() else {
            return postgres;
        };
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        if user.is_empty() || user == "0" || user == "root" {
            return postgres;
        }
        match (user.parse::<u32>(), group.map(str::parse::<u32>)) {
            (Ok(uid), Some(Ok(gid))) => RunAs::Ids(Ids { uid, gid }),
            _ => RunAs::Lookup {
                user: user.to_string(),
                group: group.map(str::to_string),
            },
        }
    }
}

/// The argument vector that asks the image which ids `user` has:
/// `id USER` in a throw-away container with no network. Its stdout goes
/// to [`parse_id`].
pub fn user_probe(engine: Engine, image_id: &str, user: &str) -> Vec<String> {
    let mut argv = words(&[
        engine.program(),
        "run",
        "--rm",
        "--network",
        "none",
        "--pull",
        "never",
        "--entrypoint",
        "id",
        "--",
    ]);
    argv.push(image_id.to_string());
    argv.push(user.to_string());
    argv
}

/// The ids in `id`'s output (`uid=999(postgres) gid=999(postgres)
/// groups=999(postgres)`).
pub fn parse_id(out: &str) -> anyhow::Result<Ids> {
    let field = |key: &str| -> anyhow::Result<u32> {
        let word = out
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .with_context(|| format!("`id` printed no {key}... in {:?}", out.trim()))?;
        let digits: String = word.chars().take_while(char::is_ascii_digit).collect();
        digits
            .parse()
            .with_context(|| format!("`id` printed {key}{word}, not a number"))
    };
    Ok(Ids {
        uid: field("uid=")?,
        gid: field("gid=")?,
    })
}

/// What the container's lifecycle does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Start,
    Stop,
    Restart,
}

/// A command to run on the node, with how long to let it run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub argv: Vec<String>,
    pub limit: Duration,
}

/// `docker start|stop|restart` of the container. Stop and restart give
/// PostgreSQL [`STOP_TIMEOUT_S`] to shut down before the engine kills it;
/// the command's own limit covers that wait and the engine's answer.
/// `docker start` returns once the main process runs: the caller waits for
/// the server to accept connections.
pub fn lifecycle(engine: Engine, action: Lifecycle, container: &str) -> Invocation {
    let (verb, wait) = match action {
        Lifecycle::Start => ("start", None),
        Lifecycle::Stop => ("stop", Some(STOP_TIMEOUT_S)),
        Lifecycle::Restart => ("restart", Some(STOP_TIMEOUT_S)),
    };
    let mut argv = words(&[engine.program(), verb]);
    if let Some(s) = wait {
        argv.push("-t".to_string());
        argv.push(s.to_string());
    }
    argv.push("--".to_string());
    argv.push(container.to_string());
    Invocation {
        argv,
        limit: Duration::from_secs(u64::from(wait.unwrap_or(0))) + CLI_MARGIN,
    }
}

/// `docker exec` of `command` in the running container, as `user`, with
/// stdin open (what a command reads, secrets included, comes that way).
pub fn exec<S: AsRef<str>>(
    engine: Engine,
    container: &str,
    user: Ids,
    command: &[S],
) -> Vec<String> {
    let mut argv = words(&[engine.program(), "exec", "-i", "-u"]);
    argv.push(user.to_string());
    argv.push("--".to_string());
    argv.push(container.to_string());
    argv.extend(command.iter().map(|a| a.as_ref().to_string()));
    argv
}

/// The network of a one-off container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// The host's: pg_basebackup and pg_rewind reach the other nodes as the
    /// host does, whatever network the container itself is on.
    Host,
    /// None: work on the files only.
    None,
}

/// The name of the container's one-off: one at a time per container, so a
/// second one (a rerun while a killed run's is still at work) fails at once
/// ("name already in use") instead of writing into the same volume.
pub fn one_off_name(container: &str) -> String {
    format!("{container}-pgrepl-offline")
}

/// `docker run --rm -i` of `command` in a one-off container of the
/// container's image, with all its mounts, as `user`, the image's
/// entrypoint bypassed (a custom one might initdb, or wait for something):
/// the image by ID, never pulled. No environment is passed, the
/// container's own included.
pub fn one_off<S: AsRef<str>>(
    engine: Engine,
    container: &Container,
    user: Ids,
    network: Network,
    command: &[S],
) -> anyhow::Result<Vec<String>> {
    let Some((program, args)) = command.split_first() else {
        bail!(
            "container {}: a one-off container needs a command",
            container.name
        );
    };
    let mut argv = words(&[engine.program(), "run", "--rm", "-i", "--name"]);
    argv.push(one_off_name(&container.name));
    argv.extend(words(&["--pull", "never", "--network"]));
    argv.push(
        match network {
            Network::Host => "host",
            Network::None => "none",
        }
        .to_string(),
    );
    argv.push("--user".to_string());
    argv.push(user.to_string());
    for m in &container.mounts {
        let args = m
            .run_args()
            .with_context(|| format!("container {}", container.name))?;
        argv.extend(args);
    }
    argv.push("--entrypoint".to_string());
    argv.push(program.as_ref().to_string());
    argv.push("--".to_string());
    argv.push(container.image_id.clone());
    argv.extend(args.iter().map(|a| a.as_ref().to_string()));
    Ok(argv)
}

fn words(ws: &[&str]) -> Vec<String> {
    ws.iter().map(|w| w.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docker container inspect pg-node1` on the lab (`lab.sh --runtime
    /// docker`, Docker 20.10), trimmed to the fields that matter and two
    /// around them.
    const LAB_NODE1: &str = r#"[
    {
        "Id": "aec9fd6ac5e59be371d51b74d45451a44eb90bdc56b9ef3f108f7959a71cd968",
        "Created": "2026-11-30T23:01:55.561687355Z",
        "Path": "docker-entrypoint.sh",
        "Args": ["postgres"],
        "State": {
            "Status": "running", "Running": true, "Paused": false, "Restarting": false,
            "OOMKilled": false, "Dead": false, "Pid": 14783, "ExitCode": 0, "Error": "",
            "StartedAt": "2026-11-30T23:01:55.708141148Z", "FinishedAt": "0001-01-01T00:00:00Z"
        },
        "Image": "sha256:4dcd26c9eea29a8fd99138c0254eab104c2be0ad01c13fbfe403f145fa1c6c2b",
        "Name": "/pg-node1",
        "HostConfig": {
            "Binds": ["pgdata:/var/lib/postgresql/data"],
            "NetworkMode": "host",
            "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}
        },
        "Mounts": [
            {
                "Type": "volume", "Name": "pgdata",
                "Source": "/var/tmp/pgrepl-lab/181/node1/docker/data/volumes/pgdata/_data",
                "Destination": "/var/lib/postgresql/data", "Driver": "local", "Mode": "z",
                "RW": true, "Propagation": ""
            }
        ],
        "Config": {
            "Hostname": "node1", "User": "",
            "Env": ["PGREPL_LAB_INITDB=1", "PATH=/usr/lib/postgresql/15/bin:/usr/bin:/bin", "PGDATA=/var/lib/postgresql/data"],
            "Cmd": ["postgres"],
            "Image": "pgrepl-lab/postgres:15",
            "Volumes": {"/var/lib/postgresql/data": {}},
            "Entrypoint": ["docker-entrypoint.sh"],
            "StopSignal": "SIGINT"
        }
    }
]"#;

    /// A ProxPanel-style container of the official image: a compose
    /// network, the password in its environment, an init script bound
    /// read-only, the data in a named volume.
    const PROXPANEL: &str = r#"[{
        "Id": "5f0c",
        "Name": "/proxpanel-db",
        "Image": "sha256:b781f3a53e61df916d97dcb34bb8e7c9b2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2",
        "State": {"Status": "exited", "ExitCode": 0},
        "HostConfig": {"NetworkMode": "proxpanel_default"},
        "Mounts": [
            {"Type": "bind", "Source": "/opt/proxpanel/init.sql", "Destination": "/docker-entrypoint-initdb.d/init.sql", "Mode": "ro", "RW": false},
            {"Type": "volume", "Name": "proxpanel_postgres_data", "Source": "/var/lib/docker/volumes/proxpanel_postgres_data/_data", "Destination": "/var/lib/postgresql/data", "Driver": "local", "RW": true}
        ],
        "Config": {
            "User": "",
            "Env": ["POSTGRES_PASSWORD=hunter2-very-secret", "POSTGRES_USER=proxpanel", "PGDATA=/var/lib/postgresql/data"],
            "Image": "postgres:16",
            "StopSignal": "SIGINT"
        }
    }]"#;

    /// podman's shape: no leading '/', an ID without `sha256:`, `ImageName`.
    const PODMAN: &str = r#"[{
        "Id": "9a1b",
        "Name": "pg",
        "Image": "0e2d8a6a5f3c",
        "ImageName": "docker.io/library/postgres:16",
        "State": {"Status": "running"},
        "HostConfig": {"NetworkMode": "bridge"},
        "Mounts": [{"Type": "volume", "Name": "pgdata", "Source": "/home/u/.local/share/containers/storage/volumes/pgdata/_data", "Destination": "/var/lib/postgresql/data", "RW": true}],
        "Config": {"User": "999:999", "StopSignal": "2"}
    }]"#;

    fn lab() -> Container {
        parse_inspect("pg-node1", LAB_NODE1).unwrap().unwrap()
    }

    fn proxpanel() -> Container {
        parse_inspect("proxpanel-db", PROXPANEL).unwrap().unwrap()
    }

    const PG: Ids = Ids { uid: 999, gid: 999 };

    #[test]
    fn parses_the_lab_container() {
        let c = lab();
        assert_eq!(c.name, "pg-node1");
        assert_eq!(
            c.image_id,
            "sha256:4dcd26c9eea29a8fd99138c0254eab104c2be0ad01c13fbfe403f145fa1c6c2b"
        );
        assert_eq!(c.image_name, "pgrepl-lab/postgres:15");
        assert_eq!(c.state, State::Running);
        assert!(c.state.may_run());
        assert_eq!(c.user, None);
        assert_eq!(c.network_mode, "host");
        assert_eq!(
            c.mounts,
            [Mount {
                source: Source::Volume("pgdata".into()),
                destination: "/var/lib/postgresql/data".into(),
                read_only: false,
            }]
        );
        assert!(c.stops_fast());
    }

    #[test]
    fn parses_an_official_image_container_and_podmans() {
        let c = proxpanel();
        assert_eq!(c.name, "proxpanel-db");
        assert_eq!(c.image_name, "postgres:16");
        assert_eq!(c.state, State::Exited);
        assert!(!c.state.may_run());
        assert_eq!(c.network_mode, "proxpanel_default");
        assert_eq!(c.mounts.len(), 2);
        assert_eq!(
            c.mounts[0],
            Mount {
                source: Source::Bind("/opt/proxpanel/init.sql".into()),
                destination: "/docker-entrypoint-initdb.d/init.sql".into(),
                read_only: true,
            }
        );

        let p = parse_inspect("pg", PODMAN).unwrap().unwrap();
        assert_eq!(p.name, "pg");
        assert_eq!(p.image_id, "0e2d8a6a5f3c");
        assert_eq!(p.image_name, "docker.io/library/postgres:16");
        assert_eq!(p.run_as(), RunAs::Ids(PG));
        assert!(p.stops_fast(), "podman writes the signal as a number");
    }

    #[test]
    fn a_container_that_does_not_exist_is_none_and_garbage_is_an_error() {
        assert_eq!(parse_inspect("pg-node9", "[]\n").unwrap(), None);
        let err = parse_inspect("pg-node9", "").unwrap_err();
        assert!(format!("{err:#}").contains("pg-node9"), "{err:#}");
        let err = parse_inspect("pg-node9", "Error: No such object").unwrap_err();
        assert!(format!("{err:#}").contains("not its JSON array"), "{err:#}");
        let two = format!(
            "[{},{}]",
            &PODMAN[1..PODMAN.len() - 1],
            &PODMAN[1..PODMAN.len() - 1]
        );
        let err = parse_inspect("pg", &two).unwrap_err();
        assert!(err.to_string().contains("2 containers"), "{err}");
    }

    #[test]
    fn unknown_states_and_mount_kinds() {
        assert_eq!(State::parse("stopping"), State::Other("stopping".into()));
        assert!(
            State::Other("stopping".into()).may_run(),
            "unknown means maybe"
        );
        assert!(State::Paused.may_run());
        assert!(!State::Dead.may_run());
        let npipe = PODMAN.replace(r#""Type": "volume""#, r#""Type": "npipe""#);
        let err = parse_inspect("pg", &npipe).unwrap_err();
        assert!(err.to_string().contains("\"npipe\""), "{err}");
        let relative = PODMAN.replace(
            r#""Destination": "/var/lib/postgresql/data""#,
            r#""Destination": "data""#,
        );
        assert!(parse_inspect("pg", &relative).is_err());
        let nameless = PODMAN.replace(r#""Name": "pgdata", "#, "");
        let err = parse_inspect("pg", &nameless).unwrap_err();
        assert!(err.to_string().contains("has no name"), "{err}");
    }

    #[test]
    fn the_data_directory_must_be_below_a_volume_not_its_mount_point() {
        // ProxPanel's layout (the official image up to 17): the volume at
        // the data directory itself.
        let why = proxpanel()
            .layout_problem("/var/lib/postgresql/data")
            .expect("refused");
        assert!(why.contains("mount point of its volume"), "{why}");
        assert!(
            why.contains("PGDATA=/var/lib/postgresql/data/pgdata"),
            "{why}"
        );
        // A subdirectory of the volume (PGDATA=/var/lib/postgresql/data/pgdata).
        assert_eq!(
            proxpanel().layout_problem("/var/lib/postgresql/data/pgdata"),
            None
        );
        // The official image from 18 on: the volume one level up.
        let eighteen = PODMAN.replace(
            r#""Destination": "/var/lib/postgresql/data""#,
            r#""Destination": "/var/lib/postgresql""#,
        );
        let c = parse_inspect("pg", &eighteen).unwrap().unwrap();
        assert_eq!(c.layout_problem("/var/lib/postgresql/18/docker"), None);
        assert_eq!(c.layout_problem("/var/lib/postgresql/data/"), None);
        // Not on a mount at all.
        let why = c.layout_problem("/srv/pg").expect("refused");
        assert!(why.contains("on no volume"), "{why}");
    }

    #[test]
    fn the_data_directory_must_be_on_a_writable_volume_or_bind() {
        let c = lab();
        assert_eq!(
            c.data_dir_mount("/var/lib/postgresql/data").unwrap().source,
            Source::Volume("pgdata".into())
        );
        assert_eq!(
            c.data_dir_mount("/var/lib/postgresql/data/")
                .unwrap()
                .source,
            Source::Volume("pgdata".into())
        );
        assert_eq!(
            c.data_dir_mount("/var/lib/postgresql/data/pgdata")
                .unwrap()
                .source,
            Source::Volume("pgdata".into()),
            "PGDATA in a subdirectory of the volume"
        );
        assert_eq!(
            c.data_dir_mount("/var/lib/postgresql"),
            Err(DataDirProblem::NotOnAMount)
        );
        assert_eq!(
            c.data_dir_mount("/var/lib/postgresql/database"),
            Err(DataDirProblem::NotOnAMount),
            "a sibling with the same prefix is not on the mount"
        );
        let mut t = c.clone();
        t.mounts[0].source = Source::Tmpfs;
        assert_eq!(
            t.data_dir_mount("/var/lib/postgresql/data"),
            Err(DataDirProblem::OnTmpfs)
        );
        t.mounts[0] = Mount {
            source: Source::Bind("/srv/pg".into()),
            destination: "/var/lib/postgresql/data".into(),
            read_only: true,
        };
        assert_eq!(
            t.data_dir_mount("/var/lib/postgresql/data"),
            Err(DataDirProblem::ReadOnly)
        );
        // The deepest mount wins.
        t.mounts = vec![
            Mount {
                source: Source::Volume("outer".into()),
                destination: "/var/lib/postgresql".into(),
                read_only: false,
            },
            Mount {
                source: Source::Volume("inner".into()),
                destination: "/var/lib/postgresql/data".into(),
                read_only: false,
            },
        ];
        assert_eq!(
            t.mount_of("/var/lib/postgresql/data/base").unwrap().source,
            Source::Volume("inner".into())
        );
        assert_eq!(
            t.mount_of("/var/lib/postgresql/.pgrepl-x.pgpass")
                .unwrap()
                .source,
            Source::Volume("outer".into())
        );
        assert!(
            DataDirProblem::NotOnAMount
                .to_string()
                .contains("give the container a volume")
        );
    }

    #[test]
    fn who_one_off_containers_run_as() {
        let pg = RunAs::Lookup {
            user: "postgres".into(),
            group: None,
        };
        let with_user = |u: &str| {
            let mut c = lab();
            c.user = Some(u.to_string());
            c.run_as()
        };
        assert_eq!(lab().run_as(), pg, "no USER: the image's postgres");
        assert_eq!(with_user("root"), pg);
        assert_eq!(with_user("0"), pg);
        assert_eq!(with_user("0:0"), pg);
        assert_eq!(with_user("999:999"), RunAs::Ids(PG));
        assert_eq!(
            with_user("70"),
            RunAs::Lookup {
                user: "70".into(),
                group: None
            },
            "a uid without a group: the group comes from the image"
        );
        assert_eq!(
            with_user("postgres:postgres"),
            RunAs::Lookup {
                user: "postgres".into(),
                group: Some("postgres".into())
            }
        );
    }

    #[test]
    fn the_user_probe_and_its_output() {
        assert_eq!(
            user_probe(Engine::Docker, "sha256:abc", "postgres"),
            [
                "docker",
                "run",
                "--rm",
                "--network",
                "none",
                "--pull",
                "never",
                "--entrypoint",
                "id",
                "--",
                "sha256:abc",
                "postgres"
            ]
        );
        assert_eq!(
            parse_id("uid=999(postgres) gid=999(postgres) groups=999(postgres)\n").unwrap(),
            PG
        );
        assert_eq!(
            parse_id("uid=70 gid=70 groups=70").unwrap(),
            Ids { uid: 70, gid: 70 },
            "alpine images print no names"
        );
        assert!(parse_id("id: 'postgres': no such user\n").is_err());
        assert!(parse_id("uid=(x) gid=1").is_err());
    }

    #[test]
    fn lifecycle_commands_give_postgres_time_to_shut_down() {
        let stop = lifecycle(Engine::Docker, Lifecycle::Stop, "pg-node1");
        assert_eq!(stop.argv, ["docker", "stop", "-t", "120", "--", "pg-node1"]);
        assert_eq!(stop.limit, Duration::from_secs(150));
        let restart = lifecycle(Engine::Podman, Lifecycle::Restart, "pg");
        assert_eq!(restart.argv, ["podman", "restart", "-t", "120", "--", "pg"]);
        let start = lifecycle(Engine::Docker, Lifecycle::Start, "-rf");
        assert_eq!(
            start.argv,
            ["docker", "start", "--", "-rf"],
            "a name is never an option"
        );
        assert_eq!(start.limit, CLI_MARGIN);
    }

    #[test]
    fn exec_passes_stdin_and_the_user() {
        assert_eq!(
            exec(
                Engine::Docker,
                "pg-node1",
                PG,
                &["pg_controldata", "/var/lib/postgresql/data"]
            ),
            [
                "docker",
                "exec",
                "-i",
                "-u",
                "999:999",
                "--",
                "pg-node1",
                "pg_controldata",
                "/var/lib/postgresql/data"
            ]
        );
    }

    #[test]
    fn a_one_off_container_shares_the_image_and_every_mount() {
        let argv = one_off(
            Engine::Docker,
            &proxpanel(),
            PG,
            Network::Host,
            &[
                "pg_basebackup",
                "-D",
                "/var/lib/postgresql/data",
                "-X",
                "stream",
            ],
        )
        .unwrap();
        assert_eq!(
            argv,
            [
                "docker",
                "run",
                "--rm",
                "-i",
                "--name",
                "proxpanel-db-pgrepl-offline",
                "--pull",
                "never",
                "--network",
                "host",
                "--user",
                "999:999",
                "-v",
                "/opt/proxpanel/init.sql:/docker-entrypoint-initdb.d/init.sql:ro",
                "-v",
                "proxpanel_postgres_data:/var/lib/postgresql/data",
                "--entrypoint",
                "pg_basebackup",
                "--",
                "sha256:b781f3a53e61df916d97dcb34bb8e7c9b2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2",
                "-D",
                "/var/lib/postgresql/data",
                "-X",
                "stream",
            ]
        );
        let none = one_off(
            Engine::Podman,
            &lab(),
            PG,
            Network::None,
            &["pg_controldata"],
        )
        .unwrap();
        assert_eq!(&none[..2], ["podman", "run"]);
        assert!(none.windows(2).any(|w| w == ["--network", "none"]));
        assert!(
            none.windows(2)
                .any(|w| w == ["-v", "pgdata:/var/lib/postgresql/data"])
        );
        assert!(one_off(Engine::Docker, &lab(), PG, Network::None, &[] as &[&str]).is_err());
    }

    #[test]
    fn mounts_that_dash_v_cannot_say_are_refused_not_mangled() {
        let mut c = lab();
        c.mounts.push(Mount {
            source: Source::Bind("/srv/a:b".into()),
            destination: "/x".into(),
            read_only: false,
        });
        let err = one_off(Engine::Docker, &c, PG, Network::None, &["true"]).unwrap_err();
        assert!(format!("{err:#}").contains("/srv/a:b"), "{err:#}");
        c.mounts[1] = Mount {
            source: Source::Tmpfs,
            destination: "/run/a,b".into(),
            read_only: false,
        };
        assert!(one_off(Engine::Docker, &c, PG, Network::None, &["true"]).is_err());
        c.mounts[1] = Mount {
            source: Source::Tmpfs,
            destination: "/run/scratch".into(),
            read_only: false,
        };
        let argv = one_off(Engine::Docker, &c, PG, Network::None, &["true"]).unwrap();
        assert!(argv.windows(2).any(|w| w == ["--tmpfs", "/run/scratch"]));
    }

    #[test]
    fn no_secret_and_no_environment_reaches_an_argument_vector() {
        let c = proxpanel();
        let all = [
            inspect(Engine::Docker, &c.name),
            user_probe(Engine::Docker, &c.image_id, "postgres"),
            lifecycle(Engine::Docker, Lifecycle::Restart, &c.name).argv,
            exec(Engine::Docker, &c.name, PG, &["psql"]),
            one_off(Engine::Docker, &c, PG, Network::Host, &["pg_rewind"]).unwrap(),
        ];
        for argv in &all {
            for a in argv {
                assert!(!a.contains("hunter2"), "{argv:?}");
                assert!(!a.contains("POSTGRES_"), "{argv:?}");
                assert!(
                    !["-e", "--env", "--env-file"].contains(&a.as_str()),
                    "{argv:?}"
                );
                assert!(!a.starts_with("--env"), "{argv:?}");
            }
        }
        assert!(
            !format!("{c:?}").contains("hunter2"),
            "the environment is never even read"
        );
    }
}
