//! pgrepl keeps a PostgreSQL streaming-replication cluster equal to a TOML file.
//!
//! The pipeline, one module per stage:
//! config (load + check) -> gather (read-only, all nodes at once) -> diff (pure)
//! -> plan (ordered steps, rendering; pure) -> apply (each step re-checks its
//! precondition and is safe to repeat).
//!
//! The pure core imports downwards only, as a tree:
//! - leaves: `guc` (settings as data), `observed` (what gathering found, as
//!   plain data, and the parsers of what nodes print), `quote` (SQL
//!   literals), `digest`, `hba` (pg_hba.conf text), `text` (sizes);
//! - `plan` (steps, their builders and addresses, `--target`, rendering);
//! - `config` -> `desired` (what every node must look like);
//! - `pooler` (pgBouncer: where each pooled database points, the managed
//!   block of pgbouncer.ini, the poolers' steps);
//! - on `observed`: `timeline`, `manager`, `space`;
//! - `topology` (switchover, failover, re-base) -> `diff` (each node's own
//!   differences, and the whole plan) and `status` (role and health).
//!
//! Invariants (tests/it/structure.rs checks the first two, and reads the
//! second's list of modules from here; tests/it/boundary.rs the fourth):
//! - No import cycle among the modules.
//! - `config`, `guc`, `observed`, `quote`, `digest`, `desired`, `diff`,
//!   `plan`, `pooler`, `timeline`, `topology`, `manager`, `status`, `hba`,
//!   `text` and `space` do no IO (except reading the password sources at load time)
//!   and are not async.
//! - Decisions read types, never prose: why a node is re-based, what stands
//!   in a role change's way and what a failover risks are enums
//!   (`topology::RebaseCause`, `Obstacle`, `FailoverRisk`) that the text
//!   renders.
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
pub mod hba;
pub mod manager;
pub mod node;
pub mod observed;
pub mod plan;
pub mod pooler;
pub mod quote;
pub mod scram;
pub mod space;
pub mod status;
pub mod text;
pub mod timeline;
pub mod topology;
pub mod transport;
