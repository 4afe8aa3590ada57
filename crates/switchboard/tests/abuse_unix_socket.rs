//! `serve --unix PATH` replaces only a stale socket: never a file, a directory, a link or
//! a live server's socket, and at shutdown it removes the socket only while it is its own
//! (the finding: a regular file at PATH was replaced and then deleted).

#![cfg(unix)]

mod support;

use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::Duration;

use support::{BIN, arg, serve_process, wait_exit};

/// Runs `serve --unix path` expecting a refusal: returns its stderr after it exited
/// non-zero.
fn serve_refused(path: &Path) -> String {
    let mut child = StdCommand::new(BIN)
        .args([
            "serve",
            "--no-http",
            "--listen",
            "127.0.0.1:0",
            "--memory",
            "--unix",
        ])
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let status = wait_exit(&mut child, Duration::from_secs(15));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        !status.success(),
        "serve should refuse {path:?}; stderr: {stderr}"
    );
    stderr
}

fn serve_on(path: &Path) -> support::KillOnDrop {
    serve_process(&["--memory".as_ref(), "--unix".as_ref(), arg(path)]).0
}

/// SIGTERM, then waits for a clean exit.
fn terminate(child: &mut Child) {
    let status = support::terminate(child, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
}

fn answers(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// Finding 7: a regular file at the socket path is left alone, and serve says why it
/// cannot start.
#[test]
fn a_regular_file_at_the_socket_path_survives_and_serve_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("precious.txt");
    std::fs::write(&path, b"do not delete me").unwrap();
    let stderr = serve_refused(&path);
    assert!(stderr.contains("a regular file is in the way"), "{stderr}");
    assert_eq!(std::fs::read(&path).unwrap(), b"do not delete me");
}

/// Finding 7: a directory, and a symbolic link (even one to a socket), are refused too.
#[test]
fn a_directory_or_a_symbolic_link_at_the_socket_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let directory = dir.path().join("a-directory");
    std::fs::create_dir(&directory).unwrap();
    assert!(serve_refused(&directory).contains("a directory is in the way"));
    assert!(directory.is_dir());

    let target = dir.path().join("target.txt");
    std::fs::write(&target, b"kept").unwrap();
    let link = dir.path().join("link.sock");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(serve_refused(&link).contains("a symbolic link is in the way"));
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"kept");
}

/// Finding 7: a socket nobody answers on (left by a server that died) is replaced.
#[test]
fn a_stale_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(
        std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_socket()
    );
    assert!(!answers(&path), "the socket is stale");
    let mut server = serve_on(&path);
    assert!(answers(&path), "the new server listens there");
    terminate(&mut server);
    assert!(!path.exists(), "its own socket is removed at shutdown");
}

/// Finding 7: a live server's socket is refused, and that server keeps it.
#[test]
fn a_live_socket_is_refused_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.sock");
    let mut first = serve_on(&path);
    let stderr = serve_refused(&path);
    assert!(stderr.contains("another server is listening"), "{stderr}");
    assert!(answers(&path), "the first server still answers");
    terminate(&mut first);
    assert!(!path.exists());
}

/// Finding 7: at shutdown, a file that took the socket's place meanwhile is not removed.
#[test]
fn shutdown_leaves_a_file_that_replaced_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.sock");
    let mut server = serve_on(&path);
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"someone else's").unwrap();
    terminate(&mut server);
    assert_eq!(std::fs::read(&path).unwrap(), b"someone else's");
}
