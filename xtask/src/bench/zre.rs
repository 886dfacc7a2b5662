//! The `zre` family: whisper throughput and shout fan-out to 10 nodes beside raw ZMTP DEALER ->
//! ROUTER (median of alternating rounds, CPU per delivery; one table pinned to CPU 0, one on
//! every CPU), whisper round trip, time until 50
//! nodes see each other by beacons and by gossip, election time
//! (the program is `crates/harmony/examples/bench_zre.rs`; loopback only).

use super::BenchOpts;
use crate::run::{cargo, step, Result};

/// Builds and runs the ZRE benchmark program in release mode; it prints its own table.
pub(super) fn run(opts: &BenchOpts) -> Result<()> {
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--release",
        "-p",
        "harmony",
        "--example",
        "bench_zre",
        "--",
    ]);
    if opts.quick {
        cmd.args(["--messages", "20000", "--rounds", "3", "--nodes", "20"]);
    }
    step("bench_zre", &mut cmd)?;
    Ok(())
}
