//! GUC knowledge: which settings PostgreSQL 12–18 has, their types, units,
//! contexts, ranges and enum values in each major ([`catalog`], generated as
//! static data from the live servers of 15–18), and
//! value normalisation that mirrors PostgreSQL's own parsing, so that a
//! value from the cluster file and a live value from `pg_settings` can be
//! compared ("in sync or not"):
//!
//! ```
//! use pgrepl::guc::{lookup, normalize_desired, normalize_observed};
//! let def = lookup("wal_keep_size").unwrap();
//! let desired = normalize_desired(def, &toml::Value::String("1GB".into())).unwrap();
//! let observed = normalize_observed(def, "1024", Some("MB")).unwrap();
//! assert_eq!(desired, observed);
//! assert_eq!(desired.display_with_unit(def), "1GB");
//! ```
//!
//! A setting whose facts changed between majors (`log_connections`: a bool
//! in 12–17, a list in 18; `autovacuum_max_workers`: restart in 12–17,
//! reload in 18) has one [`GucDef`] per run of majors with the same facts:
//! [`lookup_in`] gives a given major's, [`lookup`] the newest.
//!
//! Names are case-insensitive, like PostgreSQL's. Names with a dot
//! (`pg_stat_statements.max`) are custom (extension) settings, which
//! PostgreSQL accepts as placeholders: [`lookup`] returns [`CUSTOM`] for
//! them (a string setting of context `user`, exactly how PostgreSQL models
//! a placeholder); [`def_from_pg_settings`] gives the real definition once
//! the extension is loaded on a node.

mod catalog;
mod parse;
mod value;

#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

pub use value::{Normalized, ValueError, normalize_desired, normalize_observed};

/// A GUC's data type (`pg_settings.vartype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VarType {
    /// `bool`: on/off, true/false, yes/no, 1/0 and unique prefixes.
    Bool,
    /// `integer`: a C `int`, in the GUC's base unit if it has one.
    Integer,
    /// `real`: a C `double`, in the GUC's base unit if it has one.
    Real,
    /// `string`: free text (some are comma-separated lists, see [`list_kind`]).
    String,
    /// `enum`: one of [`GucDef::enum_values`] (case-insensitive), or a
    /// hidden alias PostgreSQL accepts.
    Enum,
}

impl VarType {
    /// The name `pg_settings.vartype` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            VarType::Bool => "bool",
            VarType::Integer => "integer",
            VarType::Real => "real",
            VarType::String => "string",
            VarType::Enum => "enum",
        }
    }

    /// Parses `pg_settings.vartype`.
    pub fn from_pg(s: &str) -> Option<VarType> {
        match s {
            "bool" => Some(VarType::Bool),
            "integer" => Some(VarType::Integer),
            "real" => Some(VarType::Real),
            "string" => Some(VarType::String),
            "enum" => Some(VarType::Enum),
            _ => None,
        }
    }
}

/// When a GUC can be changed (`pg_settings.context`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    /// Read-only: fixed at build or initdb time (`block_size`, `server_version`).
    Internal,
    /// Needs a server restart.
    Postmaster,
    /// Changes on reload (SIGHUP, `pg_reload_conf()`).
    Sighup,
    /// Reload for new sessions; superusers may set it at connection start.
    SuperuserBackend,
    /// Reload for new sessions; anyone may set it at connection start.
    Backend,
    /// Reload, or `SET` by a superuser.
    Superuser,
    /// Reload, or `SET` by anyone.
    User,
}

impl Context {
    /// The name `pg_settings.context` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Context::Internal => "internal",
            Context::Postmaster => "postmaster",
            Context::Sighup => "sighup",
            Context::SuperuserBackend => "superuser-backend",
            Context::Backend => "backend",
            Context::Superuser => "superuser",
            Context::User => "user",
        }
    }

    /// Parses `pg_settings.context`.
    pub fn from_pg(s: &str) -> Option<Context> {
        match s {
            "internal" => Some(Context::Internal),
            "postmaster" => Some(Context::Postmaster),
            "sighup" => Some(Context::Sighup),
            "superuser-backend" => Some(Context::SuperuserBackend),
            "backend" => Some(Context::Backend),
            "superuser" => Some(Context::Superuser),
            "user" => Some(Context::User),
            _ => None,
        }
    }

    /// A change takes effect only after a restart.
    pub fn needs_restart(self) -> bool {
        self == Context::Postmaster
    }
}

/// What PostgreSQL knows about one GUC.
#[derive(Debug, Clone, PartialEq)]
pub struct GucDef {
    /// The name as PostgreSQL spells it (`DateStyle`, `wal_level`).
    pub name: &'static str,
    /// The data type.
    pub vartype: VarType,
    /// The base unit, as `pg_settings.unit` shows it: `"8kB"` (pages),
    /// `"kB"`, `"MB"`, `"B"`, `"ms"`, `"s"`, `"min"`; `None` when unitless.
    pub unit: Option<&'static str>,
    /// When it can change.
    pub context: Context,
    /// The documented enum values, as `pg_settings.enumvals` lists them.
    pub enum_values: &'static [&'static str],
    /// Minimum, in the base unit (`pg_settings.min_val`).
    pub min: Option<f64>,
    /// Maximum, in the base unit (`pg_settings.max_val`).
    pub max: Option<f64>,
    /// The first major version these facts hold for (12 when older than
    /// 12). The setting may be older: see [`lifetime`].
    pub since: u32,
    /// The last major version these facts hold for; `None` for the newest
    /// facts of a setting that still exists.
    pub until: Option<u32>,
    /// A hot standby needs at least the primary's value (else it refuses to
    /// start or pauses recovery).
    pub hot_standby_sensitive: bool,
}

/// The definition [`lookup`] returns for every custom (dotted) name: an
/// extension setting PostgreSQL keeps as a string placeholder of context
/// `user` until the extension that defines it is loaded.
pub static CUSTOM: GucDef = GucDef {
    name: "(custom setting)",
    vartype: VarType::String,
    unit: None,
    context: Context::User,
    enum_values: &[],
    min: None,
    max: None,
    since: 12,
    until: None,
    hot_standby_sensitive: false,
};

/// Every built-in GUC PostgreSQL 12–18 knows, sorted by lower-case name,
/// then by first major: a setting whose facts differ between majors has one
/// entry per run of majors with the same facts ([`GucDef::since`] ..=
/// [`GucDef::until`]), the entries of one name never overlapping.
pub fn catalog() -> &'static [GucDef] {
    catalog::GUCS
}

fn cmp_ignore_case(a: &str, b: &str) -> Ordering {
    a.bytes()
        .map(|c| c.to_ascii_lowercase())
        .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

/// Obsolete names PostgreSQL still maps to current ones
/// (`map_old_guc_names` in guc.c), with the first major that maps them.
const OLD_NAMES: &[(&str, &str, u32)] = &[
    ("sort_mem", "work_mem", 12),
    ("vacuum_mem", "maintenance_work_mem", 12),
    // Its own setting in 12-17 (the catalog has it until 17).
    ("ssl_ecdh_curve", "ssl_groups", 18),
];

/// The catalog entries of one built-in name, oldest first; empty when
/// unknown.
fn entries(name: &str) -> &'static [GucDef] {
    let gucs = catalog::GUCS;
    let lo = gucs.partition_point(|d| cmp_ignore_case(d.name, name) == Ordering::Less);
    let hi = gucs.partition_point(|d| cmp_ignore_case(d.name, name) != Ordering::Greater);
    gucs.get(lo..hi).unwrap_or_default()
}

/// Whether `def`'s facts hold for the given major.
fn covers(def: &GucDef, major: u32) -> bool {
    def.since <= major && def.until.is_none_or(|u| major <= u)
}

/// Whether `name` is a valid custom setting name: two or more identifiers
/// (letters, digits, `_`, `$`; not starting with a digit or `$`) joined by
/// dots, as PostgreSQL 15+ requires.
pub fn is_custom_name(name: &str) -> bool {
    name.contains('.')
        && name.split('.').all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_' || !c.is_ascii())
                && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '$' || !c.is_ascii())
        })
}

/// Finds a GUC by name, case-insensitively. Obsolete aliases PostgreSQL
/// still accepts (`sort_mem`, `vacuum_mem`) resolve to the current
/// setting, so use [`GucDef::name`] as the canonical key. Custom dotted
/// names resolve to [`CUSTOM`]. Settings of every major 12–18 are found,
/// with the facts of the newest major that has them; use [`lookup_in`] for
/// a given server.
pub fn lookup(name: &str) -> Option<&'static GucDef> {
    resolve(name, None)
}

/// Finds a GUC as a server of the given major (12, 13, ...) knows it: the
/// facts (type, context, range, enum values) of that major, an obsolete
/// name resolved when that major still accepts it (`ssl_ecdh_curve` is
/// `ssl_groups` in 18), [`CUSTOM`] for dotted names. `None` when that major
/// has no such setting (see [`lookup`] and [`lifetime`] for when it has).
pub fn lookup_in(name: &str, major: u32) -> Option<&'static GucDef> {
    resolve(name, Some(major))
}

/// [`lookup_in`] for `Some(major)`, [`lookup`] (the newest facts, any
/// major's obsolete names) for `None`.
fn resolve(name: &str, major: Option<u32>) -> Option<&'static GucDef> {
    let all = entries(name);
    let found = match major {
        Some(m) => all.iter().find(|d| covers(d, m)),
        None => all.last(),
    };
    if found.is_some() {
        return found;
    }
    if let Some((_, new, _)) = OLD_NAMES
        .iter()
        .find(|(old, _, since)| old.eq_ignore_ascii_case(name) && major.is_none_or(|m| *since <= m))
    {
        return resolve(new, major);
    }
    is_custom_name(name).then_some(&CUSTOM)
}

/// The first and last major that have the setting of `def` under its name
/// (`None`: it still exists), over all its catalog entries.
pub fn lifetime(def: &GucDef) -> (u32, Option<u32>) {
    let all = entries(def.name);
    match (all.first(), all.last()) {
        (Some(first), Some(last)) => (first.since, last.until),
        _ => (def.since, def.until),
    }
}

/// Whether `def` is the custom placeholder [`CUSTOM`] (or a definition
/// built by [`def_from_pg_settings`] for a dotted name).
pub fn is_custom(def: &GucDef) -> bool {
    std::ptr::eq(def, &CUSTOM) || def.name.contains('.')
}

/// Optimal string alignment distance (Levenshtein plus transpositions).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev2: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
        }
        prev2 = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
}

/// The closest candidate to `input` within a distance that still looks like
/// a typo, comparing case-insensitively and treating `-` as `_`.
pub(crate) fn closest<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let norm = |s: &str| s.to_lowercase().replace('-', "_");
    let wanted = norm(input);
    let limit = (wanted.chars().count() / 4).clamp(1, 3);
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        let d = edit_distance(&wanted, &norm(c));
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// The closest known GUC name for a "did you mean" hint (edit distance,
/// case-insensitive, `-` read as `_`); `None` when nothing is close.
/// Settings that still exist in 18 are preferred over removed ones.
pub fn suggest(name: &str) -> Option<&'static str> {
    if let Some(new) = successor(name) {
        return Some(new);
    }
    let current = catalog::GUCS
        .iter()
        .filter(|d| d.until.is_none())
        .map(|d| d.name);
    closest(name, current).or_else(|| closest(name, catalog::GUCS.iter().map(|d| d.name)))
}

/// The setting that replaced a renamed or removed one, for messages such
/// as "wal_keep_segments was removed in PostgreSQL 13: use wal_keep_size".
pub fn successor(name: &str) -> Option<&'static str> {
    const RENAMED: &[(&str, &str)] = &[
        ("wal_keep_segments", "wal_keep_size"),
        ("force_parallel_mode", "debug_parallel_query"),
        ("checkpoint_segments", "max_wal_size"),
        ("standby_slot_names", "synchronized_standby_slots"),
        ("ssl_ecdh_curve", "ssl_groups"),
        ("enable_resultcache", "enable_memoize"),
        (
            "debug_invalidate_system_caches_always",
            "debug_discard_caches",
        ),
        (
            "logical_replication_mode",
            "debug_logical_replication_streaming",
        ),
        ("sort_mem", "work_mem"),
        ("vacuum_mem", "maintenance_work_mem"),
    ];
    RENAMED
        .iter()
        .find(|(old, _)| old.eq_ignore_ascii_case(name))
        .map(|(_, new)| *new)
}

/// Settings pgrepl itself controls, mapped to the part of the cluster file
/// that controls them; such names are refused in `[settings]`.
/// Case-insensitive.
pub fn owned_setting(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    Some(match lower.as_str() {
        // Each standby's connection to its upstream: host and port of the
        // upstream node, the replication user, its password (in a passfile)
        // and sslmode, application_name=NODE.
        "primary_conninfo" => "[nodes.NAME] upstream and [replication]",
        // The standby's slot on its upstream, named after the standby
        // ([replication] slots = true).
        "primary_slot_name" => "[nodes.NAME] upstream and [replication]",
        // Built from [replication] synchronous = { mode, count, standbys }.
        "synchronous_standby_names" => "[replication] synchronous",
        // pgrepl connects to and points standbys at this port.
        "port" => "[postgres] port",
        // Cannot be set with ALTER SYSTEM anyway; pgrepl must know it to
        // gather, base-backup and rewind.
        "data_directory" => "[postgres] data_dir",
        // pgrepl edits pg_hba.conf and must know where the files live.
        "hba_file" | "ident_file" | "config_file" => "[postgres] config_dir",
        // pgrepl connects locally through this socket directory.
        "unix_socket_directories" => "[postgres] socket_dir",
        // Standbys must follow the primary across promotions: pgrepl keeps
        // the default ('latest').
        "recovery_target_timeline" => "pgrepl itself (standbys always follow the latest timeline)",
        // A recovery target stops a standby from following its upstream
        // (and would promote or pause it): pgrepl keeps replicas replaying
        // to the end of WAL.
        "recovery_target"
        | "recovery_target_lsn"
        | "recovery_target_name"
        | "recovery_target_time"
        | "recovery_target_xid" => {
            "pgrepl itself (standbys replay to the end of WAL; recovery targets are not supported)"
        }
        // Promotion is done by pgrepl on a switchover ([cluster] primary).
        "promote_trigger_file" => {
            "[cluster] primary (pgrepl promotes with pg_ctl promote on switchover)"
        }
        // Not GUCs since 12 (standby.signal replaced them), but a classic
        // mistake when copying an old recovery.conf.
        "standby_mode" | "trigger_file" => {
            "[cluster] primary and [nodes.NAME] (pgrepl writes standby.signal)"
        }
        // pgrepl applies [settings] with ALTER SYSTEM: turning it off would
        // lock pgrepl out (and ALTER SYSTEM refuses to set it).
        "allow_alter_system" => {
            "pgrepl itself (it applies [settings] with ALTER SYSTEM, which needs allow_alter_system = on)"
        }
        // Deliberately NOT owned: restore_command, archive_*, hot_standby,
        // hot_standby_feedback, wal_level, max_wal_senders, listen_addresses,
        // cluster_name ... these are the operator's to choose.
        _ => return None,
    })
}

/// Whether the given major version (12, 13, ...) has this GUC under
/// `def`'s name (whichever of its entries `def` is), directly or as an
/// obsolete name it still accepts. Custom settings exist everywhere.
pub fn available_in(def: &GucDef, major: u32) -> bool {
    is_custom(def) || lookup_in(def.name, major).is_some()
}

/// The context of a GUC in a given major version (`primary_conninfo`:
/// restart in 12, reload since 13; `autovacuum_max_workers`: restart in
/// 12–17, reload in 18); `def`'s own when that major lacks it.
pub fn context_in(def: &GucDef, major: u32) -> Context {
    lookup_in(def.name, major).map_or(def.context, |d| d.context)
}

/// Why `ALTER SYSTEM` cannot set this GUC, or `None` when it can.
pub fn not_settable_reason(def: &GucDef) -> Option<&'static str> {
    if def.context == Context::Internal {
        return Some(
            "it is read-only: it reports a property fixed when PostgreSQL was built or initdb ran",
        );
    }
    match def.name {
        // GUC_DISALLOW_IN_FILE
        "is_superuser"
        | "role"
        | "session_authorization"
        | "seed"
        | "transaction_isolation"
        | "transaction_read_only"
        | "transaction_deferrable"
        | "ssl_renegotiation_limit" => {
            Some("it can only be set per session (SET), not in a configuration file")
        }
        "config_file" => Some("it can only be given on the server command line"),
        // GUC_DISALLOW_IN_AUTO_FILE
        "data_directory" | "allow_alter_system" => Some("ALTER SYSTEM refuses to set it"),
        _ => None,
    }
}

/// How a string GUC's value is a list (`GUC_LIST_INPUT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// A plain string.
    NotList,
    /// A comma-separated list (`listen_addresses`, `log_destination`):
    /// `ALTER SYSTEM SET x = 'a, b'` is right.
    List,
    /// A comma-separated list whose elements PostgreSQL quotes as
    /// identifiers (`GUC_LIST_QUOTE`: `shared_preload_libraries`,
    /// `search_path`, ...): `ALTER SYSTEM SET x = 'a, b'` would set ONE
    /// element named "a, b"; each element must be its own literal:
    /// `ALTER SYSTEM SET x = 'a', 'b'` (see [`Normalized::to_alter_system_value`]).
    QuotedList,
}

/// Whether a string GUC is a list, and of which kind.
pub fn list_kind(def: &GucDef) -> ListKind {
    match def.name {
        "search_path"
        | "temp_tablespaces"
        | "session_preload_libraries"
        | "shared_preload_libraries"
        | "local_preload_libraries"
        | "unix_socket_directories" => ListKind::QuotedList,
        "DateStyle"
        | "createrole_self_grant"
        | "log_destination"
        | "listen_addresses"
        | "wal_consistency_checking"
        | "debug_io_direct"
        | "synchronized_standby_slots"
        | "restrict_nonsystem_relation_kind" => ListKind::List,
        // synchronous_standby_names is `FIRST n (a, b)` / `ANY n (...)`: its
        // own grammar, compared and written whole as one string.
        _ => ListKind::NotList,
    }
}

/// A definition built from a live `pg_settings` row, for custom (extension)
/// settings, whose type, unit and range only the server knows once the
/// extension is loaded. Normalise both the desired and the observed value
/// with it to compare them like built-in settings. Returns `None` when
/// `vartype` or `context` is not one PostgreSQL uses.
///
/// Definitions are interned for the life of the process (one small
/// allocation per distinct row; pgrepl is a one-shot command).
pub fn def_from_pg_settings(
    name: &str,
    vartype: &str,
    unit: Option<&str>,
    context: &str,
    enum_values: &[String],
    min: Option<&str>,
    max: Option<&str>,
) -> Option<&'static GucDef> {
    let vartype = VarType::from_pg(vartype)?;
    let context = Context::from_pg(context)?;
    let num = |s: Option<&str>| s.and_then(|s| s.trim().parse::<f64>().ok());
    let key = format!(
        "{name}\u{1}{vartype:?}\u{1}{unit:?}\u{1}{context:?}\u{1}{enum_values:?}\u{1}{min:?}\u{1}{max:?}"
    );
    static INTERNED: OnceLock<Mutex<HashMap<String, &'static GucDef>>> = OnceLock::new();
    let map = INTERNED.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(def) = map.get(&key) {
        return Some(def);
    }
    let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
    let values: Vec<&'static str> = enum_values.iter().map(|v| leak(v)).collect();
    let def: &'static GucDef = Box::leak(Box::new(GucDef {
        name: leak(name),
        vartype,
        unit: unit.filter(|u| !u.is_empty()).map(leak),
        context,
        enum_values: Box::leak(values.into_boxed_slice()),
        min: num(min),
        max: num(max),
        since: 12,
        until: None,
        hot_standby_sensitive: false,
    }));
    map.insert(key, def);
    Some(def)
}
