//! `cargo xtask bench [family]`: one module per benchmark family, each running its criterion
//! bench and printing a summary table from criterion's JSON results.
//!
//! A new family is a module file here plus one arm in [`family`].

mod curve;
mod files;
mod pipeline;
mod python;
mod services;
mod wire;
mod zmtp;
mod zre;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::run::{cargo, step, target_dir, Result};

/// A family's entry point: runs its benchmarks, prints its table.
type Family = fn(&BenchOpts) -> Result<()>;

/// Every family name `all` tries, in order; names without a module yet are skipped by `all`.
const FAMILIES: &[&str] = &[
    "wire", "zmtp", "zre", "curve", "pipeline", "python", "files", "services",
];

/// The module that implements a family.
fn family(name: &str) -> Option<Family> {
    Some(match name {
        "wire" => wire::run,
        "zmtp" => zmtp::run,
        "zre" => zre::run,
        "curve" => curve::run,
        "files" => files::run,
        "pipeline" => pipeline::run,
        "python" => python::run,
        "services" => services::run,
        _ => return None,
    })
}

/// Options every family gets.
#[derive(Debug, Clone)]
pub(crate) struct BenchOpts {
    /// Short measurement for a smoke run.
    pub(crate) quick: bool,
}

/// Runs one family, or each that exists for `all`.
pub(crate) fn run(name: &str, quick: bool) -> Result<()> {
    let opts = BenchOpts { quick };
    if name == "all" {
        let mut ran = 0;
        for fam in FAMILIES {
            if let Some(f) = family(fam) {
                f(&opts)?;
                ran += 1;
            } else {
                eprintln!("bench: family {fam:?} has no benchmarks yet, skipped");
            }
        }
        return if ran > 0 {
            Ok(())
        } else {
            Err("no benchmark family exists".into())
        };
    }
    match family(name) {
        Some(f) => f(&opts),
        None if FAMILIES.contains(&name) => {
            Err(format!("benchmark family {name:?} has no benchmarks yet"))
        }
        None => Err(format!(
            "unknown benchmark family {name:?}; one of: {}, all",
            FAMILIES.join(", ")
        )),
    }
}

/// Where criterion keeps its results for this run.
fn criterion_home() -> PathBuf {
    target_dir().join("criterion")
}

/// Runs `cargo bench -p <package> --bench <bench>` and returns the results it wrote.
pub(crate) fn cargo_bench(package: &str, bench: &str, opts: &BenchOpts) -> Result<Vec<Measured>> {
    let started = SystemTime::now();
    let mut cmd = cargo();
    cmd.env("CRITERION_HOME", criterion_home())
        .args(["bench", "-p", package, "--bench", bench, "--"]);
    if opts.quick {
        cmd.args(["--warm-up-time", "1", "--measurement-time", "2"]);
    }
    step(&format!("cargo bench {bench}"), &mut cmd)?;
    let mut found = Vec::new();
    collect(&criterion_home(), started, &mut found);
    found.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(found)
}

/// One benchmark's result: median time per iteration and what one iteration processed.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    /// Criterion's full id, `group/function/parameter`.
    pub(crate) id: String,
    /// Median nanoseconds per iteration.
    pub(crate) median_ns: f64,
    /// Elements (messages) per iteration, when declared.
    pub(crate) elements: Option<u64>,
    /// Bytes per iteration, when declared.
    pub(crate) bytes: Option<u64>,
}

impl Measured {
    /// Elements per second.
    pub(crate) fn elements_per_s(&self) -> Option<f64> {
        self.elements
            .map(|n| n as f64 * 1e9 / self.median_ns.max(f64::MIN_POSITIVE))
    }

    /// Bytes per second.
    pub(crate) fn bytes_per_s(&self) -> Option<f64> {
        self.bytes
            .map(|n| n as f64 * 1e9 / self.median_ns.max(f64::MIN_POSITIVE))
    }
}

/// Finds every `new/benchmark.json` written since `since` and reads it with its estimates.
fn collect(dir: &Path, since: SystemTime, out: &mut Vec<Measured>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "new") {
                if let Some(m) = read_result(&path, since) {
                    out.push(m);
                }
            } else {
                collect(&path, since, out);
            }
        }
    }
}

fn read_result(new_dir: &Path, since: SystemTime) -> Option<Measured> {
    let estimates = new_dir.join("estimates.json");
    let fresh = fs::metadata(&estimates)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= since);
    if !fresh {
        return None;
    }
    let parse = |p: PathBuf| -> Option<serde_json::Value> {
        serde_json::from_str(&fs::read_to_string(p).ok()?).ok()
    };
    let bench = parse(new_dir.join("benchmark.json"))?;
    let est = parse(estimates)?;
    let median_ns = est["median"]["point_estimate"].as_f64()?;
    let through = &bench["throughput"];
    let (elements, bytes) = if let Some(eb) = through.get("ElementsAndBytes") {
        (eb["elements"].as_u64(), eb["bytes"].as_u64())
    } else {
        (
            through.get("Elements").and_then(|v| v.as_u64()),
            through
                .get("Bytes")
                .or_else(|| through.get("BytesDecimal"))
                .and_then(|v| v.as_u64()),
        )
    };
    Some(Measured {
        id: bench["full_id"].as_str()?.to_owned(),
        median_ns,
        elements,
        bytes,
    })
}

/// Prints results as a table: time per iteration, messages/s, bytes/s.
pub(crate) fn print_table(title: &str, results: &[Measured]) {
    println!("\n{title}");
    let width = results.iter().map(|m| m.id.len()).max().unwrap_or(9).max(9);
    println!(
        "  {:<width$} {:>12} {:>14} {:>12}",
        "benchmark", "time/iter", "messages/s", "bytes/s"
    );
    for m in results {
        println!(
            "  {:<width$} {:>12} {:>14} {:>12}",
            m.id,
            human_time(m.median_ns),
            m.elements_per_s().map_or("-".into(), human_count),
            m.bytes_per_s().map_or("-".into(), human_bytes),
        );
    }
}

fn human_time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} us", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

fn human_count(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2} M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

fn human_bytes(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else {
        format!("{:.1} kB", n / 1e3)
    }
}
