//! What every promotion sets up on the candidate first: slots for its
//! future downstreams (created while it is a standby) and, when the file
//! asks for synchronous replication, synchronous_standby_names.

use std::collections::HashSet;

use crate::config::Config;
use crate::observed::NodeState;
use crate::plan::{Step, step};

/// The file's synchronous_standby_names for the new primary, when the file
/// asks for synchronous replication: set on the candidate before its
/// promotion (a standby ignores it), so no commit is acknowledged without
/// its synchronous standby.
pub(super) fn sync_names(cfg: &Config) -> Option<String> {
    let names = crate::desired::synchronous_standby_names(cfg);
    (!names.is_empty()).then_some(names)
}

pub(super) fn sync_note(cfg: &Config, want: &str) -> String {
    sync_names(cfg).map_or(String::new(), |n| {
        format!("set synchronous_standby_names = '{n}' on {want} and reload, ")
    })
}

/// Slots for the candidate's future downstreams, created while it is a standby.
pub(super) fn candidate_slots(cfg: &Config, cand: &NodeState) -> Vec<Step> {
    let mut out = Vec::new();
    if !cfg.replication.slots {
        return out;
    }
    let have: HashSet<&str> = cand
        .server
        .as_ref()
        .map(|s| s.slots.iter().map(|x| x.name.as_str()).collect())
        .unwrap_or_default();
    for d in cfg.downstreams(&cand.name) {
        if !have.contains(d.name.as_str()) {
            let mut s = step::create_slot(&cand.name, &d.name);
            s.reason = format!("{} will stream from the new primary through it", d.name);
            out.push(s);
        }
    }
    out
}
