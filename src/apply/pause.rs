//! A test hook at the phase boundaries of role changes and re-bases, so that
//! the fault-injection tests hit each boundary on purpose, not by timing luck.
//!
//! With `PGREPL_TEST_PAUSE_AT=NAME[,NAME...]` and `PGREPL_TEST_PAUSE_FILE=PATH`
//! set, apply writes NAME into PATH when it reaches that boundary and waits
//! until PATH is removed (at most 120 s). Meanwhile the test kills pgrepl or
//! cuts a node. Without both variables a boundary costs nothing.

use std::time::{Duration, Instant};

/// The named phase boundaries, in the order a role change meets them.
pub const POINTS: &[&str] = &[
    "switchover:after-pause",
    "switchover:before-shutdown",
    "switchover:after-shutdown",
    "switchover:before-promote",
    "switchover:after-promote",
    "switchover:before-old-start",
    "failover:before-promote",
    "failover:after-promote",
    "recovery:before-reload",
    "rebase:after-stop",
    "rebase:during-rewind",
    "rebase:during-base-backup",
    "rebase:before-start",
];

/// Boundaries already paused at: each pauses once per run (a progress
/// callback reaches its boundary at every line).
static FIRED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn wanted(name: &str) -> Option<String> {
    let at = std::env::var("PGREPL_TEST_PAUSE_AT").ok()?;
    if !at.split(',').any(|p| p.trim() == name) {
        return None;
    }
    let file = std::env::var("PGREPL_TEST_PAUSE_FILE").ok()?;
    let mut fired = FIRED.lock().ok()?;
    if fired.iter().any(|f| f == name) {
        return None;
    }
    fired.push(name.to_string());
    Some(file)
}

/// Marks the pause in `file` and says so; the caller waits until the file
/// is gone, at most until the returned deadline.
fn announce(name: &str) -> Option<(String, Instant)> {
    debug_assert!(POINTS.contains(&name), "unknown pause point {name}");
    let file = wanted(name)?;
    std::fs::write(&file, name).ok()?;
    super::progress_line(&format!("paused at {name} (PGREPL_TEST_PAUSE_AT)"));
    Some((file, Instant::now() + Duration::from_secs(120)))
}

fn released(file: &str, deadline: Instant) -> bool {
    !std::path::Path::new(file).exists() || Instant::now() >= deadline
}

/// Pauses at `name` when the test hook asks for it.
pub async fn point(name: &str) {
    let Some((file, deadline)) = announce(name) else {
        return;
    };
    while !released(&file, deadline) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The same, from a synchronous callback (a progress line of pg_rewind or
/// pg_basebackup): blocks the thread, which stops reading the command's output.
pub fn point_blocking(name: &str) {
    let Some((file, deadline)) = announce(name) else {
        return;
    };
    while !released(&file, deadline) {
        std::thread::sleep(Duration::from_millis(10));
    }
}
