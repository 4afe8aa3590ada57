//! A program in a real pseudo-terminal: input written to it as a terminal delivers it,
//! its output read continuously and kept as a terminal emulator would show it.

use std::io::{Read, Write};
use std::num::NonZeroU16;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{Child, CommandBuilder, MasterPty, PtySize, native_pty_system};

use super::BIN;

/// How long any one thing may take before the test gives up on it. Generous, since the
/// machine may be busy; what is under test either happens at once or never.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The terminal's size: room for everything the test prints, so nothing scrolls away.
const ROWS: u16 = 40;
const COLUMNS: u16 = 160;

/// What the program has drawn, as a terminal would show it: the bytes it wrote go
/// through a terminal emulator, so text that was drawn and then erased is not counted.
struct Screen {
    terminal: Mutex<vt100::Parser<Requests>>,
    grown: Condvar,
}

/// What the program asked of the terminal beyond drawing: window titles it set.
#[derive(Default)]
struct Requests {
    titles: Vec<Vec<u8>>,
}

impl vt100::Callbacks for Requests {
    fn set_window_title(&mut self, _: &mut vt100::Screen, title: &[u8]) {
        self.titles.push(title.to_vec());
    }

    fn set_window_icon_name(&mut self, _: &mut vt100::Screen, name: &[u8]) {
        self.titles.push(name.to_vec());
    }
}

/// The binary running in a pseudo-terminal.
pub struct Terminal {
    child: Box<dyn Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    screen: Arc<Screen>,
    /// Kept open for the life of the child: closing it hangs the terminal up.
    master: Box<dyn MasterPty + Send>,
}

impl Terminal {
    /// Runs the binary with `args` (and `env` set) in a terminal of its own.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Terminal {
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
            "SWITCHBOARD_TOKEN_FILE",
            "SWITCHBOARD_ADMIN_TOKEN",
            "SWITCHBOARD_HMAC_KEY_FILE",
            "SWITCHBOARD_USER",
            "SWITCHBOARD_PASSWORD",
            "SWITCHBOARD_JWT_FILE",
            "RUST_LOG",
        ] {
            command.env_remove(name);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let child = pair
            .slave
            .spawn_command(command)
            .expect("the program starts");
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().expect("terminal reader");
        let writer = pair.master.take_writer().expect("terminal writer");
        let screen = Arc::new(Screen {
            terminal: Mutex::new(vt100::Parser::new_with_callbacks(
                NonZeroU16::new(ROWS).expect("rows"),
                NonZeroU16::new(COLUMNS).expect("columns"),
                0,
                Requests::default(),
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
    pub fn text(&self) -> String {
        self.screen
            .terminal
            .lock()
            .expect("screen")
            .screen()
            .contents()
    }

    /// Every window title or icon name the program set, in order.
    pub fn titles_set(&self) -> Vec<Vec<u8>> {
        self.screen
            .terminal
            .lock()
            .expect("screen")
            .callbacks()
            .titles
            .clone()
    }

    /// Whether any text on the screen is drawn in a colour.
    pub fn shows_colour(&self) -> bool {
        let terminal = self.screen.terminal.lock().expect("screen");
        let screen = terminal.screen();
        (0..ROWS).any(|row| {
            (0..COLUMNS).any(|column| {
                screen
                    .cell(row, column)
                    .is_some_and(|cell| cell.fgcolor() != vt100::Color::Default)
            })
        })
    }

    /// Waits until `wanted` is on the screen; false after `limit`.
    pub fn shows_within(&self, wanted: &str, limit: Duration) -> bool {
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
    pub fn expect(&self, wanted: &str) {
        assert!(
            self.shows_within(wanted, PATIENCE),
            "{wanted:?} never appeared; the screen:\n{}",
            self.text()
        );
    }

    /// Writes `input` to the terminal in a single write, as a paste arrives.
    pub fn write_at_once(&mut self, input: &str) {
        let written = self.writer.write(input.as_bytes()).expect("write");
        assert_eq!(written, input.len(), "one write takes the whole line");
        self.writer.flush().expect("flush");
    }

    /// Whether the terminal is in line mode (canonical input), as a shell expects it;
    /// a line editor switches it to raw mode while it reads.
    pub fn in_line_mode(&self) -> bool {
        let termios = self.master.get_termios().expect("terminal settings");
        // The flag's name as the settings print it, to avoid naming the terminal
        // library's types here.
        format!("{:?}", termios.local_flags).contains("ICANON")
    }

    pub fn wait_exit(&mut self, limit: Duration) -> portable_pty::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the program did not exit within {limit:?}; the screen:\n{}",
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
