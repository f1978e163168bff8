//! What gathering found on a pgBouncer host: its ini file and what its admin
//! console's `SHOW DATABASES` says, as plain data.

use serde::Serialize;

use super::UnreachableInfo;

#[derive(Debug, Clone, Serialize)]
pub struct PoolerState {
    pub name: String,
    pub host: String,
    /// `None` when reachable.
    pub unreachable: Option<UnreachableInfo>,
    /// The ini file's text; `None` when it could not be read.
    pub ini: Option<String>,
    /// `SHOW DATABASES`; `None` when the console did not answer.
    pub databases: Option<Vec<PoolDatabase>>,
    /// A read that failed on a reachable pooler.
    pub errors: Vec<String>,
}

/// One row of `SHOW DATABASES`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolDatabase {
    pub name: String,
    /// As pgBouncer shows it: one host, a comma-separated list, or empty
    /// (the Unix socket).
    pub host: String,
    pub port: u16,
    pub database: String,
    pub paused: bool,
    pub disabled: bool,
}

impl PoolerState {
    pub fn database(&self, name: &str) -> Option<&PoolDatabase> {
        self.databases.as_ref()?.iter().find(|d| d.name == name)
    }
}

/// A `SHOW DATABASES` row from its columns by name (the console's column
/// set grows between versions: only these are read).
pub fn pool_database(col: impl Fn(&str) -> Option<String>) -> Result<PoolDatabase, String> {
    let name = col("name").ok_or("SHOW DATABASES has no `name` column")?;
    let flag = |c: &str| col(c).is_some_and(|v| v == "1" || v == "t");
    Ok(PoolDatabase {
        host: col("host").unwrap_or_default(),
        port: col("port")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("SHOW DATABASES: {name} has no port"))?,
        database: col("database").unwrap_or_default(),
        paused: flag("paused"),
        disabled: flag("disabled"),
        name,
    })
}
