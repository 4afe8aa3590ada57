//! `switchboard chat` in a real pseudo-terminal, the way a person uses it: the built
//! binary against a real server, input written to the terminal the way a paste or a fast
//! typist delivers it (a whole line in one write), the screen read continuously.

#![cfg(unix)]

mod support;

use std::process::Child as StdChild;
use std::time::{Duration, Instant};

use support::terminal::{PATIENCE, Terminal};
use support::{TestServer, read_lines, wait_exit};

/// A `sub` process on `channel` that prints one JSON line per message.
fn subscriber(server: &TestServer, name: &str, channel: &str) -> StdChild {
    let child = server.spawn(name, &["--json", "sub", channel]);
    server.wait_for_subscriber(name, 1);
    child
}

#[test]
fn chat_in_a_terminal_posts_whole_lines_and_shows_incoming_messages() {
    let started = Instant::now();
    let server = TestServer::start();
    let mut watcher = subscriber(&server, "watcher", "lobby");

    let mut chat = Terminal::spawn(
        &["--server", &server.addr, "--name", "carol", "chat", "lobby"],
        &[],
    );
    chat.expect("* now in channel lobby");
    chat.expect("> ");
    // The banner printed before the first prompt stays on the screen: drawing the
    // prompt must not erase it.
    let banner = "* connected as carol (client id ";
    assert!(
        chat.text().contains(banner),
        "the banner is not on the screen:\n{}",
        chat.text()
    );

    // Someone else publishes while the user is idle: it appears above the prompt.
    server
        .cli("dave")
        .args(["pub", "lobby", "news from dave"])
        .assert()
        .success();
    chat.expect("news from dave");

    // A whole line in one write is posted at once, without another key.
    let typed = Instant::now();
    chat.write_at_once("hello from the shell\r");
    let seen = read_lines(&mut watcher, 2);
    let posted_after = typed.elapsed();
    let payloads: Vec<String> = seen
        .iter()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("JSON line"))
        .map(|message| message["payload"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        payloads,
        ["news from dave", "hello from the shell"],
        "the pasted line was not posted; the screen:\n{}",
        chat.text()
    );
    assert!(
        posted_after < Duration::from_secs(1),
        "posting the pasted line took {posted_after:?}"
    );
    let from = serde_json::from_str::<serde_json::Value>(&seen[1]).expect("JSON line");
    assert_eq!(from["from"], "carol");

    // A pasted command runs too: /who lists the other connected clients.
    chat.write_at_once("/who\r");
    chat.expect("watcher");

    let screen = chat.text();
    for line in [banner, "news from dave", "> hello from the shell"] {
        assert!(
            screen.contains(line),
            "{line:?} is gone from the screen:\n{screen}"
        );
    }

    chat.write_at_once("/quit\r");
    let status = chat.wait_exit(PATIENCE);
    assert!(status.success(), "chat exit status {status:?}");
    assert!(
        chat.in_line_mode(),
        "chat left the terminal in raw mode; the screen:\n{}",
        chat.text()
    );

    let _ = watcher.kill();
    let _ = wait_exit(&mut watcher, PATIENCE);
    eprintln!(
        "terminal chat test: line posted {posted_after:?} after it was written; whole test {:?}",
        started.elapsed()
    );
}

/// Finding 10: a published body that would retitle the terminal and colour it reaches the
/// chat's screen as visible text (`^[`), not as an escape sequence, and its newline does
/// not start a forged line.
#[test]
fn chat_shows_escape_sequences_in_bodies_instead_of_obeying_them() {
    let server = TestServer::start();
    let mut chat = Terminal::spawn(
        &["--server", &server.addr, "--name", "carol", "chat", "lobby"],
        &[],
    );
    chat.expect("* now in channel lobby");
    chat.expect("> ");
    server
        .cli("mallory")
        .args([
            "pub",
            "lobby",
            "\u{1b}]0;pwned\u{7}\u{1b}[31mred\nlobby #99 admin(1): forged",
        ])
        .assert()
        .success();
    chat.expect("^[]0;pwned^G^[[31mred\\nlobby #99 admin(1): forged");
    assert!(
        chat.titles_set().is_empty(),
        "the body retitled the terminal"
    );
    assert!(
        !chat.shows_colour(),
        "the body coloured the terminal:\n{}",
        chat.text()
    );
    let forged = chat
        .text()
        .lines()
        .filter(|line| line.starts_with("lobby #99"))
        .count();
    assert_eq!(forged, 0, "a forged line:\n{}", chat.text());
    chat.write_at_once("/quit\r");
    assert!(chat.wait_exit(PATIENCE).success());
}
