//! A memory-only server keeps large bodies in a directory of its own under the system's
//! temporary directory: it must remove it when it stops, and a server killed without
//! the chance to do so must not leave it there for good (the next one sweeps it).

#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

mod support;

use support::{serve_process_with_env, terminate};

/// The blob directories in `tmp`.
fn blob_dirs(tmp: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(tmp)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("switchboard-blobs-"))
        })
        .collect();
    dirs.sort();
    dirs
}

fn own_dir(tmp: &Path, server: &Child) -> PathBuf {
    tmp.join(format!("switchboard-blobs-{}-0", server.id()))
}

#[test]
fn a_stopped_server_removes_its_directory_and_a_killed_ones_is_swept_by_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let env = [("TMPDIR", tmp.path().to_str().unwrap())];
    let args = ["--memory".as_ref(), "--no-unix".as_ref()];

    let (mut killed, _) = serve_process_with_env(&args, &env);
    let killed_dir = own_dir(tmp.path(), &killed);
    assert_eq!(blob_dirs(tmp.path()), vec![killed_dir.clone()]);
    std::fs::write(killed_dir.join("left-behind"), b"a body").unwrap();
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert!(killed_dir.exists(), "SIGKILL gives no chance to clean up");

    let (mut stopped, _) = serve_process_with_env(&args, &env);
    let stopped_dir = own_dir(tmp.path(), &stopped);
    assert_eq!(
        blob_dirs(tmp.path()),
        vec![stopped_dir.clone()],
        "the killed server's directory was not swept by the next server"
    );

    let status = terminate(&mut stopped, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    assert_eq!(
        blob_dirs(tmp.path()),
        Vec::<PathBuf>::new(),
        "a server that stopped left its directory"
    );
}
