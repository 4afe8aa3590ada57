//! `switchboard`: the server and the command-line client in one binary.

/// `println!` that ends the process quietly when stdout is a closed pipe.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::emit(format_args!($($arg)*))
    };
}

mod allocator;
mod bench;
mod chat;
mod check;
mod cli;
mod commands;
mod config;
mod log_file;
mod login;
mod output;
mod repair;
mod serve;
mod since;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::{Cli, Command, ServeArgs};

/// Task polls between a runtime worker's looks at the sockets and timers: one, where tokio
/// would wait 61. The server's busy workers run a few tasks back to back (a session
/// reading publishes, the writers it wakes); looking at the sockets after each poll
/// wakes a writer whose socket drained, or the other worker, at once rather than after
/// dozens of polls, and the workers go to sleep half as often. Measured in
/// docs/BENCHMARKS.md ("A worker looks at its sockets after every task").
const EVENT_INTERVAL: u32 = 1;

#[global_allocator]
static ALLOCATOR: allocator::Allocator = allocator::Allocator;

fn main() -> ExitCode {
    let mut cli = Cli::parse_arguments();
    if let Command::Serve(args) = &mut cli.command {
        let settled = config::apply(args).and_then(|()| match args.check {
            Some(format) => check::run(args, format).map(|()| Some(ExitCode::SUCCESS)),
            None => Ok(None),
        });
        match settled {
            Ok(None) => {}
            Ok(Some(code)) => return code,
            Err(error) => {
                eprintln!("switchboard: {}", one_line(&error));
                return ExitCode::FAILURE;
            }
        }
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Serve(ServeArgs {
        threads: Some(threads),
        ..
    }) = &cli.command
    {
        builder.worker_threads(usize::from(*threads));
    }
    builder.event_interval(EVENT_INTERVAL);
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("switchboard: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("switchboard: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line: "cannot connect to X: connection refused".
fn one_line(error: &anyhow::Error) -> String {
    error
        .chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\n', " ")
}

/// A secret kept in a file: its bytes without surrounding whitespace (the line end an
/// editor adds), never empty.
fn read_secret_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    let secret = std::fs::read(path)
        .with_context(|| format!("cannot read {what} file {}", path.display()))?;
    let trimmed = secret.trim_ascii();
    anyhow::ensure!(
        !trimmed.is_empty(),
        "{what} file {} is empty",
        path.display()
    );
    Ok(trimmed.to_vec())
}

/// A token from `file`, else the one from the environment, if any.
fn read_token(file: Option<&Path>, from_env: Option<String>, what: &str) -> Result<Option<String>> {
    match file {
        Some(path) => {
            let token = read_secret_file(path, what)?;
            let token = String::from_utf8(token)
                .with_context(|| format!("{what} file {} is not UTF-8 text", path.display()))?;
            Ok(Some(token))
        }
        None => Ok(from_env.filter(|token| !token.is_empty())),
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Repair(args) => repair::run(&args),
        Command::Passwd => login::passwd(),
        Command::Token(cli::TokenCommand::New(args)) => login::new_token(&args),
        mut command => {
            let ctx = client_context(&mut command)?;
            run_client(&ctx, command).await
        }
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let (hmac_key, admin_token) = read_serve_secrets(&args)?;
    serve::run(args, hmac_key, admin_token).await
}

/// The server's HMAC key and admin token, read from their files or the environment.
fn read_serve_secrets(args: &ServeArgs) -> Result<(Option<Vec<u8>>, Option<String>)> {
    let hmac_key = args
        .hmac_key_file
        .as_deref()
        .map(|path| read_secret_file(path, "HMAC key"))
        .transpose()?;
    let admin_token = read_token(
        args.admin_token_file.as_deref(),
        args.admin_token.clone(),
        "admin token",
    )?;
    Ok((hmac_key, admin_token))
}

/// What a client command needs from its options, with the secrets read.
fn client_context(command: &mut Command) -> Result<commands::Context> {
    let options = command
        .client_options_mut()
        .context("serve is not a client command")?;
    output::print_raw(options.raw);
    Ok(commands::Context {
        hmac_key: options
            .hmac_key_file
            .as_deref()
            .map(|path| read_secret_file(path, "HMAC key"))
            .transpose()?,
        token: read_token(options.token_file.as_deref(), options.token.take(), "token")?,
        password: match &options.user {
            Some(user) => Some(login::client_password(user)?),
            None => None,
        },
        user: options.user.take(),
        jwt: options
            .jwt_file
            .as_deref()
            .map(|path| read_secret_file(path, "JWT"))
            .transpose()?,
        server: std::mem::take(&mut options.server),
        name: options.name.take(),
        json: options.json,
        tls: options.tls_options(),
    })
}

async fn run_client(ctx: &commands::Context, command: Command) -> Result<()> {
    match command {
        Command::Serve(_) | Command::Repair(_) | Command::Passwd | Command::Token(_) => {
            anyhow::bail!("serve, repair, passwd and token are not client commands")
        }
        Command::Stop(_) => commands::session::stop(ctx).await,
        Command::Reload(_) => commands::session::reload(ctx).await,
        Command::Whoami(_) => commands::session::whoami(ctx).await,
        Command::Clients(_) => commands::session::clients(ctx).await,
        Command::Stats(_) => commands::session::stats(ctx).await,
        Command::Relay(args) => commands::relay::relay(ctx, args).await,
        Command::Listen(args) => commands::relay::listen(ctx, args).await,
        Command::Channels(_) => commands::channel::list(ctx).await,
        Command::Channel(cli::ChannelCommand::Create(args)) => {
            commands::channel::create(ctx, args).await
        }
        Command::Channel(cli::ChannelCommand::Delete(args)) => {
            commands::channel::delete(ctx, args).await
        }
        Command::Publish(args) => commands::publish::publish(ctx, args).await,
        Command::Subscribe(args) => commands::subscribe::subscribe(ctx, args).await,
        Command::Get(args) => commands::channel::get(ctx, args).await,
        Command::History(args) => commands::channel::history(ctx, args).await,
        Command::Tag(args) => commands::channel::tag(ctx, args).await,
        Command::Groups(_) => commands::group::list(ctx).await,
        Command::Group(cli::GroupCommand::Create(args)) => commands::group::create(ctx, args).await,
        Command::Group(cli::GroupCommand::History(args)) => {
            commands::group::history(ctx, args).await
        }
        Command::Group(cli::GroupCommand::Delete(args)) => commands::group::delete(ctx, args).await,
        Command::Join(args) => commands::group::join(ctx, args, true).await,
        Command::Leave(args) => commands::group::join(ctx, args, false).await,
        Command::Members(args) => commands::group::members(ctx, args).await,
        Command::Post(args) => commands::group::post(ctx, args).await,
        Command::Chat(args) => chat::run(ctx, args).await,
        Command::Bench(args) => bench::run(ctx, args).await,
    }
}
