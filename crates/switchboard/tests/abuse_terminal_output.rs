//! Message bodies, sender names and channels cannot drive the reader's terminal: text
//! output shows control and invisible characters escaped, one line per message; `--raw`
//! gives the bytes, and `--json` is unchanged (finding: escape sequences retitled and
//! coloured the terminal, and a newline forged a line).

mod support;

use support::{TestServer, json_lines, wait_exit};

/// What a hostile publisher sends: a title change, a colour, a bidirectional override and
/// a newline that would start a line of its own.
const HOSTILE: &str = "\u{1b}]0;pwned\u{7}\u{1b}[31mred\u{202e}txt\nesc #99 admin(1): forged";

/// What text output shows for it.
const ESCAPED: &str = "^[]0;pwned^G^[[31mred\\u{202e}txt\\nesc #99 admin(1): forged";

/// Finding 10: a real `sub` prints a hostile body escaped, on one line, with no ESC byte.
#[test]
fn sub_prints_escape_sequences_and_newlines_escaped_one_line_per_message() {
    let server = TestServer::start();
    let mut sub = server.spawn("reader", &["sub", "news", "--count", "2"]);
    server.wait_for_subscriber("reader", 1);
    for body in [HOSTILE, "plain"] {
        server
            .cli("mallory")
            .args(["pub", "news", body])
            .assert()
            .success();
    }
    let status = wait_exit(&mut sub, std::time::Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut sub.stdout.take().unwrap(), &mut out).unwrap();
    assert!(
        !out.contains(&0x1b),
        "an ESC byte reached the output: {out:?}"
    );
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "one line per message: {text:?}");
    assert!(lines[0].ends_with(&format!(": {ESCAPED}")), "{}", lines[0]);
    assert!(lines[0].contains(" news #1 mallory("), "{}", lines[0]);
    assert!(lines[1].ends_with(": plain"), "{}", lines[1]);
}

/// Finding 10: `history` escapes too; `--raw` prints the bytes as published; `--json`
/// carries them in JSON's own escapes.
#[test]
fn history_escapes_unless_raw_and_json_is_unchanged() {
    let server = TestServer::start();
    server
        .cli("mallory")
        .args(["pub", "news", HOSTILE])
        .assert()
        .success();

    let escaped = server.stdout("reader", &["history", "news"]);
    assert!(!escaped.contains(&0x1b));
    let escaped = String::from_utf8(escaped).unwrap();
    assert_eq!(escaped.lines().count(), 1, "{escaped:?}");
    assert!(escaped.trim_end().ends_with(ESCAPED), "{escaped}");

    let raw = server.stdout("reader", &["history", "news", "--raw"]);
    let raw = String::from_utf8(raw).unwrap();
    assert!(raw.ends_with(&format!(": {HOSTILE}\n")), "{raw:?}");
    let raw_before = server.stdout("reader", &["--raw", "history", "news"]);
    assert_eq!(String::from_utf8(raw_before).unwrap().len(), raw.len());

    let json = server.stdout("reader", &["--json", "history", "news"]);
    let messages = json_lines(&json);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["payload"], HOSTILE);
}

/// Finding 10: a direct message (`listen`) is escaped too, on one line.
#[test]
fn listen_escapes_direct_messages() {
    use std::io::BufRead;
    let server = TestServer::start();
    let mut listener = server.spawn("listener", &["listen", "--count", "1"]);
    let mut lines = std::io::BufReader::new(listener.stdout.take().unwrap()).lines();
    let id_line = lines.next().unwrap().unwrap();
    let id = id_line.trim_start_matches("client id: ").to_owned();
    server
        .cli("mallory")
        .args(["relay", "--to", &id, HOSTILE])
        .assert()
        .success();
    let status = wait_exit(&mut listener, std::time::Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert_eq!(rest.len(), 1, "one line per message: {rest:?}");
    assert!(!rest[0].contains('\u{1b}'), "{rest:?}");
    assert!(rest[0].contains("from mallory("), "{}", rest[0]);
    assert!(rest[0].ends_with(ESCAPED), "{}", rest[0]);
}
