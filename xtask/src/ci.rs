//! `cargo xtask ci`: what CI runs, in the order that fails fastest on a cheap mistake.

use std::time::Duration;

use crate::run::{cargo, has_cargo_subcommand, step, Result};
use crate::setup;

/// Runs every step even after a failure, so one run shows all problems; fails if any failed.
///
/// First `setup` makes the Python environment of the interop tests ready (see `setup.rs`);
/// where network namespaces cannot be made, the tests named `*netns*` are left out and the
/// summary says so.
pub(crate) fn run(use_nextest: bool) -> Result<()> {
    let nextest = use_nextest && has_cargo_subcommand("nextest");
    let mut results: Vec<(&str, std::result::Result<Duration, String>)> = Vec::new();
    eprintln!("\n==> setup");
    let started = std::time::Instant::now();
    let netns_skipped = match setup::run() {
        Ok(ready) => {
            results.push(("setup", Ok(started.elapsed())));
            ready.netns
        }
        Err(e) => {
            eprintln!("{e}");
            results.push(("setup", Err(e)));
            setup::netns_missing()
        }
    };
    let mut steps: Vec<(&str, std::process::Command)> = Vec::new();

    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    steps.push(("format", fmt));

    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    steps.push(("clippy", clippy));

    let mut doc = cargo();
    doc.args(["test", "--workspace", "--doc"]);
    steps.push(("doc tests", doc));

    // The fuzz corpus replay is an ordinary test of harmony-wire (tests/fuzz_corpus.rs).
    let mut tests = cargo();
    if nextest {
        tests.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
        if netns_skipped.is_some() {
            tests.args(["-E", "not test(/netns/)"]);
        }
    } else {
        tests.args(["test", "--workspace", "--no-fail-fast"]);
        if netns_skipped.is_some() {
            tests.args(["--", "--skip", "netns"]);
        }
    }
    steps.push(("tests", tests));

    // CURVE again with the pure-Rust backend (RustCrypto instead of the default libsodium):
    // its unit tests and the CURVE interop tests against libzmq.
    let mut pure = cargo();
    let crates = ["-p", "harmony-security", "-p", "harmony-zmtp"];
    if nextest {
        pure.args(["nextest", "run", "--no-fail-fast"]);
    } else {
        pure.args(["test", "--no-fail-fast"]);
    }
    pure.args(crates).args(["--no-default-features", "curve"]);
    steps.push(("pure CURVE", pure));

    for (title, mut cmd) in steps {
        let outcome = step(title, &mut cmd);
        results.push((title, outcome));
    }
    // The Python package: built with maturin, tested with pytest (see python.rs).
    results.push(("python", crate::python::ci(netns_skipped.is_some())));

    eprintln!("\nci summary:");
    let mut failed = 0;
    for (title, outcome) in &results {
        match outcome {
            Ok(took) => eprintln!("  ok      {title:<10} {:>7.1} s", took.as_secs_f64()),
            Err(e) => {
                failed += 1;
                eprintln!("  FAILED  {title:<10} {e}");
            }
        }
    }
    if let Some(why) = &netns_skipped {
        eprintln!("  SKIPPED the network namespace tests (*netns*): {why}");
    }
    if failed == 0 {
        eprintln!("ci: all {} steps ok", results.len());
        Ok(())
    } else {
        Err(format!("ci: {failed} of {} steps failed", results.len()))
    }
}
