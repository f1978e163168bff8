//! The one integration-test binary: pure config tests and the real-node lab tests.

mod apply;
mod apply_more;
mod boundary;
mod cli;
mod config;
mod docker;
mod docs;
mod drift;
mod faults;
mod hostile;
mod lab;
mod lowering;
mod majors;
mod manager;
mod mixed;
mod plan;
mod plan_lab;
mod planfile;
mod poolers;
mod status;
mod structure;
mod sudo;
mod support;
mod switchover;
mod tls;
