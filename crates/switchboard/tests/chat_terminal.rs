//! `switchboard chat` in a real pseudo-terminal, the way a person uses it: the built
//! binary against a real server, input written to the terminal the way a paste or a fast
//! typist delivers it (a whole line in one write), the screen read continuously.

#![cfg(unix)]

mod support;

use std::io::{Read, Write};
use std::num::NonZeroU16;
use std::process::Child as StdChild;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{Child, CommandBuilder, MasterPty, PtySize, native_pty_system};

use support::{BIN, TestServer, read_lines, wait_exit};

/// How long any one thing may take before the test gives up on it. Generous, since the
/// machine may be busy; what is under test either happens at once or never.
const PATIENCE: Duration = Duration::from_secs(20);

/// The terminal's size: room for everything the test prints, so nothing scrolls away.
const ROWS: u16 = 40;
const COLUMNS: u16 = 160;

/// What the program has drawn, as a terminal would show it: the bytes it wrote go
/// through a terminal emulator, so text that was drawn and then erased is not counted.
struct Screen {
    terminal: Mutex<vt100::Parser>,
    grown: Condvar,
}

/// The chat running in a pseudo-terminal.
struct Terminal {
    child: Box<dyn Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    screen: Arc<Screen>,
    /// Kept open for the life of the child: closing it hangs the terminal up.
    master: Box<dyn MasterPty + Send>,
}

impl Terminal {
    fn spawn(args: &[&str]) -> Terminal {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: ROWS,
                cols: COLUMNS,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("a pseudo-terminal");
        let mut command = CommandBuilder::new(BIN);
        command.args(args);
        command.cwd(std::env::temp_dir());
        command.env("TERM", "xterm-256color");
        for name in [
            "SWITCHBOARD_SERVER",
            "SWITCHBOARD_NAME",
            "SWITCHBOARD_TOKEN",
            "SWITCHBOARD_HMAC_KEY_FILE",
        ] {
            command.env_remove(name);
        }
        let child = pair.slave.spawn_command(command).expect("chat starts");
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().expect("terminal reader");
        let writer = pair.master.take_writer().expect("terminal writer");
        let screen = Arc::new(Screen {
            terminal: Mutex::new(vt100::Parser::new(
                NonZeroU16::new(ROWS).expect("rows"),
                NonZeroU16::new(COLUMNS).expect("columns"),
                0,
            )),
            grown: Condvar::new(),
        });
        let filling = screen.clone();
        // Reads for as long as the terminal is open, so the program never blocks on a
        // full terminal and nothing it writes is missed.
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(read @ 1..) = reader.read(&mut buffer) {
                if let Ok(mut terminal) = filling.terminal.lock() {
                    terminal.process(&buffer[..read]);
                }
                filling.grown.notify_all();
            }
        });
        Terminal {
            child,
            writer,
            screen,
            master: pair.master,
        }
    }

    /// The text on the screen now.
    fn text(&self) -> String {
        self.screen
            .terminal
            .lock()
            .expect("screen")
            .screen()
            .contents()
    }

    /// Waits until `wanted` is on the screen; false after `limit`.
    fn shows_within(&self, wanted: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut terminal = self.screen.terminal.lock().expect("screen");
        loop {
            if terminal.screen().contents().contains(wanted) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            terminal = self
                .screen
                .grown
                .wait_timeout(terminal, left)
                .expect("screen")
                .0;
        }
    }

    /// Requires `wanted` on the screen within `PATIENCE`.
    fn expect(&self, wanted: &str) {
        assert!(
            self.shows_within(wanted, PATIENCE),
            "{wanted:?} never appeared; the screen:\n{}",
            self.text()
        );
    }

    /// Writes `input` to the terminal in a single write, as a paste arrives.
    fn write_at_once(&mut self, input: &str) {
        let written = self.writer.write(input.as_bytes()).expect("write");
        assert_eq!(written, input.len(), "one write takes the whole line");
        self.writer.flush().expect("flush");
    }

    /// Whether the terminal is in line mode (canonical input), as a shell expects it;
    /// a line editor switches it to raw mode while it reads.
    fn in_line_mode(&self) -> bool {
        let termios = self.master.get_termios().expect("terminal settings");
        // The flag's name as the settings print it, to avoid naming the terminal
        // library's types here.
        format!("{:?}", termios.local_flags).contains("ICANON")
    }

    fn wait_exit(&mut self, limit: Duration) -> portable_pty::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "chat did not exit within {limit:?}; the screen:\n{}",
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A `sub` process on `channel` that prints one JSON line per message.
fn subscriber(server: &TestServer, name: &str, channel: &str) -> StdChild {
    let child = server.spawn(name, &["--json", "sub", channel]);
    server.wait_for_client(name);
    child
}

#[test]
fn chat_in_a_terminal_posts_whole_lines_and_shows_incoming_messages() {
    let started = Instant::now();
    let server = TestServer::start();
    let mut watcher = subscriber(&server, "watcher", "lobby");

    let mut chat = Terminal::spawn(&["--server", &server.addr, "--name", "carol", "chat", "lobby"]);
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
