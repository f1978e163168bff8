//! The one integration-test binary: pure config tests and the real-node lab tests.

mod config;
mod lab;
mod status;
