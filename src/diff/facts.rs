//! Every observed fact a plan relies on, by name, so that apply can tell
//! a saved plan made from other facts (stale). Secrets only as digests.

use indexmap::IndexMap;

use super::values::passfile_ok;
use crate::config::Config;
use crate::desired;
use crate::digest::digest;
use crate::observed::Observed;

/// Every observed fact the plan depends on, for stale-plan detection.
/// Secrets appear only as digests.
pub fn facts(cfg: &Config, obs: &Observed) -> IndexMap<String, String> {
    let mut f = IndexMap::new();
    let want = desired::desired_state(cfg);
    for (name, n) in &obs.nodes {
        if let Some(u) = &n.unreachable {
            f.insert(format!("{name}.reachable"), format!("no ({:?})", u.kind));
            continue;
        }
        f.insert(format!("{name}.reachable"), "yes".into());
        let Some(files) = &n.files else { continue };
        f.insert(format!("{name}.data_dir"), format!("{:?}", files.data_dir));
        f.insert(format!("{name}.running"), files.running.to_string());
        f.insert(
            format!("{name}.standby_signal"),
            files.standby_signal.to_string(),
        );
        f.insert(
            format!("{name}.hba"),
            digest(files.hba_conf.as_deref().unwrap_or("")),
        );
        // Whether it matches, never a hash of it: the passfile holds passwords.
        let passfile = if files.passfile_sha256.is_none() {
            "missing"
        } else if passfile_ok(cfg, name, Some(files)) {
            "matches"
        } else {
            "differs"
        };
        f.insert(format!("{name}.passfile"), passfile.into());
        // Only when present: a saved plan made before a manager took the
        // node over is stale.
        if let Some(m) = crate::manager::managed_by(n) {
            f.insert(format!("{name}.manager"), m.manager.to_string());
        }
        let Some(s) = &n.server else { continue };
        f.insert(format!("{name}.in_recovery"), s.in_recovery.to_string());
        f.insert(format!("{name}.timeline"), s.timeline.to_string());
        f.insert(
            format!("{name}.system_identifier"),
            s.system_identifier.clone(),
        );
        if let Some(w) = want.nodes.get(name) {
            for setting in w.settings.keys() {
                if let Some(live) = s.custom_settings.get(setting) {
                    f.insert(
                        format!("{name}.setting.{setting}"),
                        live.clone().unwrap_or_else(|| "(not set)".into()),
                    );
                }
                if let Some(p) = s.settings.get(setting) {
                    f.insert(
                        format!("{name}.setting.{setting}"),
                        format!(
                            "{}{}",
                            p.setting,
                            if p.pending_restart {
                                " (pending restart)"
                            } else {
                                ""
                            }
                        ),
                    );
                }
            }
        }
        for key in ["primary_conninfo", "primary_slot_name"] {
            if let Some(p) = s.settings.get(key) {
                f.insert(format!("{name}.{key}"), p.setting.clone());
            }
        }
        let slots: Vec<&str> = s.slots.iter().map(|x| x.name.as_str()).collect();
        f.insert(format!("{name}.slots"), slots.join(","));
        for r in s.roles.values() {
            f.insert(
                format!("{name}.role.{}", r.name),
                format!(
                    "login={} replication={} superuser={} grants={} valid_until={} connection_limit={} verifier={}",
                    r.login,
                    r.replication,
                    r.superuser,
                    r.rewind_grants,
                    r.valid_until.as_deref().unwrap_or("infinity"),
                    r.connection_limit,
                    r.verifier_digest.as_deref().unwrap_or("none")
                ),
            );
        }
    }
    f
}
