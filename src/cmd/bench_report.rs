//! `metricsstream bench-report`: turns the JSON `scripts/bench.sh` writes
//! into a Markdown table and an SVG chart (plotters, SVG backend: no font
//! files needed, text is left to the viewer). Only formatting: every figure
//! comes from the input, ratios are computed from the two measured values.

use anyhow::Context;
use clap::Args;
use plotters::prelude::*;
use serde::Deserialize;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct BenchReportArgs {
    /// The run's JSON (bench/results/<date>.json).
    #[arg(long)]
    input: PathBuf,
    /// Write the SVG chart here.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Write the Markdown tables here.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

/// One system against its peer, measured in the same run.
#[derive(Deserialize, Debug)]
pub struct Comparison {
    pub name: String,
    pub unit: String,
    pub ours_label: String,
    pub ours: Option<f64>,
    pub peer_label: String,
    pub peer: Option<f64>,
    /// The goal for ours / peer.
    pub goal: Option<f64>,
    #[serde(default)]
    pub note: String,
    /// Why it was not measured (then `ours`/`peer` are null).
    pub skipped: Option<String>,
}

impl Comparison {
    fn ratio(&self) -> Option<f64> {
        match (self.ours, self.peer) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        }
    }
}

/// One HTTP load run (loadgen in-process, or wrk over veth).
#[derive(Deserialize, Debug)]
pub struct HttpRow {
    pub system: String,
    pub client: String,
    pub connections: u64,
    pub req_per_s: f64,
    pub records_per_s: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub socket_errors: Option<u64>,
    pub non_2xx: Option<u64>,
}

#[derive(Deserialize, Debug)]
pub struct BenchRun {
    pub date: String,
    #[serde(default)]
    pub commit: String,
    #[serde(default)]
    pub nproc: u64,
    #[serde(default)]
    pub load_start: String,
    #[serde(default)]
    pub load_end: String,
    #[serde(default)]
    pub quick: bool,
    pub comparisons: Vec<Comparison>,
    #[serde(default)]
    pub http: Vec<HttpRow>,
    #[serde(default)]
    pub notes: Vec<String>,
}

fn num(v: f64) -> String {
    if v >= 1000.0 {
        // Thousands separated for readability: 12,345.
        let s = format!("{:.0}", v);
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".into(), f)
}

/// The Markdown tables of a run.
pub fn markdown(run: &BenchRun) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Run {} (commit {}{}), {} CPUs, load average at start / end: {} / {}.\n",
        run.date,
        if run.commit.is_empty() { "?" } else { &run.commit },
        if run.quick { ", **--quick smoke run: short, not for quoting**" } else { "" },
        run.nproc,
        run.load_start,
        run.load_end
    );
    md.push_str("| comparison | metricsstream | peer | ratio | goal |\n|---|---:|---:|---:|---:|\n");
    for c in &run.comparisons {
        let (ours, peer) = match &c.skipped {
            Some(why) => (format!("skipped: {why}"), "-".to_string()),
            None => (
                format!("{} {} ({})", opt(c.ours, num), c.unit, c.ours_label),
                format!("{} {} ({})", opt(c.peer, num), c.unit, c.peer_label),
            ),
        };
        let _ = writeln!(
            md,
            "| {}{} | {ours} | {peer} | {} | {} |",
            c.name,
            if c.note.is_empty() { String::new() } else { format!(" ({})", c.note) },
            opt(c.ratio(), |r| format!("{r:.2}x")),
            opt(c.goal, |g| format!(">= {g}x")),
        );
    }
    if !run.http.is_empty() {
        md.push_str(
            "\n| HTTP system | client | connections | req/s | records/s | p50 | p99 | socket errors | non-2xx |\n",
        );
        md.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for h in &run.http {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                h.system,
                h.client,
                h.connections,
                num(h.req_per_s),
                opt(h.records_per_s, num),
                opt(h.p50_ms, |v| format!("{v:.2} ms")),
                opt(h.p99_ms, |v| format!("{v:.2} ms")),
                h.socket_errors.map_or("-".into(), |v| v.to_string()),
                h.non_2xx.map_or("-".into(), |v| v.to_string()),
            );
        }
    }
    for n in &run.notes {
        let _ = writeln!(md, "\n{n}");
    }
    md
}

/// A tick value with at most two decimals and no trailing zeros (0.2, 1, 2.5).
fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Rows of our system (bench-http.sh calls it "appliance"), as opposed to peers.
fn is_ours(system: &str) -> bool {
    ["metricsstream", "appliance", "serve"].iter().any(|p| system.starts_with(p))
}

const OURS: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const PEER: RGBColor = RGBColor(0xbb, 0xbb, 0xbb);
const GOAL: RGBColor = RGBColor(0xd6, 0x27, 0x28);

/// Draws the chart: left, metricsstream / peer per comparison (log scale,
/// 1.0 = parity, goals marked); right, HTTP req/s per run.
pub fn svg(run: &BenchRun, path: &std::path::Path) -> anyhow::Result<()> {
    let measured: Vec<&Comparison> = run.comparisons.iter().filter(|c| c.ratio().is_some()).collect();
    let rows = measured.len().max(run.http.len()).max(1);
    let height = 120 + 62 * rows as u32;
    let root = SVGBackend::new(path, (1200, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "metricsstream one-run benchmark, {} ({} CPUs, load {} -> {})",
        run.date, run.nproc, run.load_start, run.load_end
    );
    let root = root.titled(&title, ("sans-serif", 18))?;
    let (left, right) = root.split_horizontally(640);

    // Left: ratios on a log axis, so 0.1x and 10x are equally far from parity.
    let lo =
        measured.iter().filter_map(|c| c.ratio()).chain(measured.iter().filter_map(|c| c.goal)).fold(1.0f64, f64::min);
    let hi =
        measured.iter().filter_map(|c| c.ratio()).chain(measured.iter().filter_map(|c| c.goal)).fold(1.0f64, f64::max);
    let (x0, x1) = ((lo / 2.0).max(1e-3), hi * 2.0);
    let n = measured.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&left)
        .caption("metricsstream / peer, same run (log scale; red = goal)", ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(30)
        .build_cartesian_2d((x0..x1).log_scale(), 0f64..n)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc("ratio")
        .x_labels(6)
        .x_label_formatter(&|v| format!("{}x", trim(*v)))
        .draw()?;
    chart.draw_series(std::iter::once(PathElement::new(vec![(1.0, 0.0), (1.0, n)], BLACK.stroke_width(1))))?;
    for (i, c) in measured.iter().enumerate() {
        let y = n - 1.0 - i as f64;
        let r = c.ratio().unwrap_or(1.0);
        chart.draw_series(std::iter::once(Rectangle::new([(x0, y + 0.12), (r, y + 0.52)], OURS.filled())))?;
        if let Some(g) = c.goal {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(g, y + 0.05), (g, y + 0.6)],
                GOAL.stroke_width(3),
            )))?;
        }
        let label = format!("{}: {:.2}x ({} vs {} {})", c.name, r, opt(c.ours, num), opt(c.peer, num), c.unit);
        chart.draw_series(std::iter::once(Text::new(label, (x0, y + 0.78), ("sans-serif", 13))))?;
    }

    // Right: HTTP req/s, loadgen in-process and wrk over veth.
    let m = run.http.len().max(1) as f64;
    let top = run.http.iter().map(|h| h.req_per_s).fold(1.0f64, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&right)
        .caption("HTTP req/s (one serve worker)", ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(30)
        .build_cartesian_2d(0f64..top, 0f64..m)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc("requests/s")
        .x_labels(5)
        .x_label_formatter(&|v| num(*v))
        .draw()?;
    for (i, h) in run.http.iter().enumerate() {
        let y = m - 1.0 - i as f64;
        let color = if is_ours(&h.system) { OURS } else { PEER };
        chart
            .draw_series(std::iter::once(Rectangle::new([(0.0, y + 0.12), (h.req_per_s, y + 0.52)], color.filled())))?;
        let label = format!(
            "{} <- {}, {} c: {} req/s, p99 {}",
            h.system,
            h.client,
            h.connections,
            num(h.req_per_s),
            opt(h.p99_ms, |v| format!("{v:.1} ms"))
        );
        chart.draw_series(std::iter::once(Text::new(label, (0.0, y + 0.78), ("sans-serif", 12))))?;
    }
    root.present()?;
    Ok(())
}

pub fn run(args: BenchReportArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.input).with_context(|| format!("cannot read {}", args.input.display()))?;
    let run: BenchRun =
        serde_json::from_str(&text).with_context(|| format!("{} is not a bench run", args.input.display()))?;
    let md = markdown(&run);
    match &args.markdown {
        Some(path) => std::fs::write(path, &md).with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{md}"),
    }
    if let Some(path) = &args.svg {
        svg(&run, path).with_context(|| format!("cannot draw {}", path.display()))?;
    }
    Ok(())
}
