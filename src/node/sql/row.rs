//! Values taken from a server's rows: every one with `try_get`, so a NULL
//! where a value is required, or a type other than the one expected, is an
//! error naming the node, the query and the column, never a panic.

use anyhow::anyhow;
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

/// A row's cells as `tokio_postgres::Row::try_get` gives them (a trait, so
/// that the reading of rows is tested on rows made by hand).
pub(super) trait Cells {
    fn cell<'a, T: FromSql<'a>>(&'a self, i: usize) -> Result<T, String>;
}

impl Cells for Row {
    fn cell<'a, T: FromSql<'a>>(&'a self, i: usize) -> Result<T, String> {
        self.try_get(i)
            .map_err(|e| format!("{:#}", anyhow::Error::new(e)))
    }
}

/// Where rows come from, for the error: a node and a query.
#[derive(Debug, Clone, Copy)]
pub(super) struct At<'a> {
    pub node: &'a str,
    pub query: &'a str,
}

impl At<'_> {
    /// Column `i` (from 0) of `row`.
    pub fn get<'r, T: FromSql<'r>>(&self, row: &'r impl Cells, i: usize) -> anyhow::Result<T> {
        row.cell(i).map_err(|e| {
            anyhow!(
                "{}: {}: column {} of a row is not what pgrepl reads ({e})",
                self.node,
                self.query,
                i + 1
            )
        })
    }
}

/// Rows made by hand, typed as the server would send them, for tests.
#[cfg(test)]
pub(super) mod fake {
    use tokio_postgres::types::{FromSql, Type};

    use super::Cells;

    /// A row: each cell a type and its binary value (None: NULL).
    pub struct FakeRow(pub Vec<(Type, Option<Vec<u8>>)>);

    impl Cells for FakeRow {
        fn cell<'a, T: FromSql<'a>>(&'a self, i: usize) -> Result<T, String> {
            let (ty, raw) = self.0.get(i).ok_or_else(|| format!("no column {i}"))?;
            if !T::accepts(ty) {
                return Err(format!("a {ty} is not a {}", std::any::type_name::<T>()));
            }
            T::from_sql_nullable(ty, raw.as_deref()).map_err(|e| e.to_string())
        }
    }

    pub fn text(s: &str) -> (Type, Option<Vec<u8>>) {
        (Type::TEXT, Some(s.as_bytes().to_vec()))
    }
    pub fn boolean(b: bool) -> (Type, Option<Vec<u8>>) {
        (Type::BOOL, Some(vec![u8::from(b)]))
    }
    pub fn int4(v: i32) -> (Type, Option<Vec<u8>>) {
        (Type::INT4, Some(v.to_be_bytes().to_vec()))
    }
    pub fn null(ty: Type) -> (Type, Option<Vec<u8>>) {
        (ty, None)
    }
}
