//! The chat shell's commands in a real pseudo-terminal, each one's output checked on the
//! screen, with other clients (CLI processes) making something for them to show: another
//! member of a group, messages in a channel, direct messages both ways.

#![cfg(unix)]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::terminal::{PATIENCE, Terminal};
use support::{TestServer, wait_exit};

/// The client id the chat's banner announces.
fn banner_id(chat: &Terminal) -> u64 {
    let text = chat.text();
    text.split("(client id ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no client id in the banner:\n{text}"))
}

/// Runs `line` in the chat, then waits for `wanted` on the screen.
fn run(chat: &mut Terminal, line: &str, wanted: &str) {
    chat.write_at_once(&format!("{line}\r"));
    chat.expect(wanted);
}

#[test]
fn every_chat_command_shows_what_it_says() {
    let server = TestServer::start();
    // Twelve messages: joining replays the last ten, so the first two can only come
    // from /history.
    for n in 1..=12 {
        server
            .cli("erin")
            .args(["pub", "lobby", &format!("note {n:02}")])
            .assert()
            .success();
    }
    server
        .cli("erin")
        .args([
            "group",
            "create",
            "book-club",
            "--description",
            "reading together",
        ])
        .assert()
        .success();
    // Someone else connected for /who and /msg, whose direct messages are printed.
    let mut dave = server.spawn("dave", &["--json", "listen", "--count", "1"]);
    let dave_lines = support::read_lines(&mut dave, 1);
    let dave_id = serde_json::from_str::<Value>(&dave_lines[0]).expect("JSON")["client_id"]
        .as_u64()
        .expect("an id");

    let mut chat = Terminal::spawn(
        &["--server", &server.addr, "--name", "carol", "chat", "lobby"],
        &[],
    );
    chat.expect("* now in channel lobby");
    chat.expect("> ");
    let carol_id = banner_id(&chat);
    chat.expect("note 12");
    assert!(
        !chat.text().contains("note 02"),
        "joining replays only the last ten:\n{}",
        chat.text()
    );

    // /history N: the last N messages of the channel, in order.
    run(&mut chat, "/history 11", "note 02");
    // /who: the other connected clients by id and name (not carol herself).
    run(&mut chat, "/who", &format!("{dave_id:>6}  dave"));
    let screen = chat.text();
    assert!(
        !screen.contains("note 01"),
        "/history 11 showed 12 messages:\n{screen}"
    );
    let history: Vec<&str> = screen
        .lines()
        .filter(|line| line.contains(" lobby #") && line.contains(" erin("))
        .collect();
    // Ten replayed on joining, then eleven from /history ending with the newest.
    assert_eq!(history.len(), 21, "{screen}");
    assert!(history[20].ends_with(": note 12"), "{screen}");
    assert!(history[10].ends_with(": note 02"), "{screen}");
    assert!(
        !screen.contains(&format!("{carol_id:>6}  carol")),
        "/who lists the asker:\n{screen}"
    );

    // /msg: a direct message, its outcome per receiver; dave's `listen` gets it.
    run(
        &mut chat,
        &format!("/msg {dave_id},999999 psst dave"),
        "* 999999 unknown",
    );
    chat.expect(&format!("* {dave_id} delivered"));
    let status = wait_exit(&mut dave, PATIENCE);
    assert!(status.success(), "dave never got the direct message");
    // A direct message to carol is printed with its sender.
    server
        .cli("frank")
        .args(["relay", "--to", &carol_id.to_string(), "psst carol"])
        .assert()
        .success();
    chat.expect("from frank(");
    assert!(
        chat.text()
            .lines()
            .any(|line| line.contains("from frank(") && line.ends_with(": psst carol")),
        "{}",
        chat.text()
    );

    // /list: channels with their message counts, groups with members and description.
    run(
        &mut chat,
        "/list",
        &format!("  {:<24} 12 messages", "lobby"),
    );
    chat.expect("reading together");
    assert!(
        chat.text()
            .lines()
            .any(|line| line.starts_with("  @book-club ") && line.contains(" 0 members")),
        "{}",
        chat.text()
    );

    // /join @group: carol is a member, sees others join and post, and posts there.
    run(&mut chat, "/join @book-club", "* now in group book-club");
    server
        .cli("erin")
        .args(["join", "book-club"])
        .assert()
        .success();
    chat.expect("* erin joined @book-club");
    server
        .cli("erin")
        .args(["post", "book-club", "chapter one"])
        .assert()
        .success();
    chat.expect("@book-club #1 erin(");
    chat.write_at_once("hello club\r");
    let mut posted = Vec::new();
    support::wait_until("carol's post in the group", || {
        let out = server.stdout("erin", &["--json", "group", "history", "book-club"]);
        posted = support::json_lines(&out);
        posted.len() >= 2
    });
    assert_eq!(posted.len(), 2);
    assert_eq!(posted[1]["payload"], "hello club");
    assert_eq!(posted[1]["from"], "carol");
    let out = server.stdout("erin", &["--json", "members", "book-club"]);
    assert_eq!(support::json_lines(&out).len(), 2, "carol is a member");

    // /leave: out of the group, and no longer a member.
    run(&mut chat, "/leave", "* left group book-club");
    let out = server.stdout("erin", &["--json", "members", "book-club"]);
    let members = support::json_lines(&out);
    assert_eq!(members.len(), 1, "{members:?}");
    run(&mut chat, "/leave", "* you are not in a channel or group");
    run(
        &mut chat,
        "posted nowhere",
        "! join a channel (/join NAME) or group (/join @NAME) first",
    );

    // /join CHANNEL, then /leave it: the channel's messages stop coming.
    run(&mut chat, "/join news", "* now in channel news");
    server
        .cli("erin")
        .args(["pub", "news", "while there"])
        .assert()
        .success();
    chat.expect("news #1 erin(");
    run(&mut chat, "/leave", "* left channel news");
    server
        .cli("erin")
        .args(["pub", "news", "after leaving"])
        .assert()
        .success();
    // A direct message sent after the publish: once it is shown, the message published
    // before it would have been too.
    server
        .cli("frank")
        .args(["relay", "--to", &carol_id.to_string(), "checkpoint"])
        .assert()
        .success();
    chat.expect(": checkpoint");
    assert!(
        !chat.text().contains("after leaving"),
        "a channel left still prints:\n{}",
        chat.text()
    );

    chat.write_at_once("/quit\r");
    let status = chat.wait_exit(PATIENCE);
    assert!(status.success(), "chat exit status {status:?}");
}

/// Bad commands say what is wrong and leave the shell running.
#[test]
fn a_bad_command_is_explained_and_the_shell_goes_on() {
    let server = TestServer::start();
    let mut chat = Terminal::spawn(&["--server", &server.addr, "--name", "carol", "chat"], &[]);
    chat.expect("> ");
    run(&mut chat, "/history", "! join a channel or group first");
    run(
        &mut chat,
        "/msg nobody hi",
        "! \"nobody\" is not a client id",
    );
    run(&mut chat, "/frobnicate", "! unknown command /frobnicate");
    run(&mut chat, "/help", "/msg ID[,ID] TEXT");
    run(&mut chat, "/who", "(nobody else is connected)");
    chat.write_at_once("/quit\r");
    assert!(chat.wait_exit(Duration::from_secs(20)).success());
}
