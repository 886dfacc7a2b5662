//! The `zmtp` family: throughput (64 B, 1 KiB, 64 KiB) and round-trip latency over loopback,
//! measured in one run for Harmony (the perf tools in `crates/harmony-zmtp/examples/`), libzmq
//! (`benches/zmtp/driver.c`, built here against the system libzmq) and raw framed TCP (the same
//! driver), printed as a table with ratios. Each figure is the median of three runs.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::BenchOpts;
use crate::run::{cargo, root, step, target_dir, Result};

/// Who is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Harmony,
    Libzmq,
    RawTcp,
}

impl Side {
    const ALL: [Self; 3] = [Self::Harmony, Self::Libzmq, Self::RawTcp];

    /// The command for one perf tool (`local_thr`, `remote_lat`, ...).
    /// The `curve` family sets `ZMTP_PERF_CURVE` on it; here it is NULL, whatever the caller's
    /// environment says.
    pub(super) fn tool(self, tools: &Tools, name: &str) -> Command {
        let mut c = self.command(tools, name);
        c.env_remove("ZMTP_PERF_CURVE");
        c
    }

    fn command(self, tools: &Tools, name: &str) -> Command {
        match self {
            Self::Harmony => Command::new(tools.examples.join(name)),
            Self::Libzmq | Self::RawTcp => {
                let mut c = Command::new(&tools.driver);
                c.args([if self == Self::Libzmq { "zmq" } else { "tcp" }, name]);
                c
            }
        }
    }
}

/// Where the perf tools are: Harmony's examples directory and the C driver.
pub(super) struct Tools {
    pub(super) examples: PathBuf,
    pub(super) driver: PathBuf,
}

impl Tools {
    /// Builds the Harmony perf tools (release) and the C driver.
    pub(super) fn build() -> Result<Self> {
        step(
            "build the Harmony perf tools",
            cargo().args(["build", "--release", "-p", "harmony-zmtp", "--examples"]),
        )?;
        Ok(Self {
            examples: target_dir().join("release/examples"),
            driver: build_driver()?,
        })
    }
}

/// Builds everything, measures, prints the table.
pub(super) fn run(opts: &BenchOpts) -> Result<()> {
    let tools = Tools::build()?;
    let scale = if opts.quick { 10 } else { 1 };
    let sizes: [(usize, u64); 3] = [
        (64, 10_000_000 / scale),
        (1024, 2_000_000 / scale),
        (65536, 100_000 / scale),
    ];
    let roundtrips = 20_000 / scale;

    let mut rows = Vec::new();
    for (size, count) in sizes {
        let mut figures = [0.0; 3];
        for (i, side) in Side::ALL.iter().enumerate() {
            figures[i] = median(|| throughput(&|n| side.tool(&tools, n), size, count))?;
            eprintln!("    {side:?} {size} B: {:.0} msg/s", figures[i]);
        }
        rows.push((size, figures));
    }
    let mut latency = [0.0; 3];
    for (i, side) in Side::ALL.iter().enumerate() {
        latency[i] = median(|| self::latency(&|n| side.tool(&tools, n), 64, roundtrips))?;
        eprintln!("    {side:?} latency: {:.2} us", latency[i]);
    }
    print_table(&rows, &latency);
    Ok(())
}

/// Compiles the C driver against libzmq, installing `libzmq3-dev` from Debian if it is missing.
fn build_driver() -> Result<PathBuf> {
    if !Path::new("/usr/include/zmq.h").exists() {
        step(
            "install libzmq3-dev",
            Command::new("apt-get").args(["install", "-y", "-q", "libzmq3-dev"]),
        )?;
    }
    let out = target_dir().join("release/zmtp-bench-driver");
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let src = root().join("benches/zmtp/driver.c");
    step(
        "build the libzmq / raw TCP driver",
        Command::new("cc")
            .args(["-O2", "-Wall", "-o"])
            .arg(&out)
            .arg(&src)
            .arg("-lzmq"),
    )?;
    Ok(out)
}

/// A free loopback port (closed again, then used by the tool that binds).
fn free_endpoint() -> Result<String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    Ok(format!("tcp://127.0.0.1:{port}"))
}

fn spawn(mut cmd: Command, ep: &str, size: usize, count: u64) -> Result<Child> {
    cmd.args([ep, &size.to_string(), &count.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))
}

/// Waits for a tool, returning its output; kills it after `limit`.
fn finish(mut child: Child, limit: Duration) -> Result<String> {
    let start = std::time::Instant::now();
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => {
                let out = child.wait_with_output().map_err(|e| e.to_string())?;
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                return if status.success() {
                    Ok(text)
                } else {
                    Err(format!("perf tool failed ({status}): {text}"))
                };
            }
            None if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("perf tool timed out".into());
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The number after `label` in a perf tool's output.
fn figure(output: &str, label: &str) -> Result<f64> {
    output
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no {label:?} in {output:?}"))
}

/// A perf tool's command by name (`local_thr`, `remote_lat`, ...), for one side measured.
pub(super) type ToolFn<'a> = &'a dyn Fn(&str) -> Command;

/// Messages per second for `count` messages of `size` bytes, PUSH -> PULL (or raw TCP).
pub(super) fn throughput(tool: ToolFn<'_>, size: usize, count: u64) -> Result<f64> {
    let ep = free_endpoint()?;
    let local = spawn(tool("local_thr"), &ep, size, count)?;
    let remote = spawn(tool("remote_thr"), &ep, size, count)?;
    let limit = Duration::from_secs(120);
    let out = finish(local, limit)?;
    finish(remote, limit)?;
    figure(&out, "mean throughput: ")
}

/// One-way latency in microseconds (half the mean round trip), as libzmq's `remote_lat` prints.
pub(super) fn latency(tool: ToolFn<'_>, size: usize, roundtrips: u64) -> Result<f64> {
    let ep = free_endpoint()?;
    let local = spawn(tool("local_lat"), &ep, size, roundtrips)?;
    let remote = spawn(tool("remote_lat"), &ep, size, roundtrips)?;
    let limit = Duration::from_secs(120);
    let out = finish(remote, limit)?;
    finish(local, limit)?;
    figure(&out, "average latency: ")
}

/// The median of three runs.
pub(super) fn median(mut f: impl FnMut() -> Result<f64>) -> Result<f64> {
    let mut v = [f()?, f()?, f()?];
    v.sort_by(f64::total_cmp);
    Ok(v[1])
}

/// Messages per second as M/s, or as GB/s for large messages.
pub(super) fn rate(size: usize, msgs: f64) -> String {
    if size >= 16 << 10 {
        format!("{:.2} GB/s", msgs * size as f64 / 1e9)
    } else {
        format!("{:.2} M/s", msgs / 1e6)
    }
}

fn print_table(rows: &[(usize, [f64; 3])], latency: &[f64; 3]) {
    println!("\nZMTP over loopback, median of 3 (Harmony vs libzmq vs raw framed TCP)");
    println!(
        "  {:<22} {:>12} {:>12} {:>12} {:>10} {:>10}  target",
        "", "Harmony", "libzmq", "raw TCP", "H/libzmq", "H/raw"
    );
    for (size, [h, z, t]) in rows {
        let (label, target) = match size {
            64 => ("throughput 64 B", ">= 2x libzmq"),
            1024 => ("throughput 1 KiB", ">= 3x libzmq"),
            _ => ("throughput 64 KiB", ">= 0.9x raw"),
        };
        println!(
            "  {:<22} {:>12} {:>12} {:>12} {:>9.2}x {:>9.2}x  {target}",
            label,
            rate(*size, *h),
            rate(*size, *z),
            rate(*size, *t),
            h / z,
            h / t,
        );
    }
    let [h, z, t] = latency;
    println!(
        "  {:<22} {:>9.1} us {:>9.1} us {:>9.1} us {:>9.2}x {:>9.2}x  <= libzmq",
        "latency 64 B (one way)",
        h,
        z,
        t,
        h / z,
        h / t
    );
}
