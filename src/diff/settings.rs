//! A running node's settings against the file's: ALTER SYSTEM, made live
//! by a reload, or by a restart for a `postmaster` setting.

use super::differ::Differ;
use super::restart::RestartFor;
use super::values::{display_value, setting_in, toml_text};
use crate::desired::NodeDesired;
use crate::guc::{self, Normalized};
use crate::observed::{NodeState, ServerFacts};
use crate::plan::step;
use crate::quote::sql_literal;

impl Differ<'_> {
    pub(super) fn settings(&mut self, want: &NodeDesired, seen: &NodeState, server: &ServerFacts) {
        let name = want.name.as_str();
        self.md5_deprecation(want, server);
        // What waits in postgresql.auto.conf for the next restart: compared
        // with the file too, so a bad value never waits for a restart there.
        let auto = seen
            .files
            .as_ref()
            .and_then(|f| f.auto_conf.as_deref())
            .map(crate::observed::parse::conf_settings)
            .unwrap_or_default();
        for setting in want.settings.values() {
            if !server.settings.contains_key(&setting.name)
                && guc::is_custom_name(&setting.name)
                && let Some(live) = server.custom_settings.get(&setting.name)
            {
                self.custom_setting(name, &setting.name, &setting.value, live.as_deref());
                continue;
            }
            let Some(live) = server.settings.get(&setting.name) else {
                self.warn(
                    Some(name),
                    format!(
                        "{} does not exist in PostgreSQL {} on this node; it is not set",
                        setting.name,
                        server.major()
                    ),
                );
                continue;
            };
            let (def, wanted) = setting_in(setting, Some(server.major()));
            let (equal, before, after, sql_value) = match (def, &wanted) {
                (Some(def), Some(want_v)) => {
                    let live_v = guc::normalize_observed(def, &live.setting, live.unit.as_deref());
                    let equal = live_v.as_ref().is_ok_and(|v| v == want_v);
                    let before = match &live_v {
                        Ok(v) => v.display_with_unit(def),
                        Err(_) => live.setting.clone(),
                    };
                    (
                        equal,
                        before,
                        want_v.display_with_unit(def),
                        want_v.to_alter_system_value(def),
                    )
                }
                _ => {
                    let after = toml_text(&setting.value);
                    (
                        live.setting == after,
                        live.setting.clone(),
                        after.clone(),
                        sql_literal(&after),
                    )
                }
            };
            if equal {
                if let (Some(def), Some(want_v), Some(pending)) =
                    (def, &wanted, auto.get(&setting.name))
                    && live.pending_restart
                    && !guc::normalize_desired(def, &toml::Value::String(pending.clone()))
                        .is_ok_and(|v| &v == want_v)
                {
                    let mut s =
                        step::set_setting(name, &setting.name, want_v.to_alter_system_value(def));
                    s.before = Some(format!(
                        "{} (in postgresql.auto.conf, waiting for a restart)",
                        display_value(pending)
                    ));
                    s.after = Some(display_value(&after));
                    s.reason = "ALTER SYSTEM puts the running value back before any restart takes the other one".into();
                    self.steps.push(s);
                }
                continue;
            }
            let restart = live.context == "postmaster";
            if let Some(def) = def
                && def.hot_standby_sensitive
                && let (Some(Normalized::Integer(w)), Ok(l)) =
                    (&wanted, live.setting.parse::<i64>())
                && *w != l
            {
                self.restarts.hot_standby_change(name, &setting.name, l, *w);
            }
            let mut s = step::set_setting(name, &setting.name, sql_value);
            s.before = Some(display_value(&before));
            s.after = Some(display_value(&after));
            s.restart = restart;
            s.reason = if restart {
                "ALTER SYSTEM; takes effect at the restart".into()
            } else {
                "ALTER SYSTEM; takes effect at the reload".into()
            };
            self.steps.push(s);
            if restart {
                self.add_restart(name, RestartFor::Setting(setting.name.clone()));
            }
        }
    }

    /// PostgreSQL 18 deprecates MD5 passwords: warns when the file (or,
    /// when the file leaves it, the server) sets `password_encryption =
    /// md5`, and, on the primary, names the roles that still have an MD5
    /// password (the roles replicate: the standbys hold the same ones).
    fn md5_deprecation(&mut self, want: &NodeDesired, server: &ServerFacts) {
        if server.major() < 18 {
            return;
        }
        let name = want.name.as_str();
        let encryption = want
            .settings
            .get("password_encryption")
            .map(|s| (toml_text(&s.value), "the file sets"))
            .or_else(|| {
                server
                    .settings
                    .get("password_encryption")
                    .map(|p| (p.setting.clone(), "the server runs with"))
            });
        if let Some((v, whose)) = encryption
            && v.eq_ignore_ascii_case("md5")
        {
            self.warn(
                Some(name),
                format!(
                    "{whose} password_encryption = md5, which PostgreSQL {} deprecates (a WARNING at every password set, removal in a later release): use scram-sha-256",
                    server.major()
                ),
            );
        }
        if want.is_primary && !server.md5_roles.is_empty() {
            self.warn(
                Some(name),
                format!(
                    "role{} {} still ha{} an MD5 password, which PostgreSQL {} deprecates: set it again with password_encryption = scram-sha-256 (pgrepl's own roles get a SCRAM verifier from apply)",
                    if server.md5_roles.len() == 1 { "" } else { "s" },
                    server.md5_roles.join(", "),
                    if server.md5_roles.len() == 1 { "s" } else { "ve" },
                    server.major()
                ),
            );
        }
    }

    /// A custom (dotted) setting no loaded library defines: PostgreSQL keeps
    /// it as a placeholder string, which pg_settings does not list, so it is
    /// compared with `current_setting(name, true)` (`None`: not set). It is
    /// set with ALTER SYSTEM and made live by a reload, like any `user` setting.
    fn custom_setting(&mut self, node: &str, name: &str, value: &toml::Value, live: Option<&str>) {
        let after = toml_text(value);
        if live == Some(after.as_str()) {
            return;
        }
        let mut s = step::set_setting(node, name, sql_literal(&after));
        s.before = Some(live.map_or_else(|| "(not set)".to_string(), display_value));
        s.after = Some(display_value(&after));
        s.reason = "ALTER SYSTEM; takes effect at the reload (a custom setting: a placeholder until a library defines it)".into();
        self.steps.push(s);
    }
}
