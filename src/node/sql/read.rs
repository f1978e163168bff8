//! Gathering's reads of a running server: one pipelined batch of queries
//! on one connection, mapped into the observed model.

use indexmap::IndexMap;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::row::{At, Cells};
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
// Whole files as bytes (text would reject invalid encoding); NULL if
// absent: the server's own hba_file (the file apply writes, wherever the
// configuration puts it), then the paths $1.
const SQL_READ_FILES: &str =
    "SELECT CASE WHEN (pg_stat_file(f, true)).isdir IS FALSE THEN pg_read_binary_file(f) END
  FROM unnest(array_prepend(current_setting('hba_file'), $1::text[])) WITH ORDINALITY AS t(f, i) ORDER BY i";
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
    /// postgresql.auto.conf. pg_hba.conf is the server's `hba_file`, read
    /// by that name: the file apply writes (the gather script asks the
    /// configuration for the same name on a stopped node).
    pub auto_conf: String,
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
        let files = server_files(&b, &self.node)?;
        Ok((server_facts(b, &self.node)?, files))
    }

    async fn batch(&self, q: &ServerQuery) -> anyhow::Result<Batch> {
        let client = &self.client;
        let role_param: [&(dyn ToSql + Sync); 1] = [&q.roles];
        let paths = vec![q.auto_conf.clone()];
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

/// A timeline as the server gives it (int4): none when out of range.
fn tli(v: Option<i32>) -> Option<u32> {
    v.and_then(|t| u32::try_from(t).ok())
}

/// Every row of a query, each mapped by `f`; the first bad value is the error.
fn each<R: Cells, T>(
    rows: &[R],
    at: At<'_>,
    f: impl Fn(&R, At<'_>) -> anyhow::Result<T>,
) -> anyhow::Result<Vec<T>> {
    rows.iter().map(|r| f(r, at)).collect()
}

fn server_files(b: &Batch, node: &str) -> anyhow::Result<ServerFiles> {
    let c = &b.control;
    let at = At {
        node,
        query: "pg_control_system(), pg_control_checkpoint(), pg_control_recovery()",
    };
    let control = ControlData {
        state: at.get(c, 0)?,
        system_identifier: at.get(c, 1)?,
        checkpoint_lsn: lsn(at.get(c, 2)?),
        checkpoint_redo_lsn: lsn(at.get(c, 3)?),
        checkpoint_timeline: tli(at.get(c, 4)?),
        min_recovery_end_lsn: lsn(at.get(c, 5)?).filter(|l| l.0 != 0),
        min_recovery_end_timeline: tli(at.get(c, 6)?).filter(|t| *t != 0),
        wal_log_hints: at.get(c, 7)?,
        data_checksums: at.get(c, 8)?,
        recorded_settings: Default::default(),
    };
    let files = At {
        node,
        query: "pg_read_binary_file(hba_file, postgresql.auto.conf)",
    };
    let file = |i: usize| -> anyhow::Result<Option<String>> {
        b.files
            .get(i)
            .map_or(Ok(None), |r| Ok(text(files.get(r, 0)?)))
    };
    let histories = At {
        node,
        query: "pg_ls_dir('pg_wal') (timeline histories)",
    };
    let histories = each(&b.histories, histories, |r, at| {
        let name: String = at.get(r, 0)?;
        let content = text(at.get(r, 1)?);
        Ok(u32::from_str_radix(name.trim_end_matches(".history"), 16)
            .ok()
            .zip(content))
    })?;
    let preload = match &b.preload {
        None => None,
        Some(rows) => {
            let at = At {
                node,
                query: "pg_config PKGLIBDIR (preloaded libraries)",
            };
            let rows = each(rows, at, |r, at| {
                Ok((
                    at.get::<String>(r, 0)?,
                    at.get::<String>(r, 1)?,
                    at.get::<bool>(r, 2)?,
                ))
            })?;
            Some(PreloadCheck {
                libdir: rows.first().map(|r| r.0.clone()),
                missing: rows.into_iter().filter(|r| !r.2).map(|r| r.1).collect(),
            })
        }
    };
    Ok(ServerFiles {
        control,
        hba_conf: file(0)?,
        auto_conf: file(1)?,
        histories: histories.into_iter().flatten().collect(),
        preload,
    })
}

/// pg_settings by name; primary_conninfo with its password redacted.
fn settings<R: Cells>(rows: &[R], node: &str) -> anyhow::Result<IndexMap<String, PgSetting>> {
    let at = At {
        node,
        query: "pg_settings",
    };
    let rows = each(rows, at, |r, at| {
        let name: String = at.get(r, 0)?;
        let mut setting: String = at.get::<Option<String>>(r, 1)?.unwrap_or_default();
        if name == "primary_conninfo" {
            setting = redact_conninfo(&setting);
        }
        Ok((
            name.clone(),
            PgSetting {
                name,
                setting,
                unit: at.get(r, 2)?,
                context: at.get(r, 3)?,
                vartype: at.get(r, 4)?,
                pending_restart: at.get(r, 5)?,
                source: at.get(r, 6)?,
            },
        ))
    })?;
    Ok(rows.into_iter().collect())
}

fn roles<R: Cells>(rows: &[R], node: &str) -> anyhow::Result<IndexMap<String, RoleFacts>> {
    let at = At {
        node,
        query: "pg_authid (the file's roles)",
    };
    let rows = each(rows, at, |r, at| {
        let name: String = at.get(r, 0)?;
        let verifier: Option<String> = at.get(r, 4)?;
        Ok((
            name.clone(),
            RoleFacts {
                name,
                login: at.get(r, 1)?,
                replication: at.get(r, 2)?,
                superuser: at.get(r, 3)?,
                valid_until: at.get(r, 6)?,
                expired: at.get(r, 7)?,
                connection_limit: at.get(r, 8)?,
                verifier_digest: verifier.as_deref().map(crate::digest::digest),
                verifier,
                rewind_grants: at.get(r, 5)?,
            },
        ))
    })?;
    Ok(rows.into_iter().collect())
}

fn server_facts(b: Batch, node: &str) -> anyhow::Result<ServerFacts> {
    let s = &b.server;
    let at = |query| At { node, query };
    let server = at("the server's version, recovery, timeline and positions");
    let settings = settings(&b.settings, node)?;
    let custom_settings = each(
        &b.custom,
        at("current_setting() of custom settings"),
        |r, at| Ok((at.get::<String>(r, 0)?, at.get::<Option<String>>(r, 1)?)),
    )?
    .into_iter()
    .filter(|(n, _)| !settings.contains_key(n))
    .collect();
    Ok(ServerFacts {
        version_num: u32::try_from(server.get::<i32>(s, 0)?).unwrap_or(0),
        in_recovery: server.get(s, 1)?,
        system_identifier: server.get(s, 2)?,
        timeline: tli(server.get(s, 3)?).unwrap_or(0),
        current_lsn: lsn(server.get(s, 4)?),
        receive_lsn: lsn(server.get(s, 5)?),
        replay_lsn: lsn(server.get(s, 6)?),
        replay_delay_s: server.get(s, 7)?,
        data_directory: server.get(s, 8)?,
        hba_file: server.get(s, 9)?,
        database_size_bytes: server.get(s, 10)?,
        replay_paused: server.get::<Option<bool>>(s, 11)?.unwrap_or(false),
        md5_roles: server.get(s, 12)?,
        custom_settings,
        settings,
        file_setting_errors: each(&b.file_errors, at("pg_file_settings"), |r, at| at.get(r, 0))?,
        roles: roles(&b.roles, node)?,
        hba_errors: each(&b.hba, at("pg_hba_file_rules"), |r, at| {
            Ok((at.get(r, 0)?, at.get(r, 1)?))
        })?,
        hba_rules: each(&b.hba_rules, at("pg_hba_file_rules by file"), |r, at| {
            Ok(FileRule {
                rule_number: at.get(r, 0)?,
                file_name: at.get(r, 1)?,
                line_number: at.get(r, 2)?,
                kind: at.get(r, 3)?,
                database: at.get(r, 4)?,
                user_name: at.get(r, 5)?,
                address: at.get(r, 6)?,
                netmask: at.get(r, 7)?,
            })
        })?,
        slots: each(&b.slots, at("pg_replication_slots"), |r, at| {
            Ok(SlotFacts {
                name: at.get(r, 0)?,
                slot_type: at.get(r, 1)?,
                active: at.get(r, 2)?,
                restart_lsn: lsn(at.get(r, 3)?),
                wal_status: at.get(r, 4)?,
                retained_bytes: at.get(r, 5)?,
                invalidation_reason: at.get(r, 6)?,
            })
        })?,
        replication: each(&b.replication, at("pg_stat_get_wal_senders()"), |r, at| {
            Ok(ReplicationFacts {
                application_name: at.get(r, 0)?,
                client_addr: at.get(r, 1)?,
                state: at.get(r, 2)?,
                sent_lsn: lsn(at.get(r, 3)?),
                flush_lsn: lsn(at.get(r, 4)?),
                replay_lsn: lsn(at.get(r, 5)?),
                sync_state: at.get(r, 6)?,
                replay_lag_s: at.get(r, 7)?,
            })
        })?,
        wal_receiver: each(&b.receiver, at("pg_stat_wal_receiver"), |r, at| {
            Ok(WalReceiverFacts {
                status: at.get(r, 0)?,
                received_tli: tli(at.get(r, 1)?),
                flushed_lsn: lsn(at.get(r, 2)?),
                slot_name: at.get(r, 3)?,
                sender_host: at.get(r, 4)?,
                sender_port: at.get(r, 5)?,
            })
        })?
        .into_iter()
        .next(),
    })
}

#[cfg(test)]
mod tests {
    use tokio_postgres::types::Type;

    use super::super::row::fake::{FakeRow, boolean, int4, null, text};
    use super::*;

    fn role(
        name: &str,
        valid_until: (Type, Option<Vec<u8>>),
        login: (Type, Option<Vec<u8>>),
    ) -> FakeRow {
        FakeRow(vec![
            text(name),
            login,
            boolean(true),
            boolean(false),
            null(Type::TEXT),
            boolean(true),
            valid_until,
            boolean(false),
            int4(-1),
        ])
    }

    #[test]
    fn a_role_row_reads_into_its_facts() {
        let rows = [role(
            "replicator",
            text("2030-01-01 00:00:00+00"),
            boolean(true),
        )];
        let read = roles(&rows, "node1").expect("reads");
        let r = &read["replicator"];
        assert!(r.login && r.replication && !r.superuser && r.rewind_grants);
        assert_eq!(r.valid_until.as_deref(), Some("2030-01-01 00:00:00+00"));
        assert_eq!(r.connection_limit, -1);
        assert!(r.verifier.is_none());
        // rolvaliduntil NULL is a role that never expires.
        let rows = [role("replicator", null(Type::TEXT), boolean(true))];
        assert_eq!(
            roles(&rows, "node1").expect("reads")["replicator"].valid_until,
            None
        );
    }

    /// On main `r.get(1)` panicked on a NULL (or a text where a bool was
    /// expected); now it is an error naming the node, the query and the column.
    #[test]
    fn a_null_or_a_wrong_type_where_a_value_is_required_is_an_error() {
        for bad in [null(Type::BOOL), text("yes")] {
            let rows = [role("replicator", null(Type::TEXT), bad)];
            let err = roles(&rows, "node1").expect_err("refused");
            let text = format!("{err:#}");
            assert!(
                text.starts_with("node1: pg_authid (the file's roles): column 2"),
                "{text}"
            );
        }
        let setting = FakeRow(vec![
            text("work_mem"),
            text("4096"),
            null(Type::TEXT),
            null(Type::TEXT),
            text("integer"),
            boolean(false),
            text("default"),
        ]);
        let err = settings(&[setting], "node2").expect_err("refused");
        assert!(
            format!("{err:#}").starts_with("node2: pg_settings: column 4"),
            "{err:#}"
        );
    }
}
