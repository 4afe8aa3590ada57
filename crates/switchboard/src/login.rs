//! Credentials on the command line's side: `passwd` (a password's argon2id hash for the
//! server's config file), `token new` (a fresh token and its `[[tokens]]` entry), and
//! the password of `--user`, which never comes from the command line itself.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, Result, bail};
use base64::Engine;
use switchboard_server::security::{hash_password, token_sha256};

use crate::cli::TokenNewArgs;

/// `switchboard passwd`: prints the hash of a password read without echo.
pub fn passwd() -> Result<()> {
    let password = if std::io::stdin().is_terminal() {
        let first = prompt_hidden("Password: ")?;
        let again = prompt_hidden("Again: ")?;
        if first != again {
            bail!("the passwords differ");
        }
        first
    } else {
        read_stdin_line()?
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let hash = hash_password(password.as_bytes()).context("cannot hash the password")?;
    crate::outln!("{hash}");
    Ok(())
}

/// `switchboard token new NAME --user USER`: a random token, then the entry to paste
/// into the server's config file. The token itself is kept nowhere.
pub fn new_token(args: &TokenNewArgs) -> Result<()> {
    switchboard_proto::subject::validate_client_name(&args.user)
        .map_err(|error| anyhow::anyhow!("--user {:?}: {error}", args.user))?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|error| anyhow::anyhow!("no randomness: {error}"))?;
    let token = format!(
        "sbt_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let digest = hex::encode(token_sha256(token.as_bytes()));
    let toml_string = |text: &str| toml::Value::String(text.to_owned()).to_string();
    crate::outln!("{token}");
    crate::outln!("");
    crate::outln!("# Give the line above to the client (in a file for --token-file); for the");
    crate::outln!("# server's config file:");
    crate::outln!("[[tokens]]");
    crate::outln!("name = {}", toml_string(&args.name));
    crate::outln!("user = {}", toml_string(&args.user));
    crate::outln!("sha256 = \"{digest}\"");
    if !args.roles.is_empty() {
        let roles: Vec<String> = args.roles.iter().map(|role| toml_string(role)).collect();
        crate::outln!("roles = [{}]", roles.join(", "));
    }
    Ok(())
}

/// The password of `--user USER`: SWITCHBOARD_PASSWORD, else asked for on a terminal.
pub fn client_password(user: &str) -> Result<Vec<u8>> {
    if let Some(password) = std::env::var_os("SWITCHBOARD_PASSWORD") {
        return Ok(password.into_encoded_bytes());
    }
    if !std::io::stdin().is_terminal() {
        bail!("--user {user}: set SWITCHBOARD_PASSWORD, or run on a terminal to be asked");
    }
    let password = prompt_hidden(&format!("Password for {user}: "))?;
    Ok(password.into_bytes())
}

/// One line of stdin without its line end.
fn read_stdin_line() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Asks for a secret on the terminal without echoing it. Echo is off before the prompt
/// shows, so that nothing typed as soon as it appears is echoed.
#[cfg(unix)]
fn prompt_hidden(prompt: &str) -> Result<String> {
    use std::io::Write;

    use rustix::termios::{self, LocalModes, OptionalActions, Termios};

    /// Puts the terminal's settings back however reading ends.
    struct Restore<'a>(&'a std::fs::File, Termios);

    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let _ = termios::tcsetattr(self.0, OptionalActions::Now, &self.1);
        }
    }

    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context("no terminal to ask for the password on")?;
    let shown = termios::tcgetattr(&tty).context("cannot read the terminal's settings")?;
    let mut hidden = shown.clone();
    hidden.local_modes.remove(LocalModes::ECHO);
    // The Enter that ends the secret still moves to the next line.
    hidden.local_modes.insert(LocalModes::ECHONL);
    termios::tcsetattr(&tty, OptionalActions::Now, &hidden)
        .context("cannot turn the terminal's echo off")?;
    let _restore = Restore(&tty, shown);
    (&tty)
        .write_all(prompt.as_bytes())
        .and_then(|()| (&tty).flush())
        .context("cannot write to the terminal")?;
    let mut line = String::new();
    std::io::BufReader::new(&tty)
        .read_line(&mut line)
        .context("cannot read the password")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

#[cfg(not(unix))]
fn prompt_hidden(prompt: &str) -> Result<String> {
    rpassword::prompt_password(prompt).context("cannot read the password")
}
