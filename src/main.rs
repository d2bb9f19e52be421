//! The `metricsstream` command line.

mod cmd;

use clap::{Parser, Subcommand};
use metricsstream::writer::cli;
use std::process::ExitCode;

/// Kernel-bypass metrics-ingestion appliance: DPDK poll-mode workers, userspace
/// TCP/HTTP, InfluxDB line protocol / JSON / StatsD, lock-free per-client
/// limits, durable writer.
#[derive(Parser, Debug)]
#[command(name = "metricsstream", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the write APIs (HTTP/1.1 on a userspace TCP stack, UDP line protocol and StatsD)
    /// on a DPDK port, persisting what is accepted.
    Serve(cmd::serve::ServeArgs),
    /// Replay a pcap through DPDK at full speed and report Mpps and per-class counts
    /// (no NIC, no hugepages by default).
    Replay(cmd::replay::ReplayArgs),
    /// Receive, classify and count on any DPDK port (a bound NIC, virtio, vhost, AF_PACKET) and report Mpps.
    Rx(cmd::rx::RxArgs),
    /// HTTP load generator on DPDK: N live TCP connections (own userspace stack) replaying a
    /// body or a pcap's HTTP requests closed-loop; req/s, latency percentiles, status classes.
    Loadgen(cmd::loadgen::LoadgenArgs),
    /// In-process HTTP benchmark: serve's worker and loadgen's on two ports joined by rings.
    Bench(cmd::bench::BenchArgs),
    /// Render a `scripts/bench.sh` run (JSON) as Markdown tables and an SVG chart.
    BenchReport(cmd::bench_report::BenchReportArgs),
    /// Write synthetic metric traffic (UDP line protocol, StatsD, HTTP conversations) to a pcap.
    GenPcap(cmd::gen_pcap::GenPcapArgs),
    /// Write one request body of synthetic samples (Prometheus remote_write) to a file.
    GenBody(cmd::gen_body::GenBodyArgs),
    /// Print the log's records (line protocol or JSON), in log order.
    Dump(cli::DumpArgs),
    /// Check every frame of the log; exit non-zero on corruption.
    Verify(cli::VerifyArgs),
    /// Push synthetic records through the writer (crash test, writer benchmark).
    WriteLoad(cli::WriteLoadArgs),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::Replay(args) => cmd::replay::run(args),
        Command::Rx(args) => cmd::rx::run(args),
        Command::Loadgen(args) => cmd::loadgen::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::BenchReport(args) => cmd::bench_report::run(args),
        Command::GenPcap(args) => cmd::gen_pcap::run(args),
        Command::GenBody(args) => cmd::gen_body::run(args),
        Command::Dump(args) => cli::dump(&args, &mut std::io::stdout().lock()).map(drop).map_err(Into::into),
        Command::Verify(args) => cli::verify(&args, &mut std::io::stdout().lock()).map_err(Into::into),
        Command::WriteLoad(args) => cli::write_load(&args, &mut std::io::stdout().lock()).map(drop).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes.
            let causes: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", causes.join(": "));
            ExitCode::FAILURE
        }
    }
}
