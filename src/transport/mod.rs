//! The only code that talks to nodes: SSH (openssh) and SQL (tokio-postgres).

pub mod quote;
pub mod ssh;

pub use quote::{command_line, shell_quote};
pub use ssh::{ConnectError, NodeLock, NodeSession, RemoteOutput, Unreachable};
