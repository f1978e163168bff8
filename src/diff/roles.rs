//! The replication and rewind roles, on the primary (they replicate to
//! the standbys): created, or repaired where their attributes, password,
//! expiry, connection limit or pg_rewind grants differ.

use super::differ::Differ;
use crate::desired::{self, RoleKind as DRoleKind};
use crate::gather::ServerFacts;
use crate::plan::{RoleKind, step};
use crate::scram;

impl Differ<'_> {
    pub(super) fn roles(&mut self, primary: &str, server: &ServerFacts) {
        for role in &self.want.roles {
            let kind = match role.kind {
                DRoleKind::Replication => RoleKind::Replication,
                DRoleKind::Rewind => RoleKind::Rewind,
            };
            let (attrs_text, password) = match role.kind {
                DRoleKind::Replication => {
                    ("LOGIN REPLICATION", self.cfg.replication.password.expose())
                }
                DRoleKind::Rewind => (
                    "LOGIN, EXECUTE on pg_rewind's four functions",
                    self.cfg.rewind.as_ref().map_or("", |r| r.password.expose()),
                ),
            };
            match server.roles.get(&role.name) {
                None => {
                    let mut s = step::create_role(primary, &role.name, kind);
                    s.after = Some(format!("{attrs_text}, password (sensitive)"));
                    s.reason = "the role does not exist".into();
                    self.steps.push(s);
                }
                Some(r) => {
                    let replication = kind == RoleKind::Replication;
                    let flags = !r.login || (replication && !r.replication);
                    let expires = r.valid_until.is_some();
                    let limit_low = desired::connection_limit_too_low(
                        self.cfg,
                        replication,
                        r.connection_limit,
                    );
                    let attributes = flags || expires || limit_low;
                    let grants = kind == RoleKind::Rewind && !r.superuser && !r.rewind_grants;
                    let pw = !r
                        .verifier
                        .as_deref()
                        .is_some_and(|v| scram::verifies(v, password));
                    if kind == RoleKind::Rewind && r.superuser {
                        let ident = format!("\"{}\"", role.name.replace('"', "\"\""));
                        self.warn(
                            Some(primary),
                            format!(
                                "role {} is a SUPERUSER: pg_rewind needs only LOGIN and EXECUTE on four functions (pgrepl grants them to a role that is not a superuser). pgrepl does not remove privileges it did not grant: run `ALTER ROLE {ident} NOSUPERUSER` if nothing else needs it",
                                role.name
                            ),
                        );
                    }
                    if !(attributes || grants || pw) {
                        continue;
                    }
                    let mut what = Vec::new();
                    let (mut before, mut after) = (Vec::new(), Vec::new());
                    if flags {
                        let flag = |on: bool, name: &str| {
                            if on {
                                name.to_string()
                            } else {
                                format!("NO{name}")
                            }
                        };
                        let mut live = vec![flag(r.login, "LOGIN")];
                        if replication {
                            live.push(flag(r.replication, "REPLICATION"));
                        }
                        before.push(live.join(" "));
                        let wanted = attrs_text.split(',').next().unwrap_or("").to_string();
                        after.push(wanted.clone());
                        what.push(wanted);
                    }
                    if let Some(until) = &r.valid_until {
                        before.push(format!(
                            "VALID UNTIL '{until}'{}",
                            if r.expired { " (expired)" } else { "" }
                        ));
                        after.push("VALID UNTIL 'infinity'".to_string());
                        what.push(if r.expired {
                            format!("expired at {until}: it cannot log in")
                        } else {
                            format!("expires at {until}: it cannot log in from then on")
                        });
                    }
                    if limit_low {
                        let needed = desired::role_connections_needed(self.cfg, replication);
                        before.push(format!("CONNECTION LIMIT {}", r.connection_limit));
                        after.push("CONNECTION LIMIT -1".to_string());
                        what.push(format!(
                            "connection limit {} is below the {needed} connections {} need",
                            r.connection_limit,
                            if replication {
                                "streaming standbys and base backups"
                            } else {
                                "the re-bases of the other nodes with pg_rewind"
                            }
                        ));
                    }
                    if grants {
                        before.push("no EXECUTE on pg_rewind's functions".to_string());
                        after.push("EXECUTE on pg_rewind's four functions".to_string());
                        what.push("pg_rewind grants".to_string());
                    }
                    if pw {
                        what.push(match r.verifier.as_deref() {
                            Some(v) if v.starts_with("md5") => {
                                "password (stored as MD5, scram-sha-256 refuses it)".to_string()
                            }
                            Some(_) => "password differs".to_string(),
                            None => "password missing".to_string(),
                        });
                    }
                    let mut s =
                        step::update_role(primary, &role.name, kind, pw, attributes, grants);
                    s.sensitive = pw;
                    if !before.is_empty() {
                        s.before = Some(before.join(", "));
                        s.after = Some(after.join(", "));
                    }
                    s.reason = what.join("; ");
                    self.steps.push(s);
                }
            }
        }
    }
}
