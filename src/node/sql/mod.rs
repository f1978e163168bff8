//! Every query pgrepl sends to a node's server, each a typed function over
//! one connection (`Sql`). Values travel as parameters where the protocol
//! allows; where it does not (`ALTER SYSTEM`, `CREATE ROLE`, ...), they are
//! quoted by `crate::quote`, and a statement holding a NUL byte is never
//! sent. The reads of gathering, one pipelined batch, are in `read`.
//!
//! Every query of a role change is bounded (`QUERY_LIMIT`; CHECKPOINT and
//! pg_promote have their own limits): a cut network makes an open
//! connection hang, and a cut node must be an error, not a hang.

mod read;
mod row;

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio_postgres::Client;

pub use read::{ServerFiles, ServerQuery};
use row::At;

use super::Node;
use super::remote::SqlRoute;
use crate::observed::Lsn;
use crate::quote::{setting_name, sql_ident, sql_literal};

/// How long one query may take before the node counts as lost.
pub const QUERY_LIMIT: Duration = Duration::from_secs(10);
/// How long a CHECKPOINT may take.
pub const CHECKPOINT_LIMIT: Duration = Duration::from_secs(300);
/// How long `pg_promote(true, 60)` may take to answer.
const PROMOTE_LIMIT: Duration = Duration::from_secs(70);
/// A last sign of life right before a promotion.
const ANSWER_LIMIT: Duration = Duration::from_secs(2);

/// The functions pg_rewind needs on its source, granted to the rewind role
/// (gathering checks the same list: `read::SQL_ROLES`).
pub const REWIND_FUNCTIONS: [&str; 4] = [
    "pg_catalog.pg_ls_dir(text, boolean, boolean)",
    "pg_catalog.pg_stat_file(text, boolean)",
    "pg_catalog.pg_read_binary_file(text)",
    "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
];

// An error in a file pg_hba.conf includes (PostgreSQL 16+) names that
// file: its line number is that file's.
const SQL_HBA_ERRORS: &str = "SELECT coalesce(line_number, 0), error || coalesce(' (in ' || nullif(to_jsonb(h) ->> 'file_name', current_setting('hba_file')) || ')', '')
  FROM pg_hba_file_rules h WHERE error IS NOT NULL";
const SQL_WAL_RECEIVER_STATUS: &str = "SELECT status FROM pg_stat_wal_receiver";
const SQL_PROMOTE: &str = "SELECT pg_promote(true, 60)";

/// The bridge's argument vector for the server socket `socket`.
fn bridge_argv(socket: &str) -> [&str; 5] {
    ["perl", "-e", super::scripts::SQL_BRIDGE, "--", socket]
}

impl Node<'_> {
    /// A connection to the node's server through its socket, as the user
    /// that runs PostgreSQL (peer authentication). Directly: the socket is
    /// forwarded over SSH and that user is the SSH user. Otherwise (sudo):
    /// a bridge run through the node's `Access` relays the socket over its
    /// stdio, and that user is the one the bridge runs as.
    pub async fn sql(&self) -> anyhow::Result<Sql> {
        let pg = &self.spec.postgres;
        let client = match self.access.sql_route() {
            SqlRoute::ForwardedSocket => self.session.pg_client(pg.port, &pg.socket_dir).await?,
            SqlRoute::Bridge { user } => self.sql_bridge(user).await?,
        };
        Ok(Sql {
            client,
            node: self.name().to_string(),
        })
    }

    /// A connection over the stdio of the SQL bridge run as `user` on the
    /// node; sudo refusing to run the bridge is said as such.
    async fn sql_bridge(&self, user: &str) -> anyhow::Result<Client> {
        self.bridge_client(user, "postgres").await
    }

    /// A connection to database `dbname` as `user` over the stdio of the
    /// SQL bridge, run on the node as `exec` says (peer authentication sees
    /// that user); sudo or the engine refusing to run it is said as such.
    /// The route of every SQL or console connection of a sudo or container
    /// node.
    pub(in crate::node) async fn bridge_client(
        &self,
        user: &str,
        dbname: &str,
    ) -> anyhow::Result<Client> {
        let pg = &self.spec.postgres;
        let socket = format!("{}/.s.PGSQL.{}", pg.socket_dir, pg.port);
        let bridge = self.access.command(&bridge_argv(&socket));
        // A container's bridge starts through the engine (`docker exec`),
        // which a loaded host can make take seconds: the node has answered
        // SSH already, so this wait only ever delays a slow answer.
        let slack = if self.container().is_some() {
            super::container::CLI_MARGIN
        } else {
            Duration::ZERO
        };
        match self
            .session
            .pg_client_over(&bridge, user, dbname, &socket, slack)
            .await
        {
            Ok(client) => Ok(client),
            Err(failure) => {
                if let Some(out) = &failure.output {
                    self.refused(&bridge.program, out)?;
                }
                Err(failure.error)
            }
        }
    }
}

/// A query bounded by `limit`.
async fn bounded<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.with_context(|| what.to_string()),
        // The timeout stays in the chain: a rerun may pass (apply::failure).
        Err(elapsed) => Err(anyhow::Error::new(elapsed)
            .context(format!("{what}: no answer within {}s", limit.as_secs()))),
    }
}

/// PostgreSQL text holds no NUL byte: a statement with one is refused here
/// rather than cut short on the way.
fn statement(sql: String) -> anyhow::Result<String> {
    if sql.contains('\0') {
        bail!("refusing to send a statement holding a NUL byte");
    }
    Ok(sql)
}

/// How far a standby replayed towards a target position.
pub struct Replay {
    pub reached: bool,
    pub replayed: String,
    pub pause_state: String,
    pub receiver: String,
}

/// A role as `ensure_role` needs to see it.
pub struct RoleRow {
    pub login: bool,
    pub replication: bool,
    pub verifier: Option<String>,
    pub expires: bool,
    pub connection_limit: i32,
}

/// One connection to one node's server.
pub struct Sql {
    client: Client,
    node: String,
}

impl Sql {
    /// Where a row came from, for a value that is not what pgrepl reads.
    fn at<'a>(&'a self, query: &'a str) -> At<'a> {
        At {
            node: &self.node,
            query,
        }
    }

    /// Runs `sql` alone (no parameters, no transaction), within `QUERY_LIMIT`.
    async fn send(&self, sql: String, what: &str) -> anyhow::Result<()> {
        let sql = statement(sql)?;
        bounded(QUERY_LIMIT, what, self.client.simple_query(&sql)).await?;
        Ok(())
    }

    /// Whether the server answers a query at all.
    pub async fn answers(&self) -> bool {
        bounded(
            QUERY_LIMIT,
            "SELECT 1",
            self.client.simple_query("SELECT 1"),
        )
        .await
        .is_ok()
    }

    /// A last sign of life right before a promotion: a failure now is surely
    /// before it.
    pub async fn answers_now(&self) -> anyhow::Result<()> {
        bounded(
            ANSWER_LIMIT,
            "checking that the candidate answers",
            self.client.simple_query("SELECT 1"),
        )
        .await?;
        Ok(())
    }

    pub async fn in_recovery(&self) -> anyhow::Result<bool> {
        let row = bounded(
            QUERY_LIMIT,
            "SELECT pg_is_in_recovery()",
            self.client.query_one("SELECT pg_is_in_recovery()", &[]),
        )
        .await?;
        self.at("SELECT pg_is_in_recovery()").get(&row, 0)
    }

    /// `ALTER SYSTEM SET name = rhs`, `rhs` already quoted (by the plan, or
    /// by `set_text`). Before PostgreSQL 17, ALTER SYSTEM refuses a custom
    /// name that this session has no placeholder for ("unrecognized
    /// configuration parameter"): with `custom`, a SET makes one, and RESET
    /// leaves the session's value to the files again, so the next reload
    /// sets it like any other session's.
    pub async fn alter_system(&self, name: &str, rhs: &str, custom: bool) -> anyhow::Result<()> {
        let name = setting_name(name)?;
        if custom {
            self.send(format!("SET {name} = {rhs}"), &format!("SET {name}"))
                .await?;
        }
        // ALTER SYSTEM cannot run in a transaction block and takes no
        // parameters: sent alone.
        let altered = self
            .send(
                format!("ALTER SYSTEM SET {name} = {rhs}"),
                &format!("ALTER SYSTEM SET {name}"),
            )
            .await;
        if custom {
            self.send(format!("RESET {name}"), &format!("RESET {name}"))
                .await?;
        }
        altered
    }

    /// `ALTER SYSTEM SET name = 'value'` for a plain text value.
    pub async fn set_text(&self, name: &str, value: &str) -> anyhow::Result<()> {
        self.alter_system(name, &sql_literal(value), false).await
    }

    pub async fn reload(&self) -> anyhow::Result<()> {
        self.send("SELECT pg_reload_conf()".into(), "SELECT pg_reload_conf()")
            .await
    }

    /// What keeps the configuration files from loading (pg_reload_conf()
    /// returns true even then): `FILE:LINE: error` each.
    pub async fn config_errors(&self) -> anyhow::Result<Vec<String>> {
        const SQL: &str = "SELECT coalesce(sourcefile, '') || ':' || coalesce(sourceline, 0) || ': ' || error FROM pg_file_settings WHERE error IS NOT NULL AND error <> 'setting could not be applied'
             UNION ALL
             SELECT coalesce(to_jsonb(h) ->> 'file_name', 'pg_hba.conf') || ':' || coalesce(line_number, 0) || ': ' || error FROM pg_hba_file_rules h WHERE error IS NOT NULL";
        let rows = bounded(QUERY_LIMIT, "pg_file_settings", self.client.query(SQL, &[])).await?;
        let at = self.at("pg_file_settings and pg_hba_file_rules errors");
        rows.iter().map(|r| at.get(r, 0)).collect()
    }

    /// pg_hba.conf's rules PostgreSQL rejects, as read from the file on disk:
    /// (line, error).
    pub async fn hba_errors(&self) -> anyhow::Result<Vec<(i32, String)>> {
        let rows = bounded(
            QUERY_LIMIT,
            "pg_hba_file_rules",
            self.client.query(SQL_HBA_ERRORS, &[]),
        )
        .await?;
        let at = self.at("pg_hba_file_rules");
        rows.iter()
            .map(|r| Ok((at.get(r, 0)?, at.get(r, 1)?)))
            .collect()
    }

    /// The files' value of each setting, the last line for each name
    /// winning: what the next start takes.
    pub async fn file_settings(&self) -> anyhow::Result<Vec<(String, String)>> {
        const SQL: &str = "SELECT name, setting FROM pg_file_settings WHERE error IS NULL OR error = 'setting could not be applied' ORDER BY seqno";
        let rows = bounded(QUERY_LIMIT, "pg_file_settings", self.client.query(SQL, &[])).await?;
        let at = self.at("pg_file_settings");
        rows.iter()
            .map(|r| Ok((at.get(r, 0)?, at.get(r, 1)?)))
            .collect()
    }

    /// The application names of the standbys streaming from this server.
    pub async fn streaming_standbys(&self) -> anyhow::Result<Vec<String>> {
        const SQL: &str = "SELECT coalesce(array_agg(application_name ORDER BY application_name), '{}') FROM pg_stat_replication WHERE state = 'streaming'";
        let row = bounded(
            QUERY_LIMIT,
            "reading pg_stat_replication",
            self.client.query_one(SQL, &[]),
        )
        .await?;
        self.at("pg_stat_replication").get(&row, 0)
    }

    /// The WAL receiver's status (`streaming`, ...), if there is one.
    pub async fn wal_receiver_status(&self) -> anyhow::Result<Option<String>> {
        let row = bounded(
            QUERY_LIMIT,
            "reading pg_stat_wal_receiver",
            self.client.query_opt(SQL_WAL_RECEIVER_STATUS, &[]),
        )
        .await?;
        row.map(|r| self.at("pg_stat_wal_receiver").get(&r, 0))
            .transpose()
    }

    pub async fn checkpoint(&self) -> anyhow::Result<()> {
        let what = format!("CHECKPOINT on {}", self.node);
        bounded(
            CHECKPOINT_LIMIT,
            &what,
            self.client.simple_query("CHECKPOINT"),
        )
        .await?;
        Ok(())
    }

    /// The last checkpoint's redo position, and whether it began after the
    /// server started (so it is past the server's parameter change record).
    pub async fn last_checkpoint(&self) -> anyhow::Result<(String, bool)> {
        const SQL: &str = "SELECT redo_lsn::text, checkpoint_time > pg_postmaster_start_time() FROM pg_control_checkpoint()";
        let row = bounded(
            QUERY_LIMIT,
            "pg_control_checkpoint()",
            self.client.query_one(SQL, &[]),
        )
        .await?;
        let at = self.at("pg_control_checkpoint()");
        Ok((at.get(&row, 0)?, at.get(&row, 1)?))
    }

    /// A primary's current WAL position, as text.
    pub async fn current_wal_lsn(&self) -> anyhow::Result<String> {
        let row = bounded(
            QUERY_LIMIT,
            "pg_current_wal_lsn()",
            self.client
                .query_one("SELECT pg_current_wal_lsn()::text", &[]),
        )
        .await?;
        self.at("pg_current_wal_lsn()").get(&row, 0)
    }

    /// How far this standby replayed towards `target` (a position as text).
    pub async fn replay_towards(&self, target: &str) -> anyhow::Result<Replay> {
        let target = sql_literal(target);
        let sql = statement(format!(
            "SELECT coalesce(pg_last_wal_replay_lsn() >= {target}::pg_lsn, false), coalesce(pg_last_wal_replay_lsn()::text, 'none'), pg_get_wal_replay_pause_state(), coalesce((SELECT status FROM pg_stat_wal_receiver), 'no WAL receiver')"
        ))?;
        let row = bounded(
            QUERY_LIMIT,
            "pg_last_wal_replay_lsn()",
            self.client.query_one(&sql, &[]),
        )
        .await?;
        let at = self.at("pg_last_wal_replay_lsn()");
        Ok(Replay {
            reached: at.get(&row, 0)?,
            replayed: at.get(&row, 1)?,
            pause_state: at.get(&row, 2)?,
            receiver: at.get(&row, 3)?,
        })
    }

    /// Whether this standby's last restartpoint's redo is at or past `redo`
    /// (a position as text), and where it is.
    pub async fn restartpoint_past(&self, redo: &str) -> anyhow::Result<(bool, String)> {
        let redo = sql_literal(redo);
        let sql = statement(format!(
            "SELECT redo_lsn >= {redo}::pg_lsn, redo_lsn::text FROM pg_control_checkpoint()"
        ))?;
        let row = bounded(
            QUERY_LIMIT,
            "pg_control_checkpoint()",
            self.client.query_one(&sql, &[]),
        )
        .await?;
        let at = self.at("pg_control_checkpoint()");
        Ok((at.get(&row, 0)?, at.get(&row, 1)?))
    }

    /// Whether this standby received WAL past `lsn`.
    pub async fn received_past(&self, lsn: Lsn) -> anyhow::Result<bool> {
        let sql = format!("SELECT pg_last_wal_receive_lsn() > '{lsn}'::pg_lsn");
        let row = bounded(
            QUERY_LIMIT,
            "pg_last_wal_receive_lsn()",
            self.client.query_one(&sql, &[]),
        )
        .await?;
        Ok(self
            .at("pg_last_wal_receive_lsn()")
            .get::<Option<bool>>(&row, 0)?
            .unwrap_or(false))
    }

    /// What this standby has, as the planner counts it: the further of what
    /// it received and what it replayed.
    pub async fn received_or_replayed(&self) -> anyhow::Result<Option<Lsn>> {
        let row = bounded(
            QUERY_LIMIT,
            "pg_last_wal_receive_lsn()",
            self.client.query_one(
                "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text",
                &[],
            ),
        )
        .await?;
        let at = self.at("pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()");
        Ok([
            at.get::<Option<String>>(&row, 0)?,
            at.get::<Option<String>>(&row, 1)?,
        ]
        .into_iter()
        .flatten()
        .filter_map(|l| l.parse::<Lsn>().ok())
        .max())
    }

    /// `pg_promote()`, waiting for it (at most 60 s on the server).
    pub async fn promote(&self) -> anyhow::Result<()> {
        bounded(
            PROMOTE_LIMIT,
            "pg_promote()",
            self.client.query_one(SQL_PROMOTE, &[]),
        )
        .await?;
        Ok(())
    }

    pub async fn role(&self, name: &str) -> anyhow::Result<Option<RoleRow>> {
        const SQL: &str = "SELECT rolcanlogin, rolreplication, rolpassword,
               rolvaliduntil IS NOT NULL AND rolvaliduntil <> 'infinity', rolconnlimit
             FROM pg_authid WHERE rolname = $1";
        let row = bounded(
            QUERY_LIMIT,
            "pg_authid",
            self.client.query_opt(SQL, &[&name]),
        )
        .await?;
        let at = self.at("pg_authid");
        row.map(|r| {
            Ok(RoleRow {
                login: at.get(&r, 0)?,
                replication: at.get(&r, 1)?,
                verifier: at.get(&r, 2)?,
                expires: at.get(&r, 3)?,
                connection_limit: at.get(&r, 4)?,
            })
        })
        .transpose()
    }

    /// `CREATE ROLE name ATTRS PASSWORD 'verifier'`: the verifier is made by
    /// pgrepl, so the clear password never reaches the server.
    pub async fn create_role(&self, name: &str, attrs: &str, verifier: &str) -> anyhow::Result<()> {
        let ident = sql_ident(name);
        self.send(
            format!(
                "CREATE ROLE {ident} {attrs} PASSWORD {}",
                sql_literal(verifier)
            ),
            &format!("CREATE ROLE {ident}"),
        )
        .await
    }

    /// `ALTER ROLE name CLAUSES`.
    pub async fn alter_role(&self, name: &str, clauses: &str) -> anyhow::Result<()> {
        let sql = format!("ALTER ROLE {} {clauses}", sql_ident(name));
        self.send(sql.clone(), &sql).await
    }

    pub async fn set_password(&self, name: &str, verifier: &str) -> anyhow::Result<()> {
        let ident = sql_ident(name);
        self.send(
            format!("ALTER ROLE {ident} PASSWORD {}", sql_literal(verifier)),
            &format!("ALTER ROLE {ident} PASSWORD"),
        )
        .await
    }

    /// Grants the rewind role what pg_rewind calls on its source.
    pub async fn grant_rewind_functions(&self, name: &str) -> anyhow::Result<()> {
        let ident = sql_ident(name);
        for f in REWIND_FUNCTIONS {
            self.send(
                format!("GRANT EXECUTE ON FUNCTION {f} TO {ident}"),
                &format!("GRANT EXECUTE ON FUNCTION {f}"),
            )
            .await?;
        }
        Ok(())
    }

    /// Whether the slot exists, and if so whether a walsender uses it.
    pub async fn slot_active(&self, name: &str) -> anyhow::Result<Option<bool>> {
        const SQL: &str = "SELECT active FROM pg_replication_slots WHERE slot_name = $1";
        let row = bounded(
            QUERY_LIMIT,
            "pg_replication_slots",
            self.client.query_opt(SQL, &[&name]),
        )
        .await?;
        row.map(|r| self.at("pg_replication_slots").get(&r, 0))
            .transpose()
    }

    /// A physical slot that reserves WAL at once (the base backup that
    /// follows streams through it).
    pub async fn create_slot(&self, name: &str) -> anyhow::Result<()> {
        bounded(
            QUERY_LIMIT,
            &format!("creating slot {name}"),
            self.client.query(
                "SELECT pg_create_physical_replication_slot($1, true)",
                &[&name],
            ),
        )
        .await?;
        Ok(())
    }

    pub async fn drop_slot(&self, name: &str) -> anyhow::Result<()> {
        bounded(
            QUERY_LIMIT,
            &format!("dropping slot {name}"),
            self.client
                .query("SELECT pg_drop_replication_slot($1)", &[&name]),
        )
        .await?;
        Ok(())
    }

    /// The WAL segment size, and the history file of the server's current
    /// timeline (none on timeline 1).
    pub async fn segment_size_and_history(&self) -> anyhow::Result<(u64, Option<String>)> {
        const SQL: &str = "SELECT (SELECT setting::int8 FROM pg_settings WHERE name = 'wal_segment_size'),
               (SELECT CASE WHEN (pg_stat_file(f, true)).isdir IS FALSE THEN pg_read_binary_file(f) END
                  FROM (SELECT 'pg_wal/' || upper(lpad(to_hex(timeline_id), 8, '0')) || '.history' AS f
                          FROM pg_control_checkpoint()) h)";
        let row = bounded(
            QUERY_LIMIT,
            "wal_segment_size and the timeline history",
            self.client.query_one(SQL, &[]),
        )
        .await?;
        let at = self.at("wal_segment_size and the timeline history");
        let size =
            u64::try_from(at.get::<Option<i64>>(&row, 0)?.unwrap_or(16 << 20)).unwrap_or(16 << 20);
        let history = at
            .get::<Option<Vec<u8>>>(&row, 1)?
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        Ok((size, history))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_with_a_nul_byte_is_refused() {
        let lit = sql_literal("a\0b");
        assert!(statement(format!("ALTER SYSTEM SET x = {lit}")).is_err());
        assert!(statement(format!("ALTER SYSTEM SET x = {}", sql_literal("ü'\\"))).is_ok());
    }

    #[test]
    fn the_rewind_grants_are_the_functions_gathering_checks() {
        for f in REWIND_FUNCTIONS {
            assert!(read::SQL_ROLES.contains(&format!("'{f}'")), "{f}");
        }
    }
}
