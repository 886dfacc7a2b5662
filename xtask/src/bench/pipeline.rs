//! The `pipeline` family: tasks per second through 4 in-process workers beside a bare PUSH/PULL
//! ventilator-workers-sink measured in the same run, and the cost of recovering from a worker
//! killed half-way through a batch (the program is
//! `crates/harmony-pipeline/examples/bench_pipeline.rs`; loopback only).

use super::BenchOpts;
use crate::run::{cargo, step, Result};

/// Builds and runs the pipeline benchmark program in release mode; it prints its own table.
pub(super) fn run(opts: &BenchOpts) -> Result<()> {
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--release",
        "-p",
        "harmony-pipeline",
        "--example",
        "bench_pipeline",
        "--",
    ]);
    if opts.quick {
        cmd.args(["--tasks", "20000", "--recovery-tasks", "2000"]);
    }
    step("bench_pipeline", &mut cmd)?;
    Ok(())
}
