//! The only code that knows openssh and tokio-postgres: one SSH master
//! connection per node, command lines sent as they are (node::remote makes
//! them), and PostgreSQL connections through a forwarded socket.

pub mod cause;
pub mod ssh;

pub use cause::{Cause, cause};
pub use ssh::{
    ConnectError, NodeSession, RemoteChild, RemoteCommand, RemoteOutput, RemoteStdin, RemoteStdout,
    Unreachable,
};
