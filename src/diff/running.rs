//! A running node: refused when it runs the wrong role, version or a
//! value that keeps it from starting again; else its hba, roles (on the
//! primary), settings, recovery settings (on a standby) and slots.

use super::differ::Differ;
use super::restart::RestartFor;
use super::values::{passfile_ok, write_recovery};
use crate::desired::NodeDesired;
use crate::hba::{self, HBA_BEGIN, HBA_END};
use crate::observed::{NodeState, ServerFacts, invalidation_text};
use crate::plan::{Action, Op, step};
use crate::text::human_bytes;

impl Differ<'_> {
    /// A standby's file upstream when it runs another major than this
    /// node: (its name, its major).
    fn upstream_of_another_major(
        &self,
        want: &NodeDesired,
        server: &ServerFacts,
    ) -> Option<(String, u32)> {
        if want.is_primary {
            return None;
        }
        let up = want
            .upstream
            .clone()
            .unwrap_or_else(|| self.cfg.cluster.primary.clone());
        let major = self.obs.nodes.get(&up)?.major()?;
        (major != server.major()).then_some((up, major))
    }

    pub(super) fn running_node(
        &mut self,
        want: &NodeDesired,
        seen: &NodeState,
        server: &ServerFacts,
        is_primary: bool,
    ) {
        let name = want.name.as_str();
        if let Some(major) = self.cfg.cluster.postgres_version
            && server.major() != major
        {
            self.block(
                name,
                format!(
                    "runs PostgreSQL {} but the file says postgres_version = {major}; upgrade the node or fix the file",
                    server.major()
                ),
            );
            return;
        }
        if let Some((up, up_major)) = self.upstream_of_another_major(want, server) {
            self.block(
                name,
                format!(
                    "runs PostgreSQL {} but its upstream {up} runs PostgreSQL {up_major}: streaming replication does not cross majors; upgrade one of them, or stream {name} from a node of its major",
                    server.major()
                ),
            );
            return;
        }
        if is_primary && server.in_recovery {
            self.block(
                name,
                "is named primary in the file but runs as a standby, and no switchover or failover could be planned (see above)".into(),
            );
            return;
        }
        if !is_primary && !server.in_recovery {
            self.block(
                name,
                format!(
                    "runs as a primary but the file names `{}`, which cannot take over now (see above): two primaries",
                    self.want.primary
                ),
            );
            return;
        }
        if let Some(line) = seen
            .files
            .as_ref()
            .and_then(|f| f.hba_conf.as_deref())
            .and_then(hba::unclosed_block)
        {
            self.block(
                name,
                format!(
                    "{} line {line} opens the pgrepl block but no `{HBA_END}` line closes it; pgrepl would not know which rules are its own: restore the END line (or remove the block) by hand",
                    server.hba_file
                ),
            );
            return;
        }
        if self.running_start_guards(want, seen, server) {
            return;
        }
        self.hba(want, seen, server);
        if is_primary {
            self.roles(name, server);
        }
        self.settings(want, seen, server);
        self.slot_sync(want, server);
        if !is_primary {
            self.recovery(want, seen, server);
        }
        if self
            .steps
            .iter()
            .any(|s| s.node == name && s.needs_reload())
        {
            self.steps.push(step::reload(
                name,
                "pg_reload_conf() makes hba, sighup settings and recovery settings live",
            ));
        }
        self.slots(want, server);
        self.unmanaged_slot_warnings(want, server);
        for p in server.settings.values().filter(|p| p.pending_restart) {
            let put_back = self.steps.iter().any(|s| {
                s.node == name && matches!(&s.op, Op::SetSetting { name: n, .. } if *n == p.name)
            });
            if !put_back && !self.restarts.has(name, &p.name) {
                self.warn(
                    Some(name),
                    format!("{} is set but waits for a restart", p.name),
                );
                self.add_restart(name, RestartFor::Pending(p.name.clone()));
            }
        }
        for e in &server.file_setting_errors {
            self.warn(Some(name), format!("configuration file error: {e}"));
        }
        for (line, e) in &server.hba_errors {
            self.warn(Some(name), format!("pg_hba.conf line {line}: {e}"));
        }
    }

    /// Values of the file that would keep a running node from starting
    /// at its next restart: `max_replication_slots` below the slots it
    /// holds after this plan, and `shared_preload_libraries` naming a
    /// library it does not have. The node is blocked, with what to do;
    /// nothing is planned on it. Returns whether it was.
    fn running_start_guards(
        &mut self,
        want: &NodeDesired,
        seen: &NodeState,
        server: &ServerFacts,
    ) -> bool {
        let name = want.name.as_str();
        let why: Vec<String> = [
            self.too_many_slots(want, server),
            self.missing_preload(want, seen, server),
        ]
        .into_iter()
        .flatten()
        .collect();
        if why.is_empty() {
            return false;
        }
        self.block(
            name,
            format!(
                "cannot take the file's settings, which would keep it from starting: {}",
                why.join("; ")
            ),
        );
        true
    }

    /// `max_replication_slots` below the slots it holds once this plan's
    /// own slot steps ran (see `slots`).
    fn too_many_slots(&self, want: &NodeDesired, server: &ServerFacts) -> Option<String> {
        let limit = self.wanted_int(want, "max_replication_slots").or_else(|| {
            server
                .settings
                .get("max_replication_slots")
                .and_then(|p| p.setting.parse().ok())
        })?;
        let mut held: Vec<&str> = server
            .slots
            .iter()
            .filter(|s| {
                let managed =
                    self.cfg.nodes.contains_key(&s.name) || self.cfg.extra_slots.contains(&s.name);
                !(managed && !want.slots.contains(&s.name) && !s.active)
            })
            .map(|s| s.name.as_str())
            .collect();
        for w in &want.slots {
            if !held.contains(&w.as_str()) {
                held.push(w);
            }
        }
        if (held.len() as i64) <= limit {
            return None;
        }
        let unmanaged: Vec<&str> = held
            .iter()
            .copied()
            .filter(|s| !want.slots.iter().any(|w| w == s))
            .collect();
        let drop = if unmanaged.is_empty() {
            String::new()
        } else {
            format!(
                "drop the slots no standby needs (SELECT pg_drop_replication_slot('{}')), or ",
                unmanaged[0]
            )
        };
        Some(format!(
            "it would hold {} replication slots ({}) with max_replication_slots = {limit}; PostgreSQL refuses to start with more slots than that (FATAL: too many replication slots active before shutdown), and creating one beyond it fails: {drop}set max_replication_slots to at least {} in the file",
            held.len(),
            held.join(", "),
            held.len()
        ))
    }

    /// `shared_preload_libraries` naming a library the node does not have:
    /// refused when the file changes it, else (the server runs with it)
    /// a warning.
    fn missing_preload(
        &mut self,
        want: &NodeDesired,
        seen: &NodeState,
        server: &ServerFacts,
    ) -> Option<String> {
        let name = want.name.as_str();
        let check = seen.files.as_ref().and_then(|f| f.preload.as_ref())?;
        if check.missing.is_empty() {
            return None;
        }
        let wanted = self.cfg.nodes[name]
            .settings
            .get("shared_preload_libraries")
            .map(|_| crate::desired::preload_libraries(&self.cfg.nodes[name]))
            .unwrap_or_default();
        let live = server
            .settings
            .get("shared_preload_libraries")
            .map(|p| crate::observed::parse::preload_names(&p.setting))
            .unwrap_or_default();
        let path = server
            .settings
            .get("dynamic_library_path")
            .map_or("$libdir", |p| p.setting.as_str());
        let libdir = check.libdir.as_deref().unwrap_or("$libdir");
        let missing = check.missing.join(", ");
        if wanted == live {
            self.warn(
                Some(name),
                format!(
                    "shared_preload_libraries loads {missing}, which is no longer in {libdir}: the server runs, but its next start will fail; reinstall the library or remove it from the file"
                ),
            );
        } else if path != "$libdir" && check.missing.iter().any(|m| !m.contains('/')) {
            self.warn(
                Some(name),
                format!(
                    "shared_preload_libraries names {missing}, not found in {libdir}; dynamic_library_path is '{path}', which pgrepl does not search: make sure the server finds it before its restart"
                ),
            );
        } else {
            return Some(format!(
                "shared_preload_libraries names {missing}, which is not in {libdir} (neither NAME nor NAME.so): the server would not start at the restart; fix the name in the file, or install the library on the node first"
            ));
        }
        None
    }

    fn hba(&mut self, want: &NodeDesired, seen: &NodeState, server: &ServerFacts) {
        let current = seen
            .files
            .as_ref()
            .and_then(|f| f.hba_conf.clone())
            .unwrap_or_default();
        let next = hba::render(&current, &want.hba_block);
        if next == current {
            return;
        }
        let had_block = current.lines().any(|l| l.starts_with(HBA_BEGIN));
        let rules = want.hba_block.len().saturating_sub(2);
        let mut s = step::write_hba(
            &want.name,
            if had_block {
                Action::Update
            } else {
                Action::Create
            },
            &server.hba_file,
            next.clone(),
        );
        s.after = Some(format!("managed block of {rules} rules"));
        // First match wins: a rule above the block shadows what it admits.
        let before_block: Vec<(usize, &str)> = current
            .lines()
            .enumerate()
            .take_while(|(_, l)| !l.starts_with(HBA_BEGIN))
            .filter(|(_, l)| {
                let t = l.trim();
                !t.is_empty() && !t.starts_with('#')
            })
            .map(|(i, l)| (i + 1, l.trim()))
            .collect();
        let includes = if had_block {
            self.shadowing_includes(&want.name, &current, server)
        } else {
            Vec::new()
        };
        s.reason = match before_block.first() {
            Some((line, _)) if includes.contains(line) => format!(
                "an include directive stands before the managed block (line {line}); the block moves above it"
            ),
            Some((line, rule)) if had_block => {
                self.warn(
                    Some(&want.name),
                    format!(
                        "{} line {line} (`{rule}`) stands before pgrepl's block and shadows its rules (the first matching line wins); the block moves above it",
                        server.hba_file
                    ),
                );
                format!(
                    "a rule stands before the managed block (line {line}); the block moves above it"
                )
            }
            _ if had_block => "the managed block differs from the file".into(),
            _ => "pg_hba.conf has no pgrepl block yet".into(),
        };
        s.diff = Some(unified_diff(&current, &next, "pg_hba.conf"));
        self.steps.push(s);
    }

    /// Warns of each include directive (PostgreSQL 16+) above the managed
    /// block of `current`, naming the rules it pulls in that PostgreSQL
    /// would match before the block's for a connection the block admits.
    /// Returns the lines of the directives there.
    fn shadowing_includes(
        &mut self,
        node: &str,
        current: &str,
        server: &ServerFacts,
    ) -> Vec<usize> {
        let includes = hba::includes_before_block(current);
        if includes.is_empty() {
            return Vec::new();
        }
        let admitted = self.admitted(node);
        let shadowing: Vec<String> =
            hba::included_before_block(current, &server.hba_file, &server.hba_rules)
                .into_iter()
                .filter_map(|r| {
                    let (c, other) = admitted.iter().find(|(c, _)| {
                        r.may_match(&hba::Connection {
                            database: &c.0,
                            user: &c.1,
                            client: &c.2,
                        })
                    })?;
                    Some(shadow_text(r, &c.0, &c.1, other))
                })
                .collect();
        let shadow = if shadowing.is_empty() {
            String::new()
        } else {
            format!(", and shadow the block's: {}", shadowing.join("; "))
        };
        for inc in &includes {
            self.warn(
                Some(node),
                format!(
                    "{} line {} (`{} {}`) stands before pgrepl's block: the rules it includes are matched first{shadow}; the block moves above it (the directive stays)",
                    server.hba_file, inc.line, inc.keyword, inc.path,
                ),
            );
        }
        includes.iter().map(|i| i.line).collect()
    }

    /// The connections the managed block of `node` admits, each with the
    /// node it comes from: (database, user, client address).
    fn admitted(&self, node: &str) -> Vec<((String, String, String), String)> {
        let mut out = Vec::new();
        for other in self.cfg.nodes.values().filter(|o| o.name != node) {
            let mut add = |db: &str, user: &str| {
                out.push((
                    (db.to_string(), user.to_string(), other.host.clone()),
                    other.name.clone(),
                ));
            };
            add("replication", &self.cfg.replication.user);
            if let Some(rw) = &self.cfg.rewind {
                add("postgres", &rw.user);
            }
            if crate::desired::slot_sync(other) {
                add(crate::desired::SLOT_SYNC_DBNAME, &self.cfg.replication.user);
            }
        }
        out
    }

    fn recovery(&mut self, want: &NodeDesired, seen: &NodeState, server: &ServerFacts) {
        let Some(rec) = &want.recovery else { return };
        let name = want.name.as_str();
        let live = |n: &str| {
            server
                .settings
                .get(n)
                .map(|p| p.setting.clone())
                .unwrap_or_default()
        };
        let files = seen.files.as_ref();
        let passfile_ok = passfile_ok(self.cfg, name, files);
        let conninfo_ok = live("primary_conninfo") == rec.primary_conninfo;
        let slot_ok = live("primary_slot_name") == rec.primary_slot_name;
        let signal_ok = files.is_some_and(|f| f.standby_signal);
        let password_in_auto_conf = files.is_some_and(|f| f.auto_conf_has_password);
        if conninfo_ok && slot_ok && signal_ok && passfile_ok && !password_in_auto_conf {
            return;
        }
        // Only what differs, as (what, live, wanted): a line whose two sides
        // read the same would hide the change.
        let mut what: Vec<(&str, String, String)> = Vec::new();
        if !conninfo_ok {
            what.push((
                "primary_conninfo",
                format!("primary_conninfo = '{}'", live("primary_conninfo")),
                format!("primary_conninfo = '{}'", rec.primary_conninfo),
            ));
        }
        if !slot_ok {
            what.push((
                "primary_slot_name",
                format!("primary_slot_name = '{}'", live("primary_slot_name")),
                format!("primary_slot_name = '{}'", rec.primary_slot_name),
            ));
        }
        if !signal_ok {
            what.push((
                "standby.signal",
                "no standby.signal".into(),
                "standby.signal".into(),
            ));
        }
        if !passfile_ok {
            let live_passfile = match files.and_then(|f| f.passfile_sha256.as_deref()) {
                None => format!("no passfile {}", rec.passfile),
                Some(_) if files.and_then(|f| f.passfile_mode.as_deref()) != Some("600") => {
                    format!(
                        "passfile {} with mode {}",
                        rec.passfile,
                        files
                            .and_then(|f| f.passfile_mode.as_deref())
                            .unwrap_or("unknown")
                    )
                }
                Some(_) => format!("passfile {} with other content", rec.passfile),
            };
            what.push((
                "passfile",
                live_passfile,
                format!("passfile {} (0600)", rec.passfile),
            ));
        }
        if password_in_auto_conf {
            what.push((
                "a password in clear in postgresql.auto.conf",
                "a password in clear in postgresql.auto.conf".into(),
                "no password in postgresql.auto.conf".into(),
            ));
        }
        let restart = server
            .settings
            .get("primary_conninfo")
            .is_some_and(|p| p.context == "postmaster");
        let mut s = write_recovery(name, Action::Update, rec);
        s.before = Some(
            what.iter()
                .map(|(_, b, _)| b.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        );
        s.after = Some(
            what.iter()
                .map(|(_, _, a)| a.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        );
        s.restart = restart;
        s.reason = format!(
            "differs: {}",
            what.iter()
                .map(|(w, _, _)| *w)
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.steps.push(s);
        if restart {
            self.add_restart(name, RestartFor::Setting("primary_conninfo".into()));
        }
    }

    fn slots(&mut self, want: &NodeDesired, server: &ServerFacts) {
        // Slots pgrepl made (named after a node, or listed in [[slots]])
        // that no standby of this node uses any more: left over after a
        // switchover. Dropped, or they would hold WAL forever.
        for slot in &server.slots {
            let managed = self.cfg.nodes.contains_key(&slot.name)
                || self.cfg.extra_slots.contains(&slot.name);
            // An active one whose standby this plan re-points elsewhere:
            // dropped once that standby has left (after its reload).
            let moving = slot.active
                && self.want.nodes.get(&slot.name).is_some_and(|d| {
                    d.upstream.as_deref() != Some(want.name.as_str())
                        && self
                            .obs
                            .nodes
                            .get(&slot.name)
                            .is_some_and(|n| n.server.is_some())
                });
            if !managed || want.slots.contains(&slot.name) {
                continue;
            }
            if moving {
                let reason = format!(
                    "{} streams from {} once re-pointed in this plan; dropped after it left",
                    slot.name,
                    self.want.nodes[&slot.name]
                        .upstream
                        .as_deref()
                        .unwrap_or("its new upstream")
                );
                self.late.push(step::drop_slot(
                    &want.name,
                    &slot.name,
                    "physical slot, in use",
                    reason,
                ));
            } else if !slot.active {
                let reason = format!("no standby streams from {} through it any more", want.name);
                self.steps.push(step::drop_slot(
                    &want.name,
                    &slot.name,
                    "physical slot, inactive",
                    reason,
                ));
            }
        }
        for slot in &want.slots {
            let seen = server.slots.iter().find(|s| &s.name == slot);
            let invalidated = seen.and_then(|s| s.invalidated());
            if seen.is_some() && invalidated.is_none() {
                continue;
            }
            if let Some(why) = invalidated {
                self.steps.push(step::drop_slot(
                    &want.name,
                    slot,
                    &format!("physical slot, invalidated ({why})"),
                    format!(
                        "PostgreSQL invalidated it ({}): it can no longer be used, and is re-created",
                        invalidation_text(why)
                    ),
                ));
            }
            let mut s = step::create_slot(&want.name, slot);
            let user = if self.want.nodes.contains_key(slot) {
                format!("standby {slot} streams through it")
            } else {
                "listed in [[slots]]".into()
            };
            s.reason = match invalidated {
                Some(_) => format!("re-created after its invalidation: {user}"),
                None => user,
            };
            self.steps.push(s);
        }
    }

    fn unmanaged_slot_warnings(&mut self, want: &NodeDesired, server: &ServerFacts) {
        for slot in &server.slots {
            if let Some(why) = slot.invalidated() {
                let what = if !want.slots.contains(&slot.name) {
                    "pgrepl leaves it alone (drop it with pg_drop_replication_slot if unused)"
                } else if slot.lost_wal() {
                    "this plan re-creates it; its standby needs WAL that is gone, and a fresh base backup"
                } else {
                    "this plan re-creates it; its standby streams again if the WAL it needs is still there, else it is re-based"
                };
                self.warn(
                    Some(&want.name),
                    format!(
                        "slot {} was invalidated ({}): {what}",
                        slot.name,
                        invalidation_text(why)
                    ),
                );
            } else if slot.wal_status.as_deref() == Some("unreserved") {
                self.warn(
                    Some(&want.name),
                    format!(
                        "slot {} has wal_status unreserved: its standby will need a fresh base backup",
                        slot.name
                    ),
                );
            }
            let managed = self.cfg.nodes.contains_key(&slot.name)
                || self.cfg.extra_slots.contains(&slot.name);
            // A standby's own slot that nobody reads: the standby is down or
            // not streaming, and the slot keeps WAL until it streams again.
            if want.slots.contains(&slot.name)
                && !slot.active
                && self.cfg.nodes.contains_key(&slot.name)
                && let Some(b) = slot.retained_bytes
            {
                self.warn(
                    Some(&want.name),
                    format!(
                        "slot {s} is inactive: {s} does not stream through it; it retains {} of WAL (wal_status {}), more for as long as {s} does not stream; start {s}, or remove it from the file to drop the slot",
                        human_bytes(b.max(0) as u64),
                        slot.wal_status.as_deref().unwrap_or("unknown"),
                        s = slot.name
                    ),
                );
            }
            if want.slots.contains(&slot.name) || managed {
                continue;
            }
            if slot.active {
                // A standby pgrepl built names its walsender after itself
                // and streams through the slot of the same name: a node
                // taken out of the file still streams until it is stopped.
                if let Some(r) = server
                    .replication
                    .iter()
                    .find(|r| r.application_name == slot.name)
                {
                    self.warn(
                        Some(&want.name),
                        format!(
                            "slot {s} is not in the file, yet a standby named {s}{from} streams through it (a node removed from the file?): pgrepl leaves both alone; stop that server, then drop the slot with pg_drop_replication_slot('{s}'), or it keeps WAL for as long as it exists",
                            from = r
                                .client_addr
                                .as_deref()
                                .map(|a| format!(" (from {a})"))
                                .unwrap_or_default(),
                            s = slot.name
                        ),
                    );
                }
                continue;
            }
            // A slot that never reserved WAL (restart_lsn NULL) holds none yet.
            let holds = match slot.retained_bytes {
                Some(b) => format!("retaining {} of WAL", human_bytes(b.max(0) as u64)),
                None => "holding no WAL yet (it will from its first use)".to_string(),
            };
            self.warn(
                Some(&want.name),
                format!(
                    "slot {} is not in the file and inactive, {holds}; pgrepl leaves it alone (drop it with pg_drop_replication_slot if unused)",
                    slot.name
                ),
            );
        }
    }
}

/// An included rule that matches `user`'s connections to `database` from
/// node `other` before the managed block does.
fn shadow_text(r: &hba::FileRule, database: &str, user: &str, other: &str) -> String {
    let rule = [
        r.kind.clone(),
        r.database.join(","),
        r.user_name.join(","),
        r.address.clone().unwrap_or_default(),
        r.netmask.clone().unwrap_or_default(),
    ]
    .join(" ");
    let kind = if database == "replication" {
        "replication connections".to_string()
    } else {
        format!("connections to database {database}")
    };
    format!(
        "{} line {} (`{}`) matches {user}'s {kind} from {other} before the block does",
        r.file_name,
        r.line_number,
        rule.trim_end()
    )
}

fn unified_diff(old: &str, new: &str, name: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(2)
        .header(name, &format!("{name} (planned)"))
        .to_string()
}
