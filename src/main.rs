//! `server-monitor`: parse the command line, run the subcommand, map the
//! outcome to an exit status (0 ok, 1 runtime error, 2 usage, 78 config).

use std::process::ExitCode;

use server_monitor::{capture, cli, config, monitor};

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let cli = match cli::parse(&args) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("server-monitor: {e}\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let code = match cli.command {
        cli::Command::Help => {
            print!("{}", cli::help());
            0
        }
        cli::Command::Version => {
            println!("server-monitor {}", env!("CARGO_PKG_VERSION"));
            0
        }
        cli::Command::Capture {
            file,
            max_bytes,
            backups,
        } => capture::run(file, max_bytes, backups).clamp(0, 255) as u8,
        ref command => match config::load(&cli) {
            // `check` speaks the Nagios convention: bad configuration is UNKNOWN.
            Err(e) if *command == cli::Command::Check => {
                println!("UNKNOWN - {}", e.to_string().replace('\n', "; "));
                3
            }
            Err(e) => {
                eprintln!("server-monitor: bad configuration:\n{e}");
                78
            }
            Ok(cfg) => monitor::dispatch(command, &cfg, &cli),
        },
    };
    ExitCode::from(code)
}
