//! A pgBouncer host reached like a node: its ini file (read; written
//! atomically by `files`) and its admin console, which speaks the
//! simple-query protocol only. Every console call is bounded.

use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio_postgres::{Client, SimpleQueryMessage};

use super::Node;
use super::remote::SqlRoute;
use crate::observed::pooler::{PoolDatabase, pool_database};

/// How long a console command other than PAUSE may take.
pub const CONSOLE_LIMIT: Duration = Duration::from_secs(10);

/// One connection to a pooler's admin console.
pub struct Console {
    client: Client,
    pooler: String,
}

impl Node<'_> {
    /// A connection to the pgBouncer admin console, as `admin_user`,
    /// through the socket of `postgres.socket_dir` and `.port`: forwarded,
    /// or through the SQL bridge run as `exec` says (a sudo pooler).
    pub async fn console(&self, admin_user: &str) -> anyhow::Result<Console> {
        let pg = &self.spec.postgres;
        let client = match self.access.sql_route() {
            SqlRoute::ForwardedSocket => {
                self.session
                    .admin_client(pg.port, &pg.socket_dir, admin_user)
                    .await?
            }
            SqlRoute::Bridge { .. } => self.bridge_client(admin_user, "pgbouncer").await?,
        };
        Ok(Console {
            client,
            pooler: self.name().to_string(),
        })
    }
}

impl Console {
    /// Runs one console command within `limit`; its rows, each a list of
    /// (column, value).
    async fn query(
        &self,
        command: &str,
        limit: Duration,
    ) -> anyhow::Result<Vec<Vec<(String, Option<String>)>>> {
        let messages = tokio::time::timeout(limit, self.client.simple_query(command))
            .await
            .map_err(|elapsed| {
                anyhow::Error::new(elapsed).context(format!(
                    "{}: `{command}` on the pgBouncer console: no answer within {}",
                    self.pooler,
                    crate::transport::ssh::humantime(limit)
                ))
            })?
            .with_context(|| format!("{}: `{command}` on the pgBouncer console", self.pooler))?;
        Ok(messages
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(
                    r.columns()
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            (
                                c.name().to_string(),
                                r.try_get(i).ok().flatten().map(str::to_string),
                            )
                        })
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    }

    /// `SHOW DATABASES`, without the console's own `pgbouncer` entry.
    pub async fn databases(&self) -> anyhow::Result<Vec<PoolDatabase>> {
        let rows = self.query("SHOW DATABASES", CONSOLE_LIMIT).await?;
        rows.iter()
            .map(|r| {
                pool_database(|c| {
                    r.iter()
                        .find(|(name, _)| name == c)
                        .and_then(|(_, v)| v.clone())
                })
                .map_err(|e| anyhow!("{}: {e}", self.pooler))
            })
            .filter(|d| d.as_ref().map_or(true, |d| d.name != "pgbouncer"))
            .collect()
    }

    /// `PAUSE db`: waits until the pool's server connections are released
    /// (running transactions finish), at most `limit`.
    pub async fn pause(&self, db: &str, limit: Duration) -> anyhow::Result<()> {
        self.query(&format!("PAUSE {}", console_word(db)?), limit)
            .await
            .map(drop)
    }

    pub async fn resume(&self, db: &str) -> anyhow::Result<()> {
        self.query(&format!("RESUME {}", console_word(db)?), CONSOLE_LIMIT)
            .await
            .map(drop)
    }

    /// `RECONNECT db`: every server connection of the pool is closed once
    /// released, so none to a former primary survives.
    pub async fn reconnect(&self, db: &str) -> anyhow::Result<()> {
        self.query(&format!("RECONNECT {}", console_word(db)?), CONSOLE_LIMIT)
            .await
            .map(drop)
    }

    /// `RELOAD`: pgBouncer reads its ini again (never a restart).
    pub async fn reload(&self) -> anyhow::Result<()> {
        self.query("RELOAD", CONSOLE_LIMIT).await.map(drop)
    }
}

/// A database name as a console argument: the file's checks allow only
/// these characters, and nothing else is ever sent.
fn console_word(db: &str) -> anyhow::Result<&str> {
    if !db.is_empty()
        && db
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "_-.".contains(ch))
    {
        Ok(db)
    } else {
        Err(anyhow!(
            "{db:?} cannot be sent to the pgBouncer console; use letters, digits, `_`, `-` and `.`"
        ))
    }
}
