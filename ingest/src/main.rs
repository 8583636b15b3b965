//! The `firn` binary: parses arguments, starts logging, runs the command, maps the
//! outcome to an exit code (0 ok, 1 failure, 2 bad input, 3 nothing to do).

use clap::Parser;
use firn_ingest::cli::{Cli, run};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FIRN_LOG")
                .unwrap_or_else(|_| "warn,firn_ingest=info,firn_catalog=info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: log collectors (Airflow, journald, Kubernetes)
        // would show them raw.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    if let Err(err) = run(cli).await {
        let prefix = if err.code == firn_ingest::cli::EXIT_NOTHING_TO_DO {
            ""
        } else {
            "error: "
        };
        eprintln!("{prefix}{}", err.message);
        std::process::exit(err.code);
    }
}
