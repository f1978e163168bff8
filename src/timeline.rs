//! Divergence from timeline histories: has a node written WAL on its
//! timeline beyond the point where the primary's history forked off it?
//! Pure: the facts come from gather (history files, pg_controldata, SQL).

use crate::observed::{Lsn, NodeState};

/// One line of a `%08X.history` file: `parentTLI <TAB> switchpoint <TAB> reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryEntry {
    pub timeline: u32,
    /// Where `timeline` ended and its child began.
    pub switchpoint: Lsn,
}

pub fn parse_history(text: &str) -> Vec<HistoryEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let timeline = f.next()?.parse().ok()?;
            let switchpoint = f.next()?.parse().ok()?;
            Some(HistoryEntry {
                timeline,
                switchpoint,
            })
        })
        .collect()
}

/// Where a node's WAL ends, as far as can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalEnd {
    pub timeline: u32,
    pub lsn: Lsn,
    /// Crashed (`in production` while stopped): the end is at least `lsn`.
    pub at_least: bool,
    /// False for a running standby whose WAL receiver is not running: its
    /// timeline is then pg_control's last restartpoint's, which may be
    /// behind the WAL it holds, so a fork cannot be told from a switch.
    pub timeline_known: bool,
}

/// The node's end of WAL from SQL when it runs, else from pg_controldata.
pub fn wal_end(node: &NodeState) -> Option<WalEnd> {
    if let Some(s) = &node.server {
        if !s.in_recovery {
            return Some(WalEnd {
                timeline: s.timeline,
                lsn: s.current_lsn?,
                at_least: false,
                timeline_known: true,
            });
        }
        // The receiver's timeline and flush position are read together, in
        // one row; pg_last_wal_receive_lsn() alone may be a newer timeline's.
        let receiver = s
            .wal_receiver
            .as_ref()
            .and_then(|w| Some((w.received_tli?, w.flushed_lsn?)));
        let (timeline, received, mut timeline_known) = match receiver {
            Some((tli, flushed)) => (tli, Some(flushed), true),
            None => (s.timeline, s.receive_lsn, false),
        };
        let lsn = match (received, s.replay_lsn) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => a.or(b)?,
        };
        // Replayed past what the receiver has (restored from an archive or
        // local pg_wal): that WAL's timeline is not the receiver's to tell.
        if s.replay_lsn.is_some_and(|r| Some(r) > received) {
            timeline_known = false;
        }
        return Some(WalEnd {
            timeline,
            lsn,
            at_least: false,
            timeline_known,
        });
    }
    let c = node.files.as_ref()?.control.as_ref()?;
    match c.state.as_str() {
        "shut down" => Some(WalEnd {
            timeline: c.checkpoint_timeline?,
            lsn: c.checkpoint_lsn?,
            at_least: false,
            timeline_known: true,
        }),
        "shut down in recovery" | "in archive recovery" => Some(WalEnd {
            timeline: c.min_recovery_end_timeline.or(c.checkpoint_timeline)?,
            lsn: c.min_recovery_end_lsn.or(c.checkpoint_lsn)?,
            at_least: false,
            timeline_known: true,
        }),
        _ => Some(WalEnd {
            timeline: c.checkpoint_timeline?,
            lsn: c.checkpoint_lsn?,
            at_least: true,
            timeline_known: true,
        }),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Divergence {
    /// On the primary's timeline, or on an ancestor and not past its switchpoint.
    No,
    /// WAL written on `timeline` after the primary's history left it at `fork`.
    Diverged {
        timeline: u32,
        fork: Lsn,
        end: Lsn,
        discarded_bytes: u64,
    },
    /// A timeline the primary's history does not contain at all.
    OtherBranch { timeline: u32, end: Lsn },
}

/// `primary_timeline` with its history (entries for every ancestor).
pub fn divergence(
    primary_timeline: u32,
    primary_history: &[HistoryEntry],
    node: WalEnd,
) -> Divergence {
    if node.timeline == primary_timeline {
        return Divergence::No;
    }
    if node.timeline > primary_timeline {
        return Divergence::OtherBranch {
            timeline: node.timeline,
            end: node.lsn,
        };
    }
    match primary_history.iter().find(|h| h.timeline == node.timeline) {
        None => Divergence::OtherBranch {
            timeline: node.timeline,
            end: node.lsn,
        },
        Some(h) if node.lsn > h.switchpoint => Divergence::Diverged {
            timeline: node.timeline,
            fork: h.switchpoint,
            end: node.lsn,
            discarded_bytes: node.lsn.0 - h.switchpoint.0,
        },
        Some(_) => Divergence::No,
    }
}

/// The primary's history: the file of its current timeline lists every ancestor.
pub fn history_of(node: &NodeState, timeline: u32) -> Vec<HistoryEntry> {
    node.files
        .as_ref()
        .and_then(|f| f.histories.iter().find(|(t, _)| *t == timeline))
        .map(|(_, text)| parse_history(text))
        .unwrap_or_default()
}

/// The name of the WAL segment file holding `lsn` on `timeline`
/// (PostgreSQL's XLogFileName).
pub fn wal_file_name(timeline: u32, lsn: Lsn, segment_size: u64) -> String {
    let segment_size = segment_size.max(1 << 20);
    let segno = lsn.0 / segment_size;
    let per_id = 0x1_0000_0000 / segment_size;
    format!("{timeline:08X}{:08X}{:08X}", segno / per_id, segno % per_id)
}

/// The first WAL segment of `timeline` that holds WAL the primary does not
/// have: the one where the primary's history left `timeline`, or the
/// timeline's very first if the primary's history never had it.
pub fn first_diverged_segment(
    timeline: u32,
    primary_history: &[HistoryEntry],
    segment_size: u64,
) -> String {
    let fork = primary_history
        .iter()
        .find(|e| e.timeline == timeline)
        .map_or(Lsn(0), |e| e.switchpoint);
    wal_file_name(timeline, fork, segment_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lsn(s: &str) -> Lsn {
        s.parse().expect("lsn")
    }

    const HISTORY_3: &str = "1\t0/3000148\tno recovery target specified\n\n2\t0/5000000\tno recovery target specified\n";

    #[test]
    fn wal_file_names_match_postgresql() {
        // Names as pg_walfile_name() prints them, 16 MB segments.
        let mb16 = 16 << 20;
        assert_eq!(
            wal_file_name(1, lsn("0/3000148"), mb16),
            "000000010000000000000003"
        );
        assert_eq!(
            wal_file_name(2, lsn("16/B374D848"), mb16),
            "0000000200000016000000B3"
        );
        assert_eq!(
            wal_file_name(0xA, lsn("0/FFFFFFFF"), mb16),
            "0000000A00000000000000FF"
        );
        // 64 MB segments: four per 4 GB, so the last part counts to 3F.
        assert_eq!(
            wal_file_name(1, lsn("1/FC000000"), 64 << 20),
            "00000001000000010000003F"
        );
    }

    #[test]
    fn the_diverged_segments_start_at_the_fork() {
        let h = parse_history(HISTORY_3);
        let mb16 = 16 << 20;
        assert_eq!(
            first_diverged_segment(2, &h, mb16),
            "000000020000000000000005"
        );
        assert_eq!(
            first_diverged_segment(1, &h, mb16),
            "000000010000000000000003"
        );
        // A timeline the primary never had: all of it.
        assert_eq!(
            first_diverged_segment(7, &h, mb16),
            "000000070000000000000000"
        );
    }

    #[test]
    fn parses_history_files() {
        let h = parse_history(HISTORY_3);
        assert_eq!(
            h,
            [
                HistoryEntry {
                    timeline: 1,
                    switchpoint: lsn("0/3000148")
                },
                HistoryEntry {
                    timeline: 2,
                    switchpoint: lsn("0/5000000")
                }
            ]
        );
        assert!(parse_history("garbage\n# comment\n").is_empty());
    }

    #[test]
    fn same_timeline_is_not_diverged() {
        let h = parse_history(HISTORY_3);
        let end = WalEnd {
            timeline: 3,
            lsn: lsn("9/0"),
            at_least: false,
            timeline_known: true,
        };
        assert_eq!(divergence(3, &h, end), Divergence::No);
    }

    #[test]
    fn an_ancestor_up_to_its_switchpoint_can_follow() {
        let h = parse_history(HISTORY_3);
        for at in ["0/3000148", "0/2000000"] {
            let end = WalEnd {
                timeline: 1,
                lsn: lsn(at),
                at_least: false,
                timeline_known: true,
            };
            assert_eq!(divergence(3, &h, end), Divergence::No, "{at}");
        }
    }

    #[test]
    fn writes_past_the_switchpoint_diverge() {
        let h = parse_history(HISTORY_3);
        let end = WalEnd {
            timeline: 1,
            lsn: lsn("0/3000200"),
            at_least: false,
            timeline_known: true,
        };
        assert_eq!(
            divergence(3, &h, end),
            Divergence::Diverged {
                timeline: 1,
                fork: lsn("0/3000148"),
                end: lsn("0/3000200"),
                discarded_bytes: 0xB8
            }
        );
        let end = WalEnd {
            timeline: 2,
            lsn: lsn("0/6000000"),
            at_least: false,
            timeline_known: true,
        };
        assert!(matches!(
            divergence(3, &h, end),
            Divergence::Diverged { timeline: 2, .. }
        ));
    }

    #[test]
    fn a_timeline_the_primary_never_had_is_another_branch() {
        let h = parse_history("1\t0/3000148\tx\n");
        let end = WalEnd {
            timeline: 3,
            lsn: lsn("0/4000000"),
            at_least: false,
            timeline_known: true,
        };
        assert!(matches!(
            divergence(2, &h, end),
            Divergence::OtherBranch { timeline: 3, .. }
        ));
        // A sibling: timeline 2 of the primary's history is 1 -> 2; the node is on 1's other child.
        let end = WalEnd {
            timeline: 4,
            lsn: lsn("0/1"),
            at_least: false,
            timeline_known: true,
        };
        assert!(matches!(
            divergence(2, &h, end),
            Divergence::OtherBranch { .. }
        ));
    }
}
