//! `cargo xtask fuzz`: real libFuzzer runs through cargo-fuzz, on the stable toolchain.
//!
//! cargo-fuzz asks for nightly only for `-Z` flags (sanitizers, and `-Zunstable-options`), so the
//! build runs with `RUSTC_BOOTSTRAP=1`; with `--sanitizer none` (the default) the instrumentation
//! is plain SanitizerCoverage. New inputs go to a scratch corpus under `fuzz/target/`, so the
//! committed `fuzz/corpus/<target>/` only grows by hand (or by crashes, copied in by this task).

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::run::{cargo, has_cargo_subcommand, root, step, Result};

/// The targets: one file per target in `fuzz/fuzz_targets/`.
fn targets() -> Result<Vec<String>> {
    let dir = root().join("fuzz/fuzz_targets");
    let mut names = Vec::new();
    for entry in fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|x| x == "rs") {
            if let Some(stem) = path.file_stem() {
                names.push(stem.to_string_lossy().into_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Prints the targets.
pub(crate) fn list() -> Result<()> {
    for name in targets()? {
        println!("{name}");
    }
    Ok(())
}

/// The crates whose ignored test `write_seed_corpus` (in `tests/fuzz_corpus.rs`) writes the same
/// seeds each time: from the codecs, and from file-transfer sessions. harmony-security's
/// (real CURVE handshakes, new keys each time) is run by hand.
const CORPUS_CRATES: [&str; 2] = ["harmony-wire", "harmony-files"];

/// Regenerates the seed corpus through the ignored tests that know how to make it.
pub(crate) fn seed() -> Result<()> {
    for krate in CORPUS_CRATES {
        let mut cmd = cargo();
        cmd.args([
            "test",
            "-p",
            krate,
            "--test",
            "fuzz_corpus",
            "--",
            "--ignored",
            "--exact",
            "write_seed_corpus",
        ]);
        step(&format!("write seed corpus ({krate})"), &mut cmd)?;
    }
    eprintln!("seeds written under fuzz/corpus/; commit them");
    Ok(())
}

/// What one fuzzing run did.
struct Outcome {
    target: String,
    runs: Option<u64>,
    rate: Option<u64>,
    corpus: Option<String>,
    crashes: Vec<PathBuf>,
    ok: bool,
}

/// Fuzzes `target` (or every target for `all`) for `seconds` each.
pub(crate) fn run(target: &str, seconds: u64, sanitizer: &str) -> Result<()> {
    let all = targets()?;
    let chosen: Vec<String> = if target == "all" {
        all
    } else if all.iter().any(|t| t == target) {
        vec![target.to_owned()]
    } else {
        return Err(format!(
            "unknown fuzz target {target:?}; targets: {}",
            all.join(", ")
        ));
    };
    ensure_cargo_fuzz()?;

    let mut outcomes = Vec::new();
    for t in &chosen {
        outcomes.push(fuzz_one(t, seconds, sanitizer)?);
    }

    eprintln!("\nfuzz summary ({seconds} s per target, sanitizer {sanitizer}):");
    eprintln!(
        "  {:<16} {:>12} {:>10} {:>8}  result",
        "target", "executions", "exec/s", "corpus"
    );
    let mut failed = 0;
    for o in &outcomes {
        let runs = o.runs.map_or("?".to_owned(), |r| r.to_string());
        let rate = o.rate.map_or("?".to_owned(), |r| r.to_string());
        let result = if o.ok {
            "no findings".to_owned()
        } else {
            failed += 1;
            format!(
                "FAILED; inputs: {}",
                o.crashes
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        eprintln!(
            "  {:<16} {:>12} {:>10} {:>8}  {result}",
            o.target,
            runs,
            rate,
            o.corpus.as_deref().unwrap_or("?")
        );
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(format!(
            "{failed} target(s) found a failing input; it was copied into fuzz/corpus/<target>/ \
             (replayed by the `fuzz_corpus` test of harmony-wire, harmony-security or harmony-files): \
             fix the code, commit both"
        ))
    }
}

fn ensure_cargo_fuzz() -> Result<()> {
    if has_cargo_subcommand("fuzz") {
        return Ok(());
    }
    let mut install = cargo();
    install.args(["install", "cargo-fuzz", "--locked"]);
    step("install cargo-fuzz", &mut install).map(|_| ())
}

fn fuzz_one(target: &str, seconds: u64, sanitizer: &str) -> Result<Outcome> {
    let root = root();
    let committed = root.join("fuzz/corpus").join(target);
    let scratch = root.join("fuzz/target/corpus-work").join(target);
    let artifacts = root.join("fuzz/artifacts").join(target);
    for dir in [&committed, &scratch, &artifacts] {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let before = files_in(&artifacts);

    let mut cmd = cargo();
    cmd.env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "run", "--sanitizer", sanitizer, target])
        .arg(&scratch)
        .arg(&committed)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1")
        .stderr(Stdio::piped());
    eprintln!(
        "\n==> fuzz {target} for {seconds} s\n    $ {}",
        crate::run::show(&cmd)
    );
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start cargo fuzz: {e}"))?;

    // Echo libFuzzer's output while picking out the figures for the summary.
    let mut runs = None;
    let mut rate = None;
    let mut corpus = None;
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            eprintln!("{line}");
            if let Some(n) = line
                .strip_prefix("stat::number_of_executed_units:")
                .and_then(|v| v.trim().parse().ok())
            {
                runs = Some(n);
            }
            if let Some(n) = line
                .strip_prefix("stat::average_exec_per_sec:")
                .and_then(|v| v.trim().parse().ok())
            {
                rate = Some(n);
            }
            if let Some(rest) = line.strip_prefix("Done ") {
                if let Some(n) = rest.split_whitespace().next().and_then(|v| v.parse().ok()) {
                    runs = runs.or(Some(n));
                }
            }
            // Status lines look like `#12345 pulse cov: 99 ft: 120 corp: 31/1024b ...`.
            if let Some(c) = line.split("corp: ").nth(1) {
                corpus = c.split_whitespace().next().map(str::to_owned);
            }
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;

    let new: Vec<PathBuf> = files_in(&artifacts)
        .difference(&before)
        .map(|name| artifacts.join(name))
        .collect();
    let mut crashes = Vec::new();
    for path in &new {
        if let Some(name) = path.file_name() {
            let dest = committed.join(name);
            fs::copy(path, &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
            crashes.push(dest);
        }
    }
    Ok(Outcome {
        target: target.to_owned(),
        runs,
        rate,
        corpus,
        ok: status.success() && crashes.is_empty(),
        crashes,
    })
}

fn files_in(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}
