//! The metricsstream command line. Only the writer's subcommands for now;
//! each is a library function in `metricsstream::writer::cli`.
use clap::{Parser, Subcommand};
use metricsstream::writer::cli;

#[derive(Parser)]
#[command(name = "metricsstream", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the log's records (line protocol or JSON), in log order.
    Dump(cli::DumpArgs),
    /// Check every frame of the log; exit non-zero on corruption.
    Verify(cli::VerifyArgs),
    /// Push synthetic records through the writer (crash test, benchmark).
    WriteLoad(cli::WriteLoadArgs),
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let mut out = std::io::stdout().lock();
    match Cli::parse().command {
        Command::Dump(a) => cli::dump(&a, &mut out).map(drop)?,
        Command::Verify(a) => cli::verify(&a, &mut out)?,
        Command::WriteLoad(a) => cli::write_load(&a, &mut out).map(drop)?,
    }
    Ok(())
}
