//! Hand-built observed states for the pure plan tests: a cluster exactly as
//! its file wants it (`converged`), a fresh one (`fresh`: an initdb'd
//! primary with PostgreSQL's defaults, empty standbys), and small edits of
//! either. Plain data, as `gather` would report it; nothing is contacted.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{LazyLock, Mutex};

use indexmap::IndexMap;
use pgrepl::config::{self, Config};
use pgrepl::desired::{self, DesiredState};
use pgrepl::gather::{
    ControlData, DataDir, FileFacts, Lsn, NodeState, Observed, PgSetting, ReplicationFacts,
    RoleFacts, ServerFacts, SlotFacts, UnreachableInfo, WalReceiverFacts,
};
use pgrepl::guc::{self, Normalized};
use pgrepl::transport::Unreachable;

use crate::config::FakeSources;

/// The major the hand-built servers run.
pub const MAJOR: u32 = 15;
const VERSION_NUM: u32 = 150_004;
const SYSTEM_IDENTIFIER: &str = "7310000000000000001";

/// pg_hba.conf as Debian's postgresql-15 package writes it (without the
/// long header comment): what a node looks like before pgrepl touched it.
pub const DEBIAN_HBA: &str = "\
# DO NOT DISABLE!
# If you change this first entry you will need to make sure that the
# database superuser can access the database using some other method.
# Noninteractive access to all databases is required during automatic
# maintenance (custom daily cronjobs, replication, and similar tasks).
#
# Database administrative login by Unix domain socket
local   all             postgres                                peer

# TYPE  DATABASE        USER            ADDRESS                 METHOD

# \"local\" is for Unix domain socket connections only
local   all             all                                     peer
# IPv4 local connections:
host    all             all             127.0.0.1/32            scram-sha-256
# IPv6 local connections:
host    all             all             ::1/128                 scram-sha-256
# Allow replication connections from localhost, by a user with the
# replication privilege.
local   replication     all                                     peer
host    replication     all             127.0.0.1/32            scram-sha-256
host    replication     all             ::1/128                 scram-sha-256
";

/// PostgreSQL 15's defaults (`pg_settings.setting`) for the settings the
/// tests use; a setting not listed here starts at the file's value.
const DEFAULTS: &[(&str, &str)] = &[
    ("wal_level", "replica"),
    ("max_wal_senders", "10"),
    ("max_replication_slots", "10"),
    ("wal_keep_size", "0"),
    ("hot_standby", "on"),
    ("hot_standby_feedback", "off"),
    ("wal_log_hints", "off"),
    ("max_connections", "100"),
    ("max_worker_processes", "8"),
    ("max_locks_per_transaction", "64"),
    ("max_prepared_transactions", "0"),
    ("shared_buffers", "16384"),
    ("work_mem", "4096"),
    ("synchronous_commit", "on"),
    ("synchronous_standby_names", ""),
    ("max_slot_wal_keep_size", "-1"),
    ("primary_conninfo", ""),
    ("primary_slot_name", ""),
];

/// Loads a cluster file with the test passwords (`s3cret-repl`, `s3cret-rewind`).
pub fn load(text: &str) -> Config {
    config::load_str(text, Path::new("pgrepl.toml"), &FakeSources::default())
        .unwrap_or_else(|e| panic!("test cluster file does not load:\n{e}"))
}

/// A SCRAM verifier of `password`, computed once per password (4096
/// PBKDF2 rounds are slow in a debug build, and the property test needs many).
pub fn verifier(password: &str) -> String {
    static CACHE: LazyLock<Mutex<HashMap<String, String>>> = LazyLock::new(Default::default);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry(password.to_string())
        .or_insert_with(|| pgrepl::scram::new_verifier(password))
        .clone()
}

/// A SCRAM-SHA-256 verifier of `password` (ASCII) with ONE iteration, as
/// RFC 5802 defines it: cheap to check, for the property test's thousands
/// of plans (a 4096-round verifier costs milliseconds in a debug build).
pub fn quick_verifier(password: &str) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    assert!(
        password.is_ascii(),
        "SASLprep is the identity only for ASCII"
    );
    let hmac = |key: &[u8], msg: &[u8]| -> Vec<u8> {
        let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
        m.update(msg);
        m.finalize().into_bytes().to_vec()
    };
    let salt = b"pgrepl-test-salt";
    let salted = hmac(password.as_bytes(), &[&salt[..], &[0, 0, 0, 1]].concat());
    let stored_key = Sha256::digest(hmac(&salted, b"Client Key"));
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256$1:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

/// Replaces every stored verifier with a one-iteration one of the same password.
pub fn use_quick_verifiers(cfg: &Config, obs: &mut Observed) {
    let mut passwords = vec![(
        cfg.replication.user.clone(),
        cfg.replication.password.expose().to_string(),
    )];
    if let Some(rw) = &cfg.rewind {
        passwords.push((rw.user.clone(), rw.password.expose().to_string()));
    }
    for server in obs.nodes.values_mut().filter_map(|n| n.server.as_mut()) {
        for (user, password) in &passwords {
            if let Some(r) = server.roles.get_mut(user) {
                r.verifier = Some(quick_verifier(password));
                r.verifier_digest = r.verifier.as_deref().map(pgrepl::gather::digest);
            }
        }
    }
}

/// A `pg_settings` row as PostgreSQL 15 shows it (unit, context and type from the catalog).
pub fn pg_setting(name: &str, setting: &str, source: &str) -> PgSetting {
    let def = guc::lookup(name).unwrap_or_else(|| panic!("{name} is not a GUC"));
    PgSetting {
        name: name.to_string(),
        setting: setting.to_string(),
        unit: def.unit.map(String::from),
        context: guc::context_in(def, MAJOR).as_str().to_string(),
        vartype: def.vartype.as_str().to_string(),
        pending_restart: false,
        source: source.to_string(),
    }
}

/// `pg_settings.setting` for a normalised value: base unit, no unit text.
pub fn setting_text(v: &Normalized) -> String {
    match v {
        Normalized::Bool(b) => if *b { "on" } else { "off" }.to_string(),
        Normalized::Integer(i) => i.to_string(),
        Normalized::Real(r) => r.to_string(),
        Normalized::String(s) | Normalized::Enum(s) => s.clone(),
    }
}

fn default_of(name: &str) -> Option<&'static str> {
    DEFAULTS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// Every setting any node of the file names, plus the defaults table.
fn setting_names(want: &DesiredState) -> Vec<String> {
    let mut names: Vec<String> = DEFAULTS.iter().map(|(n, _)| n.to_string()).collect();
    for node in want.nodes.values() {
        for name in node.settings.keys() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    names
}

/// The live value a node has when it matches the file (`converged`), or
/// PostgreSQL's default (`!converged`, falling back to the file's value).
fn live_settings(cfg: &Config, node: &str, converged: bool) -> IndexMap<String, PgSetting> {
    let want = desired::desired_state(cfg);
    let node_want = &want.nodes[node];
    let mut out = IndexMap::new();
    for name in setting_names(&want) {
        let wanted = node_want
            .settings
            .get(&name)
            .and_then(|s| s.normalized.as_ref())
            .map(setting_text);
        let (value, source) = match (converged, wanted, default_of(&name)) {
            (true, Some(w), _) => (w, "configuration file"),
            (_, _, Some(d)) => (d.to_string(), "default"),
            (false, Some(w), None) => (w, "configuration file"),
            (true, None, None) => continue,
            (false, None, None) => continue,
        };
        out.insert(name.clone(), pg_setting(&name, &value, source));
    }
    if converged && let Some(rec) = &node_want.recovery {
        out.insert(
            "primary_conninfo".into(),
            pg_setting(
                "primary_conninfo",
                &rec.primary_conninfo,
                "configuration file",
            ),
        );
        out.insert(
            "primary_slot_name".into(),
            pg_setting(
                "primary_slot_name",
                &rec.primary_slot_name,
                "configuration file",
            ),
        );
    }
    out
}

/// The file's custom (dotted) settings pg_settings does not list, as
/// `current_setting(name, true)` reads them: the file's value when
/// `converged`, else not set.
fn custom_settings(
    settings: &IndexMap<String, PgSetting>,
    want: &desired::NodeDesired,
    converged: bool,
) -> IndexMap<String, Option<String>> {
    want.settings
        .values()
        .filter(|s| guc::is_custom_name(&s.name) && !settings.contains_key(&s.name))
        .map(|s| {
            let text = match &s.value {
                toml::Value::String(v) => v.clone(),
                toml::Value::Boolean(b) => if *b { "on" } else { "off" }.to_string(),
                other => other.to_string(),
            };
            (s.name.clone(), converged.then_some(text))
        })
        .collect()
}

fn control(in_recovery: bool) -> ControlData {
    ControlData {
        state: if in_recovery {
            "in archive recovery"
        } else {
            "in production"
        }
        .to_string(),
        system_identifier: SYSTEM_IDENTIFIER.to_string(),
        checkpoint_lsn: Some(Lsn(0x0300_0148)),
        checkpoint_redo_lsn: Some(Lsn(0x0300_0110)),
        checkpoint_timeline: Some(1),
        min_recovery_end_lsn: None,
        min_recovery_end_timeline: None,
        wal_log_hints: Some(true),
        data_checksums: Some(false),
        recorded_settings: Default::default(),
    }
}

fn auto_conf(settings: &IndexMap<String, PgSetting>) -> String {
    let mut s = String::from(
        "# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n",
    );
    for p in settings
        .values()
        .filter(|p| p.source == "configuration file")
    {
        s.push_str(&format!("{} = '{}'\n", p.name, p.setting));
    }
    s
}

fn empty_node(name: &str, host: &str) -> NodeState {
    NodeState {
        name: name.to_string(),
        host: host.to_string(),
        unreachable: None,
        files: None,
        server: None,
        errors: Vec::new(),
        gather_ms: 7,
    }
}

/// A reachable node whose data directory is missing.
fn missing_node(cfg: &Config, name: &str) -> NodeState {
    let node = &cfg.nodes[name];
    let mut n = empty_node(name, &node.host);
    n.files = Some(FileFacts {
        data_dir: DataDir::Missing,
        major: None,
        running: false,
        standby_signal: false,
        recovery_signal: false,
        control: None,
        hba_conf: None,
        auto_conf: None,
        auto_conf_has_password: false,
        histories: Vec::new(),
        disk_free_bytes: Some(40 << 30),
        disk_total_bytes: Some(100 << 30),
        config_dir_has_conf: node.postgres.config_dir.as_ref().map(|_| true),
        data_dir_physical: None,
        passfile_sha256: None,
        passfile_mode: None,
        rewind_interrupted: false,
        building_bytes: None,
        managers: Vec::new(),
        slots_on_disk: None,
        stale_clusters: Vec::new(),
        preload: None,
    });
    n
}

/// A running node: the file's state when `converged`, else an untouched
/// initdb'd primary (defaults, Debian's pg_hba.conf, no roles, no slots).
fn running_node(cfg: &Config, name: &str, converged: bool) -> NodeState {
    let want = desired::desired_state(cfg);
    let node_want = &want.nodes[name];
    let node = &cfg.nodes[name];
    let standby = !node_want.is_primary;
    let settings = live_settings(cfg, name, converged);
    let conf_dir = node
        .postgres
        .config_dir
        .as_deref()
        .unwrap_or(&node.postgres.data_dir);
    let hba_conf = if converged {
        pgrepl::hba::render(DEBIAN_HBA, &node_want.hba_block)
    } else {
        DEBIAN_HBA.to_string()
    };
    let mut n = missing_node(cfg, name);
    let files = n.files.as_mut().expect("files");
    files.data_dir = DataDir::Initialised;
    files.major = Some(MAJOR);
    files.running = true;
    files.standby_signal = standby;
    files.control = Some(control(standby));
    files.hba_conf = Some(hba_conf);
    files.auto_conf = Some(auto_conf(&settings));
    if converged && standby {
        files.passfile_sha256 = Some(desired::passfile_digest(cfg, &cfg.nodes[name]));
        files.passfile_mode = Some("600".into());
    }
    let mut roles = IndexMap::new();
    let mut slots = Vec::new();
    let mut replication = Vec::new();
    if converged {
        let repl = &cfg.replication;
        roles.insert(
            repl.user.clone(),
            RoleFacts {
                name: repl.user.clone(),
                login: true,
                replication: true,
                superuser: false,
                valid_until: None,
                expired: false,
                connection_limit: -1,
                verifier: Some(verifier(repl.password.expose())),
                verifier_digest: Some(pgrepl::gather::digest(&verifier(repl.password.expose()))),
                rewind_grants: false,
            },
        );
        if let Some(rw) = &cfg.rewind {
            roles.insert(
                rw.user.clone(),
                RoleFacts {
                    name: rw.user.clone(),
                    login: true,
                    replication: false,
                    superuser: false,
                    valid_until: None,
                    expired: false,
                    connection_limit: -1,
                    verifier: Some(verifier(rw.password.expose())),
                    verifier_digest: Some(pgrepl::gather::digest(&verifier(rw.password.expose()))),
                    rewind_grants: true,
                },
            );
        }
        for slot in &node_want.slots {
            let is_node = cfg.nodes.contains_key(slot);
            slots.push(SlotFacts {
                name: slot.clone(),
                slot_type: "physical".into(),
                active: is_node,
                restart_lsn: Some(Lsn(0x0300_0000)),
                wal_status: Some("reserved".into()),
                retained_bytes: Some(if is_node { 328 } else { 48 << 20 }),
                invalidation_reason: None,
            });
        }
        for down in cfg.downstreams(name) {
            replication.push(ReplicationFacts {
                application_name: down.name.clone(),
                client_addr: Some(down.host.clone()),
                state: Some("streaming".into()),
                sent_lsn: Some(Lsn(0x0300_0148)),
                flush_lsn: Some(Lsn(0x0300_0148)),
                replay_lsn: Some(Lsn(0x0300_0148)),
                sync_state: Some("async".into()),
                replay_lag_s: Some(0.001),
            });
        }
    }
    let wal_receiver = (converged && standby)
        .then(|| {
            let up = &cfg.nodes[node.upstream.as_deref()?];
            Some(WalReceiverFacts {
                status: "streaming".into(),
                received_tli: Some(1),
                flushed_lsn: Some(Lsn(0x0300_0148)),
                slot_name: cfg.replication.slots.then(|| name.to_string()),
                sender_host: Some(up.host.clone()),
                sender_port: Some(i32::from(up.postgres.port)),
            })
        })
        .flatten();
    n.server = Some(ServerFacts {
        version_num: VERSION_NUM,
        system_identifier: SYSTEM_IDENTIFIER.to_string(),
        in_recovery: standby,
        timeline: 1,
        current_lsn: (!standby).then_some(Lsn(0x0300_0148)),
        receive_lsn: standby.then_some(Lsn(0x0300_0148)),
        replay_lsn: standby.then_some(Lsn(0x0300_0148)),
        replay_delay_s: standby.then_some(0.2),
        replay_paused: false,
        md5_roles: Vec::new(),
        hba_rules: Vec::new(),
        data_directory: node.postgres.data_dir.clone(),
        hba_file: format!("{conf_dir}/pg_hba.conf"),
        database_size_bytes: Some(7_500_000),
        custom_settings: custom_settings(
            &settings,
            &desired::desired_state(cfg).nodes[name],
            converged,
        ),
        settings,
        file_setting_errors: Vec::new(),
        roles,
        hba_errors: Vec::new(),
        slots,
        replication,
        wal_receiver,
    });
    n
}

/// Every node exactly as the file wants it: nothing to plan.
pub fn converged(cfg: &Config) -> Observed {
    Observed {
        cluster: cfg.cluster.name.clone(),
        nodes: cfg
            .nodes
            .keys()
            .map(|name| (name.clone(), running_node(cfg, name, true)))
            .collect(),
        poolers: Default::default(),
    }
}

/// A fresh cluster: the primary initdb'd and running with PostgreSQL's
/// defaults, every other node without a data directory.
pub fn fresh(cfg: &Config) -> Observed {
    Observed {
        cluster: cfg.cluster.name.clone(),
        nodes: cfg
            .nodes
            .keys()
            .map(|name| {
                let n = if *name == cfg.cluster.primary {
                    running_node(cfg, name, false)
                } else {
                    missing_node(cfg, name)
                };
                (name.clone(), n)
            })
            .collect(),
        poolers: Default::default(),
    }
}

/// An untouched running node (defaults, Debian's hba, no roles or slots),
/// in the role the file gives it.
pub fn untouched_node(cfg: &Config, name: &str) -> NodeState {
    running_node(cfg, name, false)
}

/// A reachable node without a data directory.
pub fn missing(cfg: &Config, name: &str) -> NodeState {
    missing_node(cfg, name)
}

pub fn node<'a>(obs: &'a mut Observed, name: &str) -> &'a mut NodeState {
    obs.nodes
        .get_mut(name)
        .unwrap_or_else(|| panic!("no node {name}"))
}

pub fn server<'a>(obs: &'a mut Observed, name: &str) -> &'a mut ServerFacts {
    node(obs, name)
        .server
        .as_mut()
        .unwrap_or_else(|| panic!("{name} is not running"))
}

pub fn files<'a>(obs: &'a mut Observed, name: &str) -> &'a mut FileFacts {
    node(obs, name)
        .files
        .as_mut()
        .unwrap_or_else(|| panic!("{name} has no file facts"))
}

/// What `ALTER SYSTEM SET name = ...` by hand leaves behind: the live value
/// (in pg_settings' base unit) from postgresql.auto.conf.
pub fn alter_system(obs: &mut Observed, node_name: &str, name: &str, setting: &str) {
    let s = server(obs, node_name);
    let p = s
        .settings
        .get_mut(name)
        .unwrap_or_else(|| panic!("{node_name} has no setting {name}"));
    p.setting = setting.to_string();
    p.source = "configuration file".into();
}

/// The node cannot be reached over SSH.
pub fn cut(obs: &mut Observed, name: &str) {
    let n = node(obs, name);
    let host = n.host.clone();
    *n = empty_node(name, &host);
    n.unreachable = Some(UnreachableInfo {
        kind: Unreachable::Timeout,
        message: format!(
            "connection timed out (ssh: connect to host {host} port 22: Connection timed out); the node or its network is down; check it, or raise `ssh.connect_timeout`"
        ),
    });
}

/// The replication role's stored verifier is of another password.
pub fn change_password(obs: &mut Observed, role: &str, password: &str) {
    let primary = obs
        .nodes
        .values()
        .find(|n| n.server.as_ref().is_some_and(|s| !s.in_recovery))
        .map(|n| n.name.clone())
        .expect("a running primary");
    let r = server(obs, &primary)
        .roles
        .get_mut(role)
        .unwrap_or_else(|| panic!("no role {role}"));
    r.verifier = Some(verifier(password));
    r.verifier_digest = r.verifier.as_deref().map(pgrepl::gather::digest);
}
