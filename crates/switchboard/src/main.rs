//! `switchboard`: the server and the command-line client in one binary.

/// `println!` that ends the process quietly when stdout is a closed pipe.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::emit(format_args!($($arg)*))
    };
}

mod bench;
mod chat;
mod cli;
mod commands;
mod output;
mod serve;
mod since;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use crate::cli::{Cli, Command, ServeArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Serve(ServeArgs {
        threads: Some(threads),
        ..
    }) = &cli.command
    {
        builder.worker_threads(usize::from(*threads));
    }
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

fn read_hmac_key(cli: &Cli) -> Result<Option<Vec<u8>>> {
    let Some(path) = &cli.hmac_key_file else {
        return Ok(None);
    };
    let key = std::fs::read(path)
        .with_context(|| format!("cannot read HMAC key file {}", path.display()))?;
    let trimmed = key.trim_ascii().to_vec();
    anyhow::ensure!(
        !trimmed.is_empty(),
        "HMAC key file {} is empty",
        path.display()
    );
    Ok(Some(trimmed))
}

async fn run(cli: Cli) -> Result<()> {
    let hmac_key = read_hmac_key(&cli)?;
    let Cli {
        server,
        name,
        json,
        token,
        command,
        ..
    } = cli;
    let ctx = commands::Context {
        server,
        name,
        json,
        token,
        hmac_key,
    };
    match command {
        Command::Serve(args) => serve::run(args, ctx.hmac_key).await,
        Command::Stop => commands::session::stop(&ctx).await,
        Command::Whoami => commands::session::whoami(&ctx).await,
        Command::Clients => commands::session::clients(&ctx).await,
        Command::Stats => commands::session::stats(&ctx).await,
        Command::Relay(args) => commands::relay::relay(&ctx, args).await,
        Command::Listen(args) => commands::relay::listen(&ctx, args).await,
        Command::Channels => commands::channel::list(&ctx).await,
        Command::Channel(cli::ChannelCommand::Create(args)) => {
            commands::channel::create(&ctx, args).await
        }
        Command::Publish(args) => commands::publish::publish(&ctx, args).await,
        Command::Subscribe(args) => commands::subscribe::subscribe(&ctx, args).await,
        Command::Get(args) => commands::channel::get(&ctx, args).await,
        Command::History(args) => commands::channel::history(&ctx, args).await,
        Command::Tag(args) => commands::channel::tag(&ctx, args).await,
        Command::Groups => commands::group::list(&ctx).await,
        Command::Group(cli::GroupCommand::Create(args)) => {
            commands::group::create(&ctx, args).await
        }
        Command::Group(cli::GroupCommand::History(args)) => {
            commands::group::history(&ctx, args).await
        }
        Command::Join(args) => commands::group::join(&ctx, args, true).await,
        Command::Leave(args) => commands::group::join(&ctx, args, false).await,
        Command::Members(args) => commands::group::members(&ctx, args).await,
        Command::Post(args) => commands::group::post(&ctx, args).await,
        Command::Chat(args) => chat::run(&ctx, args).await,
        Command::Bench(args) => bench::run(&ctx, args).await,
    }
}
