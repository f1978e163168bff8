//! Lab fixture and lab tests (owned by the lab work).
//!
//! The lab (`lab/lab.sh`) runs real PostgreSQL nodes in network namespaces,
//! each with its own address and sshd. Lab tests need root; as non-root they
//! fail, unless built with `PGREPL_SKIP_LAB_TESTS=1`: then each lab test is
//! marked `#[cfg_attr(pgrepl_skip_lab, ignore = "...")]` and libtest reports
//! it as ignored with that reason, and counts it.

mod basic;
pub mod fixture;

#[allow(unused_imports)]
pub use fixture::Lab;
