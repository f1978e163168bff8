//! The only code that knows openssh and tokio-postgres: one SSH master
//! connection per node, command lines sent as they are (node::remote makes
//! them), and PostgreSQL connections through a forwarded socket or over a
//! bridge command's stdio.

pub mod cause;
pub mod ssh;

pub use cause::{Cause, cause};
pub use ssh::{
    BridgeFailure, ConnectError, NodeSession, RemoteChild, RemoteCommand, RemoteOutput,
    RemoteStdin, RemoteStdout, Unreachable,
};
