//! Lab fixture and lab tests (owned by the lab work).
//!
//! The lab (`lab/lab.sh`) runs real PostgreSQL nodes in network namespaces,
//! each with its own address and sshd. Lab tests need root; as non-root they
//! fail unless `PGREPL_SKIP_LAB_TESTS=1` skips them explicitly (each skip is
//! printed with a running count).

mod basic;
pub mod fixture;

#[allow(unused_imports)]
pub use fixture::Lab;
