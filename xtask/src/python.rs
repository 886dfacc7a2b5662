//! The Python package `harmony` (crates/harmony-python): built with maturin into a directory of
//! the target dir, never into a shared venv, and tested with pytest.
//!
//! The wheel is installed with `pip install --target target/python/<profile>/site`, and pytest
//! (or the benchmark) runs with that directory on `PYTHONPATH`. So `cargo xtask ci` works the
//! same with `.venv` or with `HARMONY_PYTHON` pointing at someone else's interpreter: nothing is
//! installed into it. Everything runs offline (maturin and pytest come from the pinned
//! requirements that `cargo xtask setup` installs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::run::{cargo, root, step, target_dir, Result};

/// The crate of the Python package.
const MANIFEST: &str = "crates/harmony-python/Cargo.toml";
/// The pytest suite.
const TESTS: &str = "crates/harmony-python/tests";

/// The interpreter of the interop tests: `$HARMONY_PYTHON`, else `.venv/bin/python`.
pub(crate) fn interpreter() -> PathBuf {
    std::env::var_os("HARMONY_PYTHON")
        .map_or_else(|| root().join(".venv/bin/python"), PathBuf::from)
}

/// Builds the wheel (release or debug) and unpacks it into its own directory; returns the
/// directory to put on `PYTHONPATH`.
pub(crate) fn build(release: bool) -> Result<PathBuf> {
    let python = interpreter();
    let profile = if release { "release" } else { "debug" };
    let dir = target_dir().join("python").join(profile);
    let wheels = dir.join("wheels");
    let site = dir.join("site");
    for d in [&wheels, &site] {
        if d.exists() {
            std::fs::remove_dir_all(d).map_err(|e| format!("cannot clear {}: {e}", d.display()))?;
        }
    }
    let mut maturin = Command::new(&python);
    maturin
        .current_dir(root())
        .args(["-m", "maturin", "build", "--quiet", "-m", MANIFEST, "--out"])
        .arg(&wheels)
        .arg("--interpreter")
        .arg(&python);
    if release {
        maturin.arg("--release");
    }
    step(&format!("maturin build ({profile})"), &mut maturin)?;
    let wheel = only_wheel(&wheels)?;
    let mut pip = crate::setup::pip_install(&python);
    pip.current_dir(root())
        .args(["--no-deps", "--no-index", "--target"])
        .arg(&site)
        .arg(&wheel);
    step("pip install --target (the built wheel)", &mut pip)?;
    Ok(site)
}

fn only_wheel(dir: &Path) -> Result<PathBuf> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("no wheel in {}: {e}", dir.display()))?;
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| format!("maturin wrote no wheel into {}", dir.display()))
}

/// The `python` step of `cargo xtask ci`: build the module (debug), then pytest against it and
/// the `harmony` program (built when missing); tests named *netns* are deselected when `skip_netns`.
pub(crate) fn ci(skip_netns: bool) -> std::result::Result<Duration, String> {
    eprintln!("\n==> python (crates/harmony-python)");
    let started = Instant::now();
    let site = build(false)?;
    // The tests step built it (with the test features); building it again here would only
    // flip its features back and forth between runs.
    let harmony = target_dir().join("debug/harmony");
    if !harmony.exists() {
        let mut bin = cargo();
        bin.args(["build", "--quiet", "-p", "harmony", "--bin", "harmony"]);
        step("cargo build --bin harmony", &mut bin)?;
    }
    let mut pytest = Command::new(interpreter());
    pytest
        .current_dir(root())
        .env("PYTHONPATH", &site)
        .env("HARMONY_BIN", &harmony)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", TESTS]);
    if skip_netns {
        pytest.args(["-k", "not netns"]);
    }
    step("pytest", &mut pytest)?;
    Ok(started.elapsed())
}
