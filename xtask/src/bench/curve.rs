//! The `curve` family: what CURVE costs. Throughput (64 B, 1 KiB, 64 KiB, PUSH -> PULL) and
//! 64 B round-trip latency over loopback, measured in one run for Harmony NULL, Harmony CURVE,
//! libzmq NULL and libzmq CURVE, with the same perf tools as the `zmtp` family run with
//! `ZMTP_PERF_CURVE=1` (a fixed test key pair on both sides). Each figure is the median of three.

use std::process::Command;

use super::zmtp::{latency, median, rate, throughput, Side, Tools};
use super::BenchOpts;
use crate::run::Result;

/// The four configurations measured, in table order.
const COLUMNS: [(Side, bool, &str); 4] = [
    (Side::Harmony, false, "Harmony NULL"),
    (Side::Harmony, true, "Harmony CURVE"),
    (Side::Libzmq, false, "libzmq NULL"),
    (Side::Libzmq, true, "libzmq CURVE"),
];

fn tool(tools: &Tools, side: Side, curve: bool, name: &str) -> Command {
    let mut c = side.tool(tools, name);
    c.env("ZMTP_PERF_CURVE", if curve { "1" } else { "0" });
    c
}

/// Builds the tools, measures, prints the table.
pub(super) fn run(opts: &BenchOpts) -> Result<()> {
    let tools = Tools::build()?;
    let scale = if opts.quick { 10 } else { 1 };
    let sizes: [(usize, u64); 3] = [
        (64, 2_000_000 / scale),
        (1024, 500_000 / scale),
        (65536, 20_000 / scale),
    ];
    let roundtrips = 10_000 / scale;

    let mut rows = Vec::new();
    for (size, count) in sizes {
        let mut figures = [0.0; 4];
        for (i, (side, curve, name)) in COLUMNS.iter().enumerate() {
            let f = |n: &str| tool(&tools, *side, *curve, n);
            figures[i] = median(|| throughput(&f, size, count))?;
            eprintln!("    {name} {size} B: {:.0} msg/s", figures[i]);
        }
        rows.push((size, figures));
    }
    let mut lat = [0.0; 4];
    for (i, (side, curve, name)) in COLUMNS.iter().enumerate() {
        let f = |n: &str| tool(&tools, *side, *curve, n);
        lat[i] = median(|| latency(&f, 64, roundtrips))?;
        eprintln!("    {name} latency: {:.2} us", lat[i]);
    }
    print_table(&rows, &lat);
    Ok(())
}

fn print_table(rows: &[(usize, [f64; 4])], lat: &[f64; 4]) {
    println!("\nCURVE vs NULL over loopback, median of 3 (Harmony and libzmq)");
    print!("  {:<22}", "");
    for (_, _, name) in COLUMNS {
        print!(" {name:>13}");
    }
    println!(" {:>10} {:>10}", "HC/HN", "HC/ZC");
    for (size, [hn, hc, zn, zc]) in rows {
        let label = match size {
            64 => "throughput 64 B",
            1024 => "throughput 1 KiB",
            _ => "throughput 64 KiB",
        };
        print!("  {label:<22}");
        for v in [hn, hc, zn, zc] {
            print!(" {:>13}", rate(*size, *v));
        }
        println!(" {:>9.2}x {:>9.2}x", hc / hn, hc / zc);
    }
    let [hn, hc, zn, zc] = lat;
    print!("  {:<22}", "latency 64 B (one way)");
    for v in [hn, hc, zn, zc] {
        print!(" {:>10.1} us", v);
    }
    println!(" {:>9.2}x {:>9.2}x", hc / hn, hc / zc);
    println!("  (HC/HN: Harmony CURVE / Harmony NULL; HC/ZC: Harmony CURVE / libzmq CURVE;");
    println!("   throughput ratios above 1 are better, latency ratios below 1 are better)");
}
