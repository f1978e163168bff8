//! What the role changes ask of an observed node.

use crate::observed::{Lsn, NodeState};

pub(super) fn is_primary(n: &NodeState) -> bool {
    n.server.as_ref().is_some_and(|s| !s.in_recovery)
}

pub(super) fn is_standby(n: &NodeState) -> bool {
    n.server.as_ref().is_some_and(|s| s.in_recovery)
}

pub(super) fn received(n: &NodeState) -> Option<Lsn> {
    n.server
        .as_ref()
        .and_then(|s| s.receive_lsn.max(s.replay_lsn))
}

/// Run by another manager (Patroni, repmgrd, pg_auto_failover): never acted on.
pub(super) fn managed_elsewhere(n: &NodeState) -> bool {
    crate::manager::managed_by(n).is_some()
}
