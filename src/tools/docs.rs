//! `deflect completions SHELL` and `deflect manpage [--out DIR]`: shell completions and man pages
//! generated from the command line's own clap definitions (`clap_complete`, `clap_mangen`), so
//! they say what `--help` says and never drift from it. Both commands are hidden: they are for
//! packagers (`packaging/build-deb.sh` ships their output in the Debian package) and for users
//! who install by hand (`deflect completions bash > /etc/bash_completion.d/deflect`).
//!
//! The binary owns the command line (`main.rs`), so it hands its [`Command`] in; everything is
//! rendered in memory first and then written, so a closed pipe or a full disk is an error message
//! and an exit code, not a panic inside a generator.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Command};
use clap_complete::Shell;

/// `deflect completions`.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `deflect manpage`.
#[derive(Debug, Clone, Args)]
pub struct ManpageArgs {
    /// Write deflect.1 and one page per subcommand (deflect-run.1, deflect-mitigation-add.1, ...)
    /// into this directory (made if missing). Without it, deflect.1 goes to standard output.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// The completion script of `cmd` for `shell`.
pub fn completions(mut cmd: Command, shell: Shell) -> Vec<u8> {
    let name = cmd.get_name().to_string();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut buf);
    buf
}

/// The man pages of `cmd`: its own (`deflect.1`) first, then one per visible subcommand at every
/// depth (`deflect-mitigation-add.1`), each as (file name, roff text).
pub fn manpages(cmd: Command) -> Vec<(String, Vec<u8>)> {
    fn walk(cmd: Command, source: &str, pages: &mut Vec<(String, Vec<u8>)>) {
        let subs: Vec<Command> = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .cloned()
            .collect();
        let man = clap_mangen::Man::new(cmd)
            .source(source)
            .manual("deflect manual");
        let mut text = Vec::new();
        // Rendering into a Vec cannot fail.
        let _ = man.render(&mut text);
        pages.push((man.get_filename(), text));
        for s in subs {
            walk(s, source, pages);
        }
    }
    // Built once at the top, so that every subcommand knows its full name (`deflect-run`).
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    // Every page's footer names the program and its version (a subcommand has none of its own).
    let source = format!(
        "{} {}",
        cmd.get_name(),
        cmd.get_version().unwrap_or_default()
    );
    let mut pages = Vec::new();
    walk(cmd, source.trim_end(), &mut pages);
    pages
}

/// `deflect completions SHELL`: the script to standard output.
pub fn completions_main(cmd: Command, args: CompletionsArgs) -> ExitCode {
    let text = completions(cmd, args.shell);
    finish(std::io::stdout().lock().write_all(&text), "standard output")
}

/// `deflect manpage [--out DIR]`.
pub fn manpage_main(cmd: Command, args: ManpageArgs) -> ExitCode {
    let pages = manpages(cmd);
    match args.out {
        None => {
            let main = pages.first().map(|(_, text)| text.as_slice());
            finish(
                std::io::stdout().lock().write_all(main.unwrap_or_default()),
                "standard output",
            )
        }
        Some(dir) => {
            if let Err(e) = std::fs::create_dir_all(&dir) {
                return finish(Err(e), &dir.display().to_string());
            }
            for (name, text) in &pages {
                let path = dir.join(name);
                if let Err(e) = write_file(&path, text) {
                    return finish(Err(e), &path.display().to_string());
                }
            }
            ExitCode::SUCCESS
        }
    }
}

fn write_file(path: &Path, text: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(text)?;
    f.flush()
}

fn finish(r: std::io::Result<()>, what: &str) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "deflect: cannot write {what}: {e}");
            ExitCode::FAILURE
        }
    }
}
