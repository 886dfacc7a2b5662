//! The `services` family: log events/s from 10 publishers into one collector, tick jitter at
//! 100 Hz, bridge events/s to a WebSocket client, each beside a baseline from the same run
//! (the program is `crates/harmony-services/examples/bench_services.rs`; loopback only).

use super::BenchOpts;
use crate::run::{cargo, step, Result};

/// Builds and runs the services benchmark program in release mode; it prints its own table.
pub(super) fn run(opts: &BenchOpts) -> Result<()> {
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--release",
        "-p",
        "harmony-services",
        "--example",
        "bench_services",
        "--",
    ]);
    if opts.quick {
        cmd.args([
            "--log-events",
            "5000",
            "--ticks",
            "100",
            "--messages",
            "5000",
        ]);
    }
    step("bench_services", &mut cmd)?;
    Ok(())
}
