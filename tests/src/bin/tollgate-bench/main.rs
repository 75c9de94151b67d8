//! `make bench`'s measuring tool (infra/scripts/bench.sh runs it; docs/BENCHMARKS.md shows what it
//! prints). Each subcommand measures one thing and writes a Markdown section to `--out`:
//!
//! - `init`: cold start of each function binary and of the hello-world baseline under the local
//!   Runtime API (process start to the first `invocation/next`, and to the first response).
//! - `throughput`: `GET /api/me` and `POST /api/usage/calls` through the dev gateway against
//!   DynamoDB Local at a fixed concurrency, against the same DynamoDB operations issued directly.
//! - `cost`: DynamoDB requests and consumed capacity of every route.
//! - `deletion`: organization deletion's synchronous time and the deletion job's pace.
//! - `notifier`: audit events per second through the notifier to a webhook receiver.

mod cost;
mod deletion;
mod init;
mod notifier;
mod throughput;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Tollgate's benchmarks (run by `make bench`)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Cold start of every function binary and of hello-world under the local Runtime API.
    Init(init::Args),
    /// Requests per second through the dev gateway vs the same DynamoDB operations directly.
    Throughput(throughput::Args),
    /// DynamoDB requests and consumed capacity per route.
    Cost(cost::Args),
    /// DELETE /api/organization's synchronous time by organization size, and the deletion job's pace.
    Deletion(deletion::Args),
    /// Audit events per second from the stream through the notifier and SQS to a receiver.
    Notifier(notifier::Args),
}

type BenchResult = Result<String, Box<dyn std::error::Error + Send + Sync>>;

fn write_section(out: &Option<PathBuf>, markdown: &str) -> std::io::Result<()> {
    match out {
        Some(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, markdown)
        }
        None => {
            print!("{markdown}");
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let (result, out) = match cli.command {
        Command::Init(args) => {
            let out = args.out.clone();
            (init::run(args).await, out)
        }
        Command::Throughput(args) => {
            let out = args.out.clone();
            (throughput::run(args).await, out)
        }
        Command::Cost(args) => {
            let out = args.out.clone();
            (cost::run(args).await, out)
        }
        Command::Deletion(args) => {
            let out = args.out.clone();
            (deletion::run(args).await, out)
        }
        Command::Notifier(args) => {
            let out = args.out.clone();
            (notifier::run(args).await, out)
        }
    };
    match result.map(|markdown| write_section(&out, &markdown)) {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(error)) => {
            eprintln!("tollgate-bench: could not write the section: {error}");
            std::process::ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("tollgate-bench: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
