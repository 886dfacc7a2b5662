//! The `curve` family: what CURVE costs. Throughput (64 B, 1 KiB, 64 KiB, PUSH -> PULL) and
//! 64 B round-trip latency over loopback, measured in one run for Harmony NULL, Harmony CURVE
//! with each backend (libsodium, the default, and RustCrypto, pure Rust), libzmq NULL and libzmq
//! CURVE, with the same perf tools as the `zmtp` family run with `ZMTP_PERF_CURVE=1` (a fixed
//! test key pair on both sides). Each figure is the median of three.

use std::path::PathBuf;
use std::process::Command;

use super::zmtp::{latency, median, rate, throughput, Side, Tools};
use super::BenchOpts;
use crate::run::{cargo, step, target_dir, Result};

/// Which build of the Harmony perf tools a column runs.
#[derive(Clone, Copy)]
enum Build {
    Default,
    PureRust,
}

/// The five configurations measured, in table order.
const COLUMNS: [(Side, Build, bool, &str); 5] = [
    (Side::Harmony, Build::Default, false, "Harmony NULL"),
    (Side::Harmony, Build::Default, true, "H CURVE sodium"),
    (Side::Harmony, Build::PureRust, true, "H CURVE Rust"),
    (Side::Libzmq, Build::Default, false, "libzmq NULL"),
    (Side::Libzmq, Build::Default, true, "libzmq CURVE"),
];

/// Builds the perf tools without default features (RustCrypto CURVE) and copies them aside;
/// returns their directory.
fn build_pure_rust() -> Result<PathBuf> {
    step(
        "build the Harmony perf tools with pure-Rust CURVE",
        cargo().args([
            "build",
            "--release",
            "-p",
            "harmony-zmtp",
            "--examples",
            "--no-default-features",
        ]),
    )?;
    let dir = target_dir().join("release/curve-pure-rust");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for name in ["local_thr", "remote_thr", "local_lat", "remote_lat"] {
        let from = target_dir().join("release/examples").join(name);
        std::fs::copy(&from, dir.join(name)).map_err(|e| format!("{}: {e}", from.display()))?;
    }
    Ok(dir)
}

fn tool(tools: [&Tools; 2], (side, build, curve): (Side, Build, bool), name: &str) -> Command {
    let tools = match build {
        Build::Default => tools[0],
        Build::PureRust => tools[1],
    };
    let mut c = side.tool(tools, name);
    c.env("ZMTP_PERF_CURVE", if curve { "1" } else { "0" });
    c
}

/// Builds the tools (pure Rust first, copied aside, then the default), measures, prints.
pub(super) fn run(opts: &BenchOpts) -> Result<()> {
    let pure_rust = build_pure_rust()?;
    let default = Tools::build()?;
    let pure = Tools {
        examples: pure_rust,
        driver: default.driver.clone(),
    };
    let tools = [&default, &pure];
    let scale = if opts.quick { 10 } else { 1 };
    let sizes: [(usize, u64); 3] = [
        (64, 2_000_000 / scale),
        (1024, 500_000 / scale),
        (65536, 20_000 / scale),
    ];
    let roundtrips = 10_000 / scale;

    let mut rows = Vec::new();
    for (size, count) in sizes {
        let mut figures = [0.0; 5];
        for (i, &(side, build, curve, name)) in COLUMNS.iter().enumerate() {
            let f = |n: &str| tool(tools, (side, build, curve), n);
            figures[i] = median(|| throughput(&f, size, count))?;
            eprintln!("    {name} {size} B: {:.0} msg/s", figures[i]);
        }
        rows.push((size, figures));
    }
    let mut lat = [0.0; 5];
    for (i, &(side, build, curve, name)) in COLUMNS.iter().enumerate() {
        let f = |n: &str| tool(tools, (side, build, curve), n);
        lat[i] = median(|| latency(&f, 64, roundtrips))?;
        eprintln!("    {name} latency: {:.2} us", lat[i]);
    }
    print_table(&rows, &lat);
    Ok(())
}

fn print_table(rows: &[(usize, [f64; 5])], lat: &[f64; 5]) {
    println!(
        "\nCURVE vs NULL over loopback, median of 3 (Harmony with both CURVE backends, libzmq)"
    );
    print!("  {:<22}", "");
    for (_, _, _, name) in COLUMNS {
        print!(" {name:>14}");
    }
    println!(" {:>8} {:>8} {:>8}", "HS/HN", "HS/ZC", "HR/ZC");
    for (size, [hn, hs, hr, zn, zc]) in rows {
        let label = match size {
            64 => "throughput 64 B",
            1024 => "throughput 1 KiB",
            _ => "throughput 64 KiB",
        };
        print!("  {label:<22}");
        for v in [hn, hs, hr, zn, zc] {
            print!(" {:>14}", rate(*size, *v));
        }
        println!(" {:>7.2}x {:>7.2}x {:>7.2}x", hs / hn, hs / zc, hr / zc);
    }
    let [hn, hs, hr, zn, zc] = lat;
    print!("  {:<22}", "latency 64 B (one way)");
    for v in [hn, hs, hr, zn, zc] {
        print!(" {:>11.1} us", v);
    }
    println!(" {:>7.2}x {:>7.2}x {:>7.2}x", hs / hn, hs / zc, hr / zc);
    println!("  (HS: Harmony CURVE with libsodium, the default; HR: with RustCrypto, pure Rust;");
    println!("   HN: Harmony NULL; ZC: libzmq CURVE. Throughput ratios above 1 are better,");
    println!("   latency ratios below 1 are better)");
}
