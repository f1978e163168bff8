//! What an SSH or PostgreSQL error says of the node, read from its type and
//! never its text: the node, its server or the way to it went away (a rerun
//! may pass), or the server refused. Apply's failure report asks here, so
//! that only transport knows openssh and tokio-postgres.

use std::error::Error as StdError;

/// What a transport error says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The node, its server or the link went away, or was busy: what, in a
    /// few words.
    Gone(&'static str),
    /// The server refused (its SQLSTATE), or pgrepl's own command line was
    /// wrong: it happens again until its cause is fixed.
    Refused { sqlstate: Option<String> },
}

/// The cause `err` says when it is an SSH or PostgreSQL error; `None` for
/// any other error.
pub fn cause(err: &(dyn StdError + 'static)) -> Option<Cause> {
    if let Some(pg) = err.downcast_ref::<tokio_postgres::Error>() {
        return Some(postgres(pg));
    }
    err.downcast_ref::<openssh::Error>().map(ssh)
}

/// A server's answer with a SQLSTATE is a refusal, but for the classes that
/// say the connection or the server went away (or a conflict a retry
/// resolves); an error without one is the connection's.
fn postgres(err: &tokio_postgres::Error) -> Cause {
    let Some(state) = err.code() else {
        return Cause::Gone("the connection to PostgreSQL was lost");
    };
    let code = state.code();
    let gone = code.starts_with("08") // connection exception
        || matches!(
            code,
            "57P01" // admin_shutdown
                | "57P02" // crash_shutdown
                | "57P03" // cannot_connect_now
                | "57014" // query_canceled
                | "40001" // serialization_failure
                | "40P01" // deadlock_detected
                | "55P03" // lock_not_available
                | "53300" // too_many_connections
        );
    if gone {
        Cause::Gone("PostgreSQL went away or was busy")
    } else {
        Cause::Refused {
            sqlstate: Some(code.to_string()),
        }
    }
}

fn ssh(err: &openssh::Error) -> Cause {
    use openssh::Error as E;
    match err {
        // pgrepl's own command line was wrong: a bug, it repeats.
        E::InvalidCommand | E::CommandHasEnv | E::CommandHasCwd => {
            Cause::Refused { sqlstate: None }
        }
        E::RemoteProcessTerminated => {
            Cause::Gone("the command on the node was killed or its connection lost")
        }
        _ => Cause::Gone("the SSH connection was lost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_ssh_connection_or_a_killed_command_is_gone() {
        let lost = openssh::Error::Disconnected;
        assert_eq!(
            cause(&lost),
            Some(Cause::Gone("the SSH connection was lost"))
        );
        let killed = openssh::Error::RemoteProcessTerminated;
        assert!(matches!(cause(&killed), Some(Cause::Gone(_))));
        let bad = openssh::Error::InvalidCommand;
        assert_eq!(cause(&bad), Some(Cause::Refused { sqlstate: None }));
        let other = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(cause(&other), None, "not transport's to say");
    }
}
