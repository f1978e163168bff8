//! Gathering's reads of a running server: one pipelined batch of queries
//! on one connection, mapped into the observed model.

use indexmap::IndexMap;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{SQL_HBA_ERRORS, Sql};
use crate::hba::FileRule;
use crate::observed::parse::redact_conninfo;
use crate::observed::{
    ControlData, Lsn, PgSetting, PreloadCheck, ReplicationFacts, RoleFacts, ServerFacts, SlotFacts,
    WalReceiverFacts,
};

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
  pg_is_in_recovery() AND pg_is_wal_replay_paused(),
  ARRAY(SELECT rolname::text FROM pg_authid WHERE rolpassword LIKE 'md5%' ORDER BY 1)";

const SQL_SETTINGS: &str =
    "SELECT name, setting, unit, context, vartype, pending_restart, source FROM pg_settings";
const SQL_FILE_SETTINGS: &str = "SELECT coalesce(sourcefile, '') || ':' || coalesce(sourceline, 0) || ': ' || coalesce(name, '') || ': ' || error FROM pg_file_settings WHERE error IS NOT NULL AND error <> 'setting could not be applied'";
pub(super) const SQL_ROLES: &str = "SELECT rolname::text, rolcanlogin, rolreplication, rolsuper, rolpassword,
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
// invalidation_reason is PostgreSQL 17's (NULL before): read through
// to_jsonb, so that one query serves every major.
const SQL_SLOTS: &str = "SELECT slot_name::text, slot_type, active, restart_lsn::text, wal_status,
  CASE WHEN restart_lsn IS NULL THEN NULL
       ELSE pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) ELSE pg_current_wal_lsn() END, restart_lsn)::int8 END,
  to_jsonb(s) ->> 'invalidation_reason'
  FROM pg_replication_slots s ORDER BY slot_name";
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
// pg_hba.conf's rules with the file each comes from (PostgreSQL 16+, where
// include directives exist; no rows before): which rules of included files
// PostgreSQL matches before the managed block.
const SQL_HBA_RULES: &str =
    "SELECT (j ->> 'rule_number')::int4, j ->> 'file_name', coalesce(line_number, 0),
  type, coalesce(database, '{}'), coalesce(user_name, '{}'), address, netmask
  FROM pg_hba_file_rules h, LATERAL to_jsonb(h) j
  WHERE error IS NULL AND j ? 'file_name' ORDER BY 1";
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

/// What gathering asks a server beyond the fixed queries.
pub struct ServerQuery {
    /// The roles the file manages (replication, rewind).
    pub roles: Vec<String>,
    /// pg_hba.conf and postgresql.auto.conf: the same paths the gather
    /// script reads on a stopped node, and apply writes.
    pub files: [String; 2],
    /// The custom (dotted) setting names the file sets.
    pub custom_settings: Vec<String>,
    /// The libraries the file preloads.
    pub libraries: Vec<String>,
}

/// A running server's own files, read over SQL rather than by the gather
/// script.
pub struct ServerFiles {
    pub control: ControlData,
    pub hba_conf: Option<String>,
    pub auto_conf: Option<String>,
    pub histories: Vec<(u32, String)>,
    pub preload: Option<PreloadCheck>,
}

/// The batch's answers, row by row.
struct Batch {
    server: Row,
    settings: Vec<Row>,
    file_errors: Vec<Row>,
    roles: Vec<Row>,
    hba: Vec<Row>,
    hba_rules: Vec<Row>,
    slots: Vec<Row>,
    replication: Vec<Row>,
    receiver: Vec<Row>,
    control: Row,
    files: Vec<Row>,
    histories: Vec<Row>,
    custom: Vec<Row>,
    preload: Option<Vec<Row>>,
}

impl Sql {
    /// The server's state and its own files, in one pipelined batch.
    pub async fn read_server(&self, q: &ServerQuery) -> anyhow::Result<(ServerFacts, ServerFiles)> {
        let b = self.batch(q).await?;
        let files = server_files(&b);
        Ok((server_facts(b), files))
    }

    async fn batch(&self, q: &ServerQuery) -> anyhow::Result<Batch> {
        let client = &self.client;
        let role_param: [&(dyn ToSql + Sync); 1] = [&q.roles];
        let paths = q.files.to_vec();
        let path_param: [&(dyn ToSql + Sync); 1] = [&paths];
        let custom_param: [&(dyn ToSql + Sync); 1] = [&q.custom_settings];
        let lib_param: [&(dyn ToSql + Sync); 1] = [&q.libraries];
        // Only when the file names one: an empty batch entry still costs a round.
        let custom = async {
            if q.custom_settings.is_empty() {
                Ok(Vec::new())
            } else {
                client.query(SQL_CUSTOM_SETTINGS, &custom_param).await
            }
        };
        let preload = async {
            if q.libraries.is_empty() {
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
            hba_rules,
            slots,
            replication,
            receiver,
            control,
            files,
            histories,
            custom,
            preload,
        ) = tokio::try_join!(
            client.query_one(SQL_SERVER, &[]),
            client.query(SQL_SETTINGS, &[]),
            client.query(SQL_FILE_SETTINGS, &[]),
            client.query(SQL_ROLES, &role_param),
            client.query(SQL_HBA_ERRORS, &[]),
            client.query(SQL_HBA_RULES, &[]),
            client.query(SQL_SLOTS, &[]),
            client.query(SQL_REPLICATION, &[]),
            client.query(SQL_WAL_RECEIVER, &[]),
            client.query_one(SQL_CONTROL, &[]),
            client.query(SQL_READ_FILES, &path_param),
            client.query(SQL_HISTORIES, &[]),
            custom,
            preload,
        )?;
        Ok(Batch {
            server,
            settings,
            file_errors,
            roles,
            hba,
            hba_rules,
            slots,
            replication,
            receiver,
            control,
            files,
            histories,
            custom,
            preload,
        })
    }
}

fn lsn(v: Option<String>) -> Option<Lsn> {
    v.and_then(|s| s.parse::<Lsn>().ok())
}

fn text(b: Option<Vec<u8>>) -> Option<String> {
    b.map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn server_files(b: &Batch) -> ServerFiles {
    let c = &b.control;
    ServerFiles {
        control: ControlData {
            state: c.get(0),
            system_identifier: c.get(1),
            checkpoint_lsn: lsn(c.get(2)),
            checkpoint_redo_lsn: lsn(c.get(3)),
            checkpoint_timeline: u32::try_from(c.get::<_, i32>(4)).ok(),
            min_recovery_end_lsn: lsn(c.get(5)).filter(|l| l.0 != 0),
            min_recovery_end_timeline: u32::try_from(c.get::<_, i32>(6)).ok().filter(|t| *t != 0),
            wal_log_hints: c.get(7),
            data_checksums: c.get(8),
            recorded_settings: Default::default(),
        },
        hba_conf: b.files.first().and_then(|r| text(r.get(0))),
        auto_conf: b.files.get(1).and_then(|r| text(r.get(0))),
        histories: b
            .histories
            .iter()
            .filter_map(|r| {
                let name: String = r.get(0);
                let tli = u32::from_str_radix(name.strip_suffix(".history")?, 16).ok()?;
                Some((tli, text(r.get(1))?))
            })
            .collect(),
        preload: b.preload.as_ref().map(|rows| PreloadCheck {
            libdir: rows.first().map(|r| r.get(0)),
            missing: rows
                .iter()
                .filter(|r| !r.get::<_, bool>(2))
                .map(|r| r.get(1))
                .collect(),
        }),
    }
}

/// pg_settings by name; primary_conninfo with its password redacted.
fn settings(rows: &[Row]) -> IndexMap<String, PgSetting> {
    rows.iter()
        .map(|r| {
            let name: String = r.get(0);
            let mut setting: String = r.get::<_, Option<String>>(1).unwrap_or_default();
            if name == "primary_conninfo" {
                setting = redact_conninfo(&setting);
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
        .collect()
}

fn roles(rows: &[Row]) -> IndexMap<String, RoleFacts> {
    rows.iter()
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
                    verifier_digest: verifier.as_deref().map(crate::digest::digest),
                    verifier,
                    rewind_grants: r.get(5),
                },
            )
        })
        .collect()
}

fn server_facts(b: Batch) -> ServerFacts {
    let s = &b.server;
    let settings = settings(&b.settings);
    ServerFacts {
        version_num: u32::try_from(s.get::<_, i32>(0)).unwrap_or(0),
        in_recovery: s.get(1),
        system_identifier: s.get(2),
        timeline: u32::try_from(s.get::<_, i32>(3)).unwrap_or(0),
        current_lsn: lsn(s.get(4)),
        receive_lsn: lsn(s.get(5)),
        replay_lsn: lsn(s.get(6)),
        replay_delay_s: s.get(7),
        data_directory: s.get(8),
        hba_file: s.get(9),
        database_size_bytes: s.get(10),
        replay_paused: s.get::<_, Option<bool>>(11).unwrap_or(false),
        md5_roles: s.get(12),
        custom_settings: b
            .custom
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, Option<String>>(1)))
            .filter(|(n, _)| !settings.contains_key(n))
            .collect(),
        settings,
        file_setting_errors: b.file_errors.iter().map(|r| r.get(0)).collect(),
        roles: roles(&b.roles),
        hba_errors: b.hba.iter().map(|r| (r.get(0), r.get(1))).collect(),
        hba_rules: b
            .hba_rules
            .iter()
            .map(|r| FileRule {
                rule_number: r.get(0),
                file_name: r.get(1),
                line_number: r.get(2),
                kind: r.get(3),
                database: r.get(4),
                user_name: r.get(5),
                address: r.get(6),
                netmask: r.get(7),
            })
            .collect(),
        slots: b
            .slots
            .iter()
            .map(|r| SlotFacts {
                name: r.get(0),
                slot_type: r.get(1),
                active: r.get(2),
                restart_lsn: lsn(r.get(3)),
                wal_status: r.get(4),
                retained_bytes: r.get(5),
                invalidation_reason: r.get(6),
            })
            .collect(),
        replication: b
            .replication
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
        wal_receiver: b.receiver.first().map(|r| WalReceiverFacts {
            status: r.get(0),
            received_tli: r
                .get::<_, Option<i32>>(1)
                .and_then(|t| u32::try_from(t).ok()),
            flushed_lsn: lsn(r.get(2)),
            slot_name: r.get(3),
            sender_host: r.get(4),
            sender_port: r.get(5),
        }),
    }
}
