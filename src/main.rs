//! `server-monitor`: parse the command line, run the one subcommand, map its
//! outcome to an exit status and print the one error line.
//!
//! The only place that decides an exit status: 0 done (and `check`'s OK), 1 a
//! runtime error (and `check`'s WARNING), 2 a usage error (and `check`'s
//! CRITICAL), 3 nothing to talk to (`status` without a state file, `restart`
//! without a monitor; `check`'s UNKNOWN), 78 bad configuration (EX_CONFIG).
//! The subcommands themselves are in `command`; nothing here does their work.

use std::io::Write;
use std::process::ExitCode;

use server_monitor::cli::{self, Cli, Command};
use server_monitor::command::{self, Error, Nagios, Outcome};
use server_monitor::config;

fn main() -> ExitCode {
    // One rustls crypto provider for the whole process (ring); see Cargo.toml.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let status = match cli::parse(&args).map_err(Error::Usage).and_then(run) {
        Ok(Outcome::Done) => 0,
        Ok(Outcome::Check(state)) => match state {
            Nagios::Ok => 0,
            Nagios::Warning => 1,
            Nagios::Critical => 2,
            Nagios::Unknown => 3,
        },
        Err(e) => {
            // NOTE: not `eprintln!`, which panics on a closed stderr (the
            // log writer's stderr may be gone with the monitor).
            let _ = match &e {
                Error::Usage(_) => {
                    writeln!(std::io::stderr(), "server-monitor: {e}\n{}", cli::USAGE)
                }
                Error::Capture(_) => writeln!(std::io::stderr(), "server-monitor __capture: {e}"),
                _ => writeln!(std::io::stderr(), "server-monitor: {e}"),
            };
            match e {
                Error::Usage(_) => 2,
                Error::Absent(_) => 3,
                Error::Config(_) => 78,
                Error::Failed(_) | Error::Capture(_) | Error::NotBuilt(_) => 1,
            }
        }
    };
    ExitCode::from(status)
}

/// Runs the subcommand of a parsed command line.
fn run(cli: Cli) -> Result<Outcome, Error> {
    match cli.command {
        Command::Help => return command::help(),
        Command::Version => return command::version(),
        Command::Capture {
            file,
            max_bytes,
            backups,
        } => return command::capture(file, max_bytes, backups),
        _ => {}
    }
    let cfg = match config::load(
        &cli.flags,
        cli.env_file.as_deref(),
        cli.server_command.clone(),
    ) {
        Ok(cfg) => cfg,
        Err(e) if cli.command == Command::Check => return command::check_unconfigured(&e),
        Err(e) => return Err(Error::Config(e)),
    };
    match &cli.command {
        Command::Run => command::run(&cfg),
        Command::Check => command::check(&cfg),
        Command::Status => command::status(&cfg, cli.json),
        Command::Config => command::config(&cfg),
        Command::Restart => command::restart(&cfg),
        Command::TestAlert => command::test_alert(&cfg),
        Command::Pause { duration } => command::pause(&cfg, *duration),
        Command::Resume => command::resume(&cfg),
        Command::Report(request) => command::report(&cfg, request),
        Command::Help | Command::Version | Command::Capture { .. } => {
            unreachable!("run before the configuration is loaded")
        }
    }
}
