//! Harmony's task runner, run as `cargo xtask <task>` (alias in `.cargo/config.toml`).
//!
//! - `setup`: the Python environment of the interop tests (`.venv`, pinned), created when
//!   missing or stale; tells whether network namespace tests can run here.
//! - `ci`: setup, then format check, clippy with warnings denied, doc tests, then every test of the
//!   workspace (nextest when installed), including the replay of the fuzz corpus, then the
//!   Python package (crates/harmony-python) built with maturin and tested with pytest.
//! - `fuzz <target|all> [--seconds N]`: a real libFuzzer run through cargo-fuzz, on stable Rust.
//! - `fuzz-seed`: rewrites the seed inputs of `fuzz/corpus/`.
//! - `bench [wire|zmtp|zre|curve|pipeline|python|files|services|all]`: criterion benchmarks and a summary table.

mod bench;
mod ci;
mod fuzz;
mod python;
mod run;
mod setup;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Harmony's task runner.
#[derive(Debug, Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about,
    disable_version_flag = true
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Everything CI checks: setup, fmt, clippy (-D warnings), doc tests, all tests incl. fuzz corpus replay, pytest.
    Ci {
        /// Use `cargo test` even when cargo-nextest is installed.
        #[arg(long)]
        no_nextest: bool,
    },
    /// Makes `.venv` (pinned pyzmq and zeromq-pyre) ready for the interop tests; checks namespaces.
    Setup,
    /// Runs libFuzzer on one target (or `all`, one after another) through cargo-fuzz.
    Fuzz {
        /// A target name (see `--list`), or `all`.
        #[arg(required_unless_present = "list")]
        target: Option<String>,
        /// How long to fuzz each target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Sanitizer: `none` (plain stable build) or `address`.
        #[arg(long, default_value = "none")]
        sanitizer: String,
        /// Lists the targets and exits.
        #[arg(long)]
        list: bool,
    },
    /// Rewrites the seed inputs `fuzz/corpus/<target>/seed-*` from the codecs themselves.
    FuzzSeed,
    /// Runs a benchmark family (default `all`) and prints a summary table.
    Bench {
        /// One of `wire`, `zmtp`, `zre`, `curve`, `python`, `all`.
        #[arg(default_value = "all")]
        family: String,
        /// Shorter measurement (criterion `--quick`-like settings) for a smoke run.
        #[arg(long)]
        quick: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run().map(|_| ()),
        Task::Ci { no_nextest } => ci::run(!no_nextest),
        Task::Fuzz {
            target,
            seconds,
            sanitizer,
            list,
        } => {
            if list {
                fuzz::list()
            } else {
                fuzz::run(target.as_deref().unwrap_or("all"), seconds, &sanitizer)
            }
        }
        Task::FuzzSeed => fuzz::seed(),
        Task::Bench { family, quick } => bench::run(&family, quick),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
