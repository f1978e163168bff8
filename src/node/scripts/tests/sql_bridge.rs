//! The SQL bridge run locally by `perl`, against a Unix socket of the
//! test's own: it relays both ways, byte for byte, and ends as soon as
//! either side closes, so that no bridge outlives its connection.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::super::SQL_BRIDGE;

fn bridge(socket: &std::path::Path) -> Child {
    Command::new("perl")
        .args(["-e", SQL_BRIDGE, "--"])
        .arg(socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("perl")
}

/// The bridge's connection, within 5 s (a test never hangs on a bridge
/// that died before it connected).
fn accept(listener: &UnixListener, child: &mut Child) -> UnixStream {
    listener.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("blocking");
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("read timeout");
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept: {e}"),
        }
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
            panic!("the bridge ended before it connected ({status}): {err}");
        }
        assert!(
            Instant::now() < deadline,
            "the bridge did not connect within 5 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits up to 5 s for `child` to end: its exit code.
fn ends(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    panic!("the bridge did not end within 5 s");
}

/// Every byte value, then a block larger than one read.
fn payload() -> Vec<u8> {
    let mut data: Vec<u8> = (0..=255u8).collect();
    data.extend((0..200_000u32).map(|i| (i % 251) as u8));
    data
}

#[test]
fn the_bridge_relays_both_ways_and_ends_when_its_stdin_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join(".s.PGSQL.5432");
    let listener = UnixListener::bind(&socket).expect("bind");
    let mut child = bridge(&socket);
    let mut server = accept(&listener, &mut child);
    let data = payload();

    // Client to server, while the server reads.
    let mut stdin = child.stdin.take().expect("stdin");
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&sent).expect("write stdin");
        stdin
    });
    let mut got = vec![0u8; data.len()];
    server.read_exact(&mut got).expect("server reads");
    assert!(
        got == data,
        "the server got other bytes than the client sent"
    );
    let stdin = writer.join().expect("writer");

    // Server to client.
    server.write_all(&data).expect("server writes");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut back = vec![0u8; data.len()];
    stdout.read_exact(&mut back).expect("client reads");
    assert!(
        back == data,
        "the client got other bytes than the server sent"
    );

    // The client goes away: the bridge ends, and the server sees the end.
    drop(stdin);
    assert_eq!(ends(&mut child), Some(0));
    let mut rest = Vec::new();
    server
        .read_to_end(&mut rest)
        .expect("server reads to the end");
    assert!(rest.is_empty());
}

#[test]
fn the_bridge_ends_when_the_server_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join(".s.PGSQL.5432");
    let listener = UnixListener::bind(&socket).expect("bind");
    let mut child = bridge(&socket);
    let server = accept(&listener, &mut child);
    drop(server);
    assert_eq!(ends(&mut child), Some(0));
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut out)
        .expect("stdout ends");
    assert!(out.is_empty());
}

#[test]
fn a_bridge_without_a_server_says_why_and_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("no server here/.s.PGSQL.5432");
    let out = bridge(&socket).wait_with_output().expect("perl");
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("cannot connect to") && said.contains("no server here/.s.PGSQL.5432"),
        "{said}"
    );
}
