//! pgrepl keeps a PostgreSQL streaming-replication cluster equal to a TOML file.
//!
//! The pipeline, one module per stage:
//! config (load + check) -> gather (read-only, all nodes at once) -> diff (pure)
//! -> plan (ordered steps, rendering; pure) -> apply (each step re-checks its
//! precondition and is safe to repeat).
//!
//! Invariants:
//! - `config`, `guc`, desired state, diff and plan do no IO (except reading the
//!   password sources at load time) and are not async.
//! - Only `transport` and `node` talk to SSH and PostgreSQL.
//! - Secrets live in `config::Secret`, which renders as `(sensitive)`.

pub mod apply;
pub mod cli;
pub mod config;
pub mod desired;
pub mod diff;
pub mod digest;
pub mod gather;
pub mod guc;
pub mod manager;
pub mod node;
pub mod observed;
pub mod plan;
pub mod quote;
pub mod scram;
pub mod status;
pub mod timeline;
pub mod topology;
pub mod transport;
