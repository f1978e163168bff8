//! The replication and rewind roles, on the primary (they replicate to
//! the standbys): created, or repaired where their attributes, password,
//! expiry, connection limit or pg_rewind grants differ.

use super::differ::Differ;
use crate::desired::{self, RoleKind as DRoleKind};
use crate::observed::{RoleFacts, ServerFacts};
use crate::plan::{RoleKind, step};
use crate::scram;

/// What differs of an existing role.
struct RoleDrift {
    /// LOGIN, or REPLICATION for the replication role, is missing.
    flags: bool,
    /// It expires (or expired): `VALID UNTIL` is not infinity.
    expires: bool,
    /// Its connection limit is below what pgrepl needs of it.
    limit_low: bool,
    /// The rewind role lacks EXECUTE on pg_rewind's functions.
    grants: bool,
    /// Its stored verifier is not of the file's password.
    password: bool,
}

/// The role's attributes as the plan writes them.
fn attributes(kind: RoleKind) -> &'static str {
    match kind {
        RoleKind::Replication => "LOGIN REPLICATION",
        RoleKind::Rewind => "LOGIN",
    }
}

impl Differ<'_> {
    pub(super) fn roles(&mut self, primary: &str, server: &ServerFacts) {
        for role in &self.want.roles {
            let kind = match role.kind {
                DRoleKind::Replication => RoleKind::Replication,
                DRoleKind::Rewind => RoleKind::Rewind,
            };
            match server.roles.get(&role.name) {
                None => {
                    let mut s = step::create_role(primary, &role.name, kind);
                    let grants = match kind {
                        RoleKind::Replication => "",
                        RoleKind::Rewind => ", EXECUTE on pg_rewind's four functions",
                    };
                    s.after = Some(format!(
                        "{}{grants}, password (sensitive)",
                        attributes(kind)
                    ));
                    s.reason = "the role does not exist".into();
                    self.steps.push(s);
                }
                Some(r) => self.existing_role(primary, &role.name, kind, r),
            }
        }
    }

    fn existing_role(&mut self, primary: &str, name: &str, kind: RoleKind, r: &RoleFacts) {
        let replication = kind == RoleKind::Replication;
        let password = match kind {
            RoleKind::Replication => self.cfg.replication.password.expose(),
            RoleKind::Rewind => self.cfg.rewind.as_ref().map_or("", |r| r.password.expose()),
        };
        let drift = RoleDrift {
            flags: !r.login || (replication && !r.replication),
            expires: r.valid_until.is_some(),
            limit_low: desired::connection_limit_too_low(self.cfg, replication, r.connection_limit),
            grants: kind == RoleKind::Rewind && !r.superuser && !r.rewind_grants,
            password: !r
                .verifier
                .as_deref()
                .is_some_and(|v| scram::verifies(v, password)),
        };
        if kind == RoleKind::Rewind && r.superuser {
            let ident = format!("\"{}\"", name.replace('"', "\"\""));
            self.warn(
                Some(primary),
                format!(
                    "role {} is a SUPERUSER: pg_rewind needs only LOGIN and EXECUTE on four functions (pgrepl grants them to a role that is not a superuser). pgrepl does not remove privileges it did not grant: run `ALTER ROLE {ident} NOSUPERUSER` if nothing else needs it",
                    name
                ),
            );
        }
        let attributes = drift.flags || drift.expires || drift.limit_low;
        if !(attributes || drift.grants || drift.password) {
            return;
        }
        let (before, after, what) = self.describe(kind, r, &drift);
        let mut s = step::update_role(
            primary,
            name,
            kind,
            drift.password,
            attributes,
            drift.grants,
        );
        s.sensitive = drift.password;
        if !before.is_empty() {
            s.before = Some(before.join(", "));
            s.after = Some(after.join(", "));
        }
        s.reason = what.join("; ");
        self.steps.push(s);
    }

    /// The drift in words: (live, wanted, what differs).
    fn describe(
        &self,
        kind: RoleKind,
        r: &RoleFacts,
        drift: &RoleDrift,
    ) -> (Vec<String>, Vec<String>, Vec<String>) {
        let replication = kind == RoleKind::Replication;
        let (mut before, mut after, mut what) = (Vec::new(), Vec::new(), Vec::new());
        if drift.flags {
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
            after.push(attributes(kind).to_string());
            what.push(attributes(kind).to_string());
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
        if drift.limit_low {
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
        if drift.grants {
            before.push("no EXECUTE on pg_rewind's functions".to_string());
            after.push("EXECUTE on pg_rewind's four functions".to_string());
            what.push("pg_rewind grants".to_string());
        }
        if drift.password {
            what.push(match r.verifier.as_deref() {
                Some(v) if v.starts_with("md5") => {
                    "password (stored as MD5, scram-sha-256 refuses it)".to_string()
                }
                Some(_) => "password differs".to_string(),
                None => "password missing".to_string(),
            });
        }
        (before, after, what)
    }
}
