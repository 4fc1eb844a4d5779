//! The `cofferdam` command line: parse, call the library, map errors to exit codes.

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::process::ExitCode;

/// Keeps a shop's launch alive through a traffic spike.
///
/// Before: `build` and `check` the static landing path. During: `serve` it and collect form
/// posts into durable logs. After: `import` them into the shop's database, exactly once.
#[derive(Parser)]
#[command(name = "cofferdam", version, about, long_about)]
struct Cli {
    /// The site folder (holding cofferdam.toml), before or after the command.
    // Global, so `cofferdam --site x build` works too; clap hands the value to the command's own
    // `--site`, which is what the commands read.
    #[arg(long, global = true, default_value = ".", value_name = "SITE")]
    site: std::path::PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render content/ through templates/ into dist/ (HTML, assets, .br/.gz twins, manifest).
    Build(cofferdam::build::BuildArgs),
    /// Launch-readiness report on the built site; exits non-zero on errors.
    Check(cofferdam::check::CheckArgs),
    /// Write a new site (config, content, templates) that builds and serves as it is.
    Init(cofferdam::build::InitArgs),
    /// Build, then serve dist/ from memory and collect form posts into collected/.
    Serve(cofferdam::serve::ServeArgs),
    /// Counts of collected records per form, node and hour; stock left; revenue.
    Stats(cofferdam::cmd::stats::StatsArgs),
    /// Replay collected/ into the shop's database with reserved ID ranges, exactly once.
    Import(cofferdam::cmd::import::ImportArgs),
    /// A bounded load rehearsal on loopback that reports this machine's capacity.
    Rehearse(cofferdam::rehearse::RehearseArgs),
}

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COFFERDAM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = match &cli.command {
        Command::Build(args) => cofferdam::build::cli(args),
        Command::Check(args) => cofferdam::check::cli(args),
        Command::Init(args) => cofferdam::build::init_cli(args),
        Command::Serve(args) => cofferdam::serve::cli(args),
        Command::Stats(args) => cofferdam::cmd::stats::cli(args),
        Command::Import(args) => cofferdam::cmd::import::cli(args),
        Command::Rehearse(args) => cofferdam::rehearse::cli(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
