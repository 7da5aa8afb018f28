//! The `deflect` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use deflect::run::{self, RunArgs};

#[derive(Debug, Parser)]
#[command(
    name = "deflect",
    version,
    about = "DDoS-mitigation controller with an embedded BGP FlowSpec/RTBH speaker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the BGP speaker: peer with routers and announce the given routes until stopped.
    Run(RunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Run(args) => run::main(args),
    }
}
