//! The `wire` family: codec throughput of harmony-wire (ZMTP frame streams, ZRE WHISPER/SHOUT).

use super::{cargo_bench, print_table, BenchOpts};
use crate::run::Result;

/// Runs `benches/benches/wire.rs` and prints its table.
pub(super) fn run(opts: &BenchOpts) -> Result<()> {
    let results = cargo_bench("harmony-benches", "wire", opts)?;
    if results.is_empty() {
        return Err("the wire bench wrote no results".into());
    }
    print_table(
        "wire: harmony-wire codecs, one core, no I/O (median per iteration)",
        &results,
    );
    Ok(())
}
