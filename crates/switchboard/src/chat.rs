//! `switchboard chat`: an interactive shell. Plain lines post to the current channel or
//! group; /commands do the rest; incoming messages print above the prompt. Without a
//! terminal, or with --input FILE, it reads lines from the file or stdin instead and
//! exits at the end.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result, bail};
use futures::StreamExt;
use switchboard_client::{Client, EventKind, GroupItem, Payload, Replay, Since};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::cli::ChatArgs;
use crate::commands::Context;
use crate::output::{direct_text, message_text, shown};

const HELP: &str = "\
commands:
  /join CHANNEL      switch to a channel (subscribes, shows the last 10 messages)
  /join @GROUP       join a group and switch to it
  /leave [@GROUP]    leave the current channel, or a group
  /list              channels and groups
  /who               connected clients
  /msg ID[,ID] TEXT  send TEXT directly to clients by id
  /history [N]       the last N messages here (default 20)
  /quit              leave the chat
anything else is posted to the current channel or group";

/// Prints a line without tearing the prompt.
type Printer = Arc<Mutex<Box<dyn FnMut(String) + Send>>>;

/// Prints one line, its control characters escaped (unless `--raw`): every line the shell
/// prints may hold names, channels or bodies that others chose, and a terminal must not
/// obey them. Escaping text already escaped changes nothing.
fn say(printer: &Printer, line: String) {
    let line = match shown(&line) {
        std::borrow::Cow::Borrowed(_) => line,
        std::borrow::Cow::Owned(escaped) => escaped,
    };
    if let Ok(mut print) = printer.lock() {
        print(line);
    }
}

/// Where plain lines go.
enum Place {
    Nowhere,
    Channel { name: String, feed: JoinHandle<()> },
    Group(String),
}

struct Chat {
    client: Client,
    printer: Printer,
    place: Place,
}

impl Chat {
    async fn switch_channel(&mut self, name: &str) -> Result<()> {
        let mut subscription = self.client.subscribe(name, Replay::Last(10)).await?;
        self.leave_place();
        let printer = self.printer.clone();
        let feed = tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                match message {
                    Ok(message) => say(&printer, message_text(&message)),
                    Err(error) => {
                        say(&printer, format!("! subscription ended: {error}"));
                        break;
                    }
                }
            }
        });
        self.place = Place::Channel {
            name: name.to_owned(),
            feed,
        };
        say(&self.printer, format!("* now in channel {name}"));
        Ok(())
    }

    fn leave_place(&mut self) {
        if let Place::Channel { feed, .. } = std::mem::replace(&mut self.place, Place::Nowhere) {
            feed.abort();
        }
    }

    /// Handles one input line; returns false to quit.
    async fn line(&mut self, line: &str) -> Result<bool> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(true);
        }
        if line == "exit" || line == "/quit" || line == "/exit" {
            return Ok(false);
        }
        let Some(command) = line.strip_prefix('/') else {
            self.post(line).await?;
            return Ok(true);
        };
        let (verb, rest) = command.split_once(' ').unwrap_or((command, ""));
        let rest = rest.trim();
        match verb {
            "help" => {
                for line in HELP.lines() {
                    say(&self.printer, line.to_owned());
                }
            }
            "join" if rest.starts_with('@') => {
                let group = &rest[1..];
                self.client.join_group(group).await?;
                self.leave_place();
                self.place = Place::Group(group.to_owned());
                say(&self.printer, format!("* now in group {group}"));
            }
            "join" if !rest.is_empty() => self.switch_channel(rest).await?,
            "leave" if rest.starts_with('@') => {
                let group = &rest[1..];
                self.client.leave_group(group).await?;
                if matches!(&self.place, Place::Group(current) if current == group) {
                    self.place = Place::Nowhere;
                }
                say(&self.printer, format!("* left group {group}"));
            }
            "leave" => {
                match &self.place {
                    Place::Group(group) => {
                        let group = group.clone();
                        self.client.leave_group(&group).await?;
                        say(&self.printer, format!("* left group {group}"));
                    }
                    Place::Channel { name, .. } => {
                        say(&self.printer, format!("* left channel {name}"))
                    }
                    Place::Nowhere => say(
                        &self.printer,
                        "* you are not in a channel or group".to_owned(),
                    ),
                }
                self.leave_place();
                self.place = Place::Nowhere;
            }
            "list" => {
                for channel in self.client.list_channels().await? {
                    say(
                        &self.printer,
                        format!("  {:<24} {} messages", channel.name, channel.message_count),
                    );
                }
                for group in self.client.list_groups().await? {
                    say(
                        &self.printer,
                        format!(
                            "  @{:<23} {} members  {}",
                            group.name, group.member_count, group.description
                        ),
                    );
                }
            }
            "who" => {
                let clients = self.client.list_clients().await?;
                if clients.is_empty() {
                    say(&self.printer, "  (nobody else is connected)".to_owned());
                }
                for client in clients {
                    say(
                        &self.printer,
                        format!("  {:>6}  {}", client.client_id, client.name),
                    );
                }
            }
            "msg" => {
                let Some((ids, text)) = rest.split_once(' ') else {
                    bail!("usage: /msg ID[,ID] TEXT");
                };
                let ids: Vec<u64> = ids
                    .split(',')
                    .map(|id| {
                        id.trim()
                            .parse()
                            .with_context(|| format!("{id:?} is not a client id"))
                    })
                    .collect::<Result<_>>()?;
                for outcome in self
                    .client
                    .relay(&ids, text.as_bytes().to_vec(), "text/plain; charset=utf-8")
                    .await?
                {
                    say(
                        &self.printer,
                        format!("* {} {}", outcome.client_id, outcome.status.name()),
                    );
                }
            }
            "history" => {
                let count = if rest.is_empty() {
                    20
                } else {
                    rest.parse().context("usage: /history [N]")?
                };
                let messages = match &self.place {
                    Place::Channel { name, .. } => {
                        self.client
                            .get_messages(name, Since::All, Some(count))
                            .await?
                    }
                    Place::Group(group) => {
                        self.client
                            .group_messages(group, Since::All, Some(count))
                            .await?
                    }
                    Place::Nowhere => bail!("join a channel or group first"),
                };
                for message in &messages {
                    say(&self.printer, message_text(message));
                }
            }
            _ => bail!("unknown command /{verb}; /help lists them"),
        }
        Ok(true)
    }

    async fn post(&mut self, text: &str) -> Result<()> {
        match &self.place {
            Place::Channel { name, .. } => {
                self.client.publish(name, Payload::text(text)).await?;
            }
            Place::Group(group) => {
                self.client.post(group, Payload::text(text)).await?;
            }
            Place::Nowhere => bail!("join a channel (/join NAME) or group (/join @NAME) first"),
        }
        Ok(())
    }
}

/// The lines to handle, from the terminal or from a file or pipe.
struct Input {
    lines: mpsc::Receiver<String>,
    /// At a terminal: asks the line editor for the next line.
    ask: Option<std::sync::mpsc::SyncSender<()>>,
}

impl Input {
    /// The next line. At a terminal the editor prompts only when asked, so the prompt
    /// comes after the output of the line before, and the terminal is in the editor's
    /// raw mode only while the chat waits for a line: whatever ends the chat otherwise
    /// leaves the terminal as it found it.
    async fn next(&mut self) -> Option<String> {
        if let Some(ask) = &self.ask {
            let _ = ask.try_send(());
        }
        self.lines.recv().await
    }
}

/// Reads lines at the terminal on a thread (the line editor blocks) and hands them over.
fn terminal_input(printer_slot: &mut Option<Printer>) -> Result<Input> {
    use rustyline::ExternalPrinter;
    let mut editor = rustyline::DefaultEditor::new().context("cannot start the line editor")?;
    let mut external = editor
        .create_external_printer()
        .context("cannot print above the prompt")?;
    let print: Box<dyn FnMut(String) + Send> = Box::new(move |mut line: String| {
        // While the editor is not reading, the printer writes the text as it is, and the
        // prompt drawn next would overwrite a line left open.
        line.push('\n');
        let _ = external.print(line);
    });
    *printer_slot = Some(Arc::new(Mutex::new(print)));
    let (tx, rx) = mpsc::channel(1);
    let (ask, asked) = std::sync::mpsc::sync_channel(1);
    std::thread::spawn(move || {
        while asked.recv().is_ok() {
            // Ctrl-D, Ctrl-C or a broken terminal: the chat ends when `tx` is dropped.
            let Ok(line) = editor.readline("> ") else {
                break;
            };
            let _ = editor.add_history_entry(line.as_str());
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    Ok(Input {
        lines: rx,
        ask: Some(ask),
    })
}

fn reader_input(reader: Box<dyn AsyncRead + Unpin + Send>) -> Input {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).await.is_err() {
                break;
            }
        }
    });
    Input {
        lines: rx,
        ask: None,
    }
}

pub async fn run(ctx: &Context, args: ChatArgs) -> Result<()> {
    let client = ctx.connect().await?;
    let interactive = args.input.is_none() && std::io::stdin().is_terminal();
    let mut printer = None;
    let mut input = if interactive {
        terminal_input(&mut printer)?
    } else {
        let reader: Box<dyn AsyncRead + Unpin + Send> = match &args.input {
            Some(path) => Box::new(
                tokio::fs::File::open(path)
                    .await
                    .with_context(|| format!("cannot open {}", path.display()))?,
            ),
            None => Box::new(tokio::io::stdin()),
        };
        reader_input(reader)
    };
    let printer: Printer = printer
        .unwrap_or_else(|| Arc::new(Mutex::new(Box::new(|line: String| crate::outln!("{line}")))));
    say(
        &printer,
        format!(
            "* connected as {} (client id {}); /help for commands",
            client.session().name,
            client.session().client_id
        ),
    );

    let mut feeds = Vec::new();
    if let Ok(mut groups) = client.group_feed() {
        let printer = printer.clone();
        feeds.push(tokio::spawn(async move {
            while let Some(item) = groups.next().await {
                let line = match item {
                    GroupItem::Message(message) => message_text(&message),
                    GroupItem::Event(event) => match event.kind {
                        EventKind::MemberJoined => {
                            format!("* {} joined @{}", event.subject, event.channel)
                        }
                        EventKind::MemberLeft => {
                            format!("* {} left @{}", event.subject, event.channel)
                        }
                        EventKind::GroupDeleted => format!("* @{} was deleted", event.channel),
                        _ => continue,
                    },
                };
                say(&printer, line);
            }
        }));
    }
    if let Ok(mut directs) = client.direct_feed() {
        let printer = printer.clone();
        feeds.push(tokio::spawn(async move {
            while let Some(direct) = directs.next().await {
                say(&printer, direct_text(&direct));
            }
        }));
    }

    let mut chat = Chat {
        client,
        printer: printer.clone(),
        place: Place::Nowhere,
    };
    match args.channel.as_deref() {
        Some(group) if group.starts_with('@') => {
            chat.line(&format!("/join {group}")).await?;
        }
        Some(channel) => chat.switch_channel(channel).await?,
        None => {}
    }
    while let Some(line) = input.next().await {
        match chat.line(&line).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(error) if interactive => say(&printer, format!("! {error:#}")),
            Err(error) => return Err(error),
        }
    }
    chat.leave_place();
    for feed in feeds {
        feed.abort();
    }
    let _ = chat.client.close().await;
    Ok(())
}
