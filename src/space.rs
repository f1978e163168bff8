//! Disk space for a base backup: how big a copy of the cluster is, as
//! observed, and the room it needs. Pure: the facts come from gather.

use crate::observed::{NodeState, Observed};

/// A copy of `size` bytes of databases that needs `needs` bytes where
/// only `free` are free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    pub size: u64,
    pub needs: u64,
    pub free: u64,
}

/// The size of all databases a copy of `upstream` carries: measured on a
/// primary only, and a standby is its primary's physical copy.
pub fn cluster_size(obs: &Observed, upstream: &str) -> Option<u64> {
    let measured = |n: &NodeState| n.server.as_ref()?.database_size_bytes;
    obs.nodes
        .get(upstream)
        .and_then(measured)
        .or_else(|| obs.nodes.values().find_map(measured))
        .and_then(|b| u64::try_from(b).ok())
}

/// The room a base backup of `size` bytes of databases needs: the copy, the
/// WAL streamed while it runs (`-X stream`), and a margin: 10% and 64 MB
/// (four 16 MB segments).
pub fn backup_room(size: u64) -> u64 {
    size.saturating_add(size / 10).saturating_add(64 << 20)
}

/// Whether a copy of `upstream` does not fit in `free` bytes; `None` also
/// when either size is unknown (the copy is then tried).
pub fn shortfall(obs: &Observed, upstream: &str, free: Option<u64>) -> Option<Shortfall> {
    let size = cluster_size(obs, upstream)?;
    let free = free?;
    let needs = backup_room(size);
    (free < needs).then_some(Shortfall { size, needs, free })
}
