//! The `deflect` command line.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use deflect::cli::{self, ApiArgs, AttackCmd, AuditCmd, ConfigCmd, MitigationCmd};
use deflect::probe::{self, ProbeArgs};
use deflect::run::{self, RunArgs};

/// The system's allocator, or mimalloc when `deflect run`'s configuration says so (see
/// `sys::Allocator`).
#[global_allocator]
static ALLOC: deflect::sys::Allocator = deflect::sys::Allocator;

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
    /// Run the daemon: BGP speaker, mitigation set, API.
    Run(RunArgs),
    /// Manual mitigations, through the API.
    Mitigation {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        cmd: MitigationCmd,
    },
    /// BGP peers, through the API.
    Peers {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Detected attacks, through the API.
    Attacks {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        cmd: AttackCmd,
    },
    /// Protected addresses: current rates, baselines and thresholds, through the API.
    Targets {
        #[command(flatten)]
        api: ApiArgs,
        /// One address; the busiest ones when absent.
        addr: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Run detection and the policies over recorded traffic (pcap, pcapng, probe reports) and
    /// print the attacks and mitigations deflect would make; nothing is announced.
    Replay(deflect::tools::replay::ReplayArgs),
    /// Send a synthetic flood described as sFlow v5 datagrams (for tests and the lab).
    SflowFlood(deflect::tools::sflow_flood::FloodArgs),
    /// The sFlow collector's agents and counters, through the API.
    Sflow {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The NetFlow/IPFIX collector's exporters and counters, through the API.
    Netflow {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Attack captures (pcap), through the API.
    Pcap {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        cmd: cli::PcapCmd,
    },
    /// Reporting probes, through the API.
    Nodes {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The audit log.
    Audit {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// A stopped daemon's state store: check, export, repair, import.
    Store {
        #[command(subcommand)]
        cmd: deflect::tools::store::StoreCmd,
    },
    /// Configuration files.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// The node agent: sample this machine's traffic and report it to the controller.
    Probe(ProbeArgs),
    /// Show a FlowSpec rule as wire bytes and as GoBGP, ExaBGP, BIRD, Junos, IOS-XR, nftables and
    /// iptables configuration.
    Flowspec(deflect::tools::flowspec::FlowspecArgs),
    /// Shell completions (bash, zsh, fish, elvish, powershell), to standard output.
    #[command(hide = true)]
    Completions(deflect::tools::docs::CompletionsArgs),
    /// Man pages: deflect.1 to standard output, or every page into a directory.
    #[command(hide = true)]
    Manpage(deflect::tools::docs::ManpageArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A replay prints its findings; the engine's own log of them is noise unless asked for.
    let level = match cli.command {
        Command::Replay(_) => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Run(args) => run::main(args),
        Command::Mitigation { api, cmd } => cli::mitigation(&api, cmd),
        Command::Peers { api } => cli::peers(&api),
        Command::Audit { api, cmd } => cli::audit(&api, cmd),
        Command::Attacks { api, cmd } => cli::attacks(&api, cmd),
        Command::Targets { api, addr, limit } => cli::targets(&api, addr, limit),
        Command::Nodes { api } => cli::nodes(&api),
        Command::Replay(args) => deflect::tools::replay::main(args),
        Command::SflowFlood(args) => deflect::tools::sflow_flood::main(args),
        Command::Sflow { api } => cli::sflow(&api),
        Command::Netflow { api } => cli::netflow(&api),
        Command::Pcap { api, cmd } => cli::pcap(&api, cmd),
        Command::Config { cmd } => cli::config(cmd),
        Command::Store { cmd } => deflect::tools::store::main(cmd),
        Command::Probe(args) => probe::main(args),
        Command::Flowspec(args) => deflect::tools::flowspec::main(args),
        Command::Completions(args) => deflect::tools::docs::completions_main(Cli::command(), args),
        Command::Manpage(args) => deflect::tools::docs::manpage_main(Cli::command(), args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap_complete::Shell;
    use deflect::tools::docs::{completions, manpages};

    /// The visible subcommands: what completions and man pages must name.
    fn visible() -> Vec<String> {
        Cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name().to_string())
            .collect()
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn completions_for_each_shell_name_every_subcommand() {
        let subs = visible();
        assert!(subs.len() >= 15, "{subs:?}");
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::Elvish,
            Shell::PowerShell,
        ] {
            let text = String::from_utf8(completions(Cli::command(), shell)).unwrap();
            for sub in &subs {
                assert!(text.contains(sub.as_str()), "{shell}: no {sub}");
            }
            // Options of nested subcommands are completed too.
            assert!(text.contains("source-rtbh"), "{shell}: no --source-rtbh");
        }
    }

    #[test]
    fn the_man_pages_name_every_subcommand_and_have_one_page_each() {
        let pages = manpages(Cli::command());
        let (name, main) = &pages[0];
        assert_eq!(name, "deflect.1");
        let main = String::from_utf8_lossy(main);
        assert!(main.starts_with(".ie \\n(.g .ds Aq"), "{main}");
        assert!(main.contains(".SH SUBCOMMANDS"), "{main}");
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for sub in visible() {
            // roff writes every '-' as '\-'.
            let listed = format!("deflect-{sub}(1)").replace('-', "\\-");
            assert!(main.contains(&listed), "deflect.1 names no {sub}");
            assert!(
                names.contains(&format!("deflect-{sub}.1").as_str()),
                "no page for {sub}: {names:?}"
            );
        }
        // Nested subcommands have their own pages, options and environment variables included.
        let add = pages
            .iter()
            .find(|(n, _)| n == "deflect-mitigation-add.1")
            .map(|(_, t)| String::from_utf8_lossy(t))
            .expect("deflect-mitigation-add.1");
        assert!(add.contains("source\\-rtbh"), "{add}");
        assert!(add.contains("DEFLECT_TOKEN"), "{add}");
        let version = format!(
            ".TH deflect-mitigation-add 1  \"deflect {}\" \"deflect manual\"",
            env!("CARGO_PKG_VERSION")
        );
        assert!(add.contains(&version), "{add}");
        // The hidden commands stay out of the pages.
        assert!(!main.contains("completions"), "{main}");
        assert!(!names.iter().any(|n| n.contains("manpage")), "{names:?}");
    }
}
