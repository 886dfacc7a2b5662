//! `cargo xtask setup`: what the tests need besides Rust, made ready by the task runner itself.
//!
//! - `.venv`: a Python virtual environment with the pinned packages of
//!   `crates/harmony-testkit/requirements.txt` (pyzmq = libzmq, zeromq-pyre = pyre, maturin and
//!   pytest for the Python package), created when
//!   it is missing or stale. Stale means the requirements changed since it was made (a copy is
//!   kept in `.venv/harmony-requirements.txt`) or its interpreter no longer imports them.
//! - Network namespaces: whether this machine can make them (root and iproute2). Where it cannot,
//!   the tests named `*netns*` are skipped with that reason (see [`Readiness::netns`]).
//!
//! `HARMONY_PYTHON` names another interpreter to use instead of `.venv`; it is checked, never
//! changed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::run::{root, show, Result};

/// The pinned Python requirements of the interop tests, relative to the workspace root.
pub(crate) const REQUIREMENTS: &str = "crates/harmony-testkit/requirements.txt";
/// The copy of the requirements a `.venv` was made from.
const STAMP: &str = "harmony-requirements.txt";
/// What the interop tests import.
const IMPORT_CHECK: &str = "import zmq, pyre, pytest, maturin";

/// What `setup` found or made.
#[derive(Debug, Clone)]
pub(crate) struct Readiness {
    /// Why the namespace tests cannot run here, if they cannot.
    pub(crate) netns: Option<String>,
}

/// Makes `.venv` ready (creating it when missing or stale) and checks for namespaces.
pub(crate) fn run() -> Result<Readiness> {
    python_env()?;
    let netns = netns_missing();
    match &netns {
        None => eprintln!("setup: network namespace tests will run (root, iproute2)"),
        Some(why) => {
            eprintln!("setup: network namespace tests (named *netns*) will be SKIPPED: {why}")
        }
    }
    Ok(Readiness { netns })
}

fn python_env() -> Result<()> {
    if let Some(python) = std::env::var_os("HARMONY_PYTHON") {
        let python = PathBuf::from(python);
        return if imports_ok(&python) {
            eprintln!(
                "setup: python: HARMONY_PYTHON={} (not managed)",
                python.display()
            );
            Ok(())
        } else {
            Err(format!(
                "setup: HARMONY_PYTHON={} cannot `{IMPORT_CHECK}`: install {} into it, or unset HARMONY_PYTHON",
                python.display(),
                pins_line(&read_requirements()?)
            ))
        };
    }
    let wanted = read_requirements()?;
    let venv = root().join(".venv");
    let python = venv.join("bin/python");
    let made_from = std::fs::read_to_string(venv.join(STAMP)).ok();
    let why = if !python.exists() {
        "missing"
    } else if made_from.as_deref() != Some(wanted.as_str()) {
        "stale (the pinned requirements changed)"
    } else if !imports_ok(&python) {
        "broken (its python cannot import the packages)"
    } else {
        eprintln!(
            "setup: python: .venv is up to date ({})",
            pins_line(&wanted)
        );
        return Ok(());
    };
    eprintln!(
        "setup: python: .venv is {why}: creating it with {}",
        pins_line(&wanted)
    );
    create_venv(&venv, &wanted)
}

fn create_venv(venv: &Path, wanted: &str) -> Result<()> {
    let base = std::env::var_os("PYTHON3").map_or_else(|| PathBuf::from("python3"), PathBuf::from);
    let has_venv_module = Command::new(&base)
        .args(["-m", "venv", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_venv_module {
        return Err(format!(
            "setup: no `{}` with the venv module: the interop tests need Python 3 \
             (Debian: `apt-get install python3 python3-venv`; or set PYTHON3=/path/to/python3)",
            base.display()
        ));
    }
    if venv.exists() {
        std::fs::remove_dir_all(venv)
            .map_err(|e| format!("setup: cannot remove the old {}: {e}", venv.display()))?;
    }
    quiet(Command::new(&base).arg("-m").arg("venv").arg(venv))
        .map_err(|e| format!("setup: `python3 -m venv .venv` failed: {e}"))?;
    let pip = quiet(
        pip_install(&venv.join("bin/python"))
            .arg("-r")
            .arg(root().join(REQUIREMENTS)),
    );
    if let Err(e) = pip {
        // Leave no half-made venv that a later run would take for a good one.
        let _ = std::fs::remove_dir_all(venv);
        return Err(format!(
            "setup: pip could not install {} from PyPI (no network access?): {e}",
            pins_line(wanted)
        ));
    }
    if !imports_ok(&venv.join("bin/python")) {
        return Err(format!(
            "setup: the new .venv cannot `{IMPORT_CHECK}` after installing {}",
            pins_line(wanted)
        ));
    }
    std::fs::write(venv.join(STAMP), wanted)
        .map_err(|e| format!("setup: cannot write {}: {e}", venv.join(STAMP).display()))?;
    eprintln!("setup: python: .venv ready");
    Ok(())
}

/// `python -m pip install`, quiet and never asking.
pub(crate) fn pip_install(python: &Path) -> Command {
    let mut cmd = Command::new(python);
    cmd.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
    ]);
    cmd
}

fn read_requirements() -> Result<String> {
    let path = root().join(REQUIREMENTS);
    std::fs::read_to_string(&path)
        .map_err(|e| format!("setup: cannot read {}: {e}", path.display()))
}

/// `pyzmq==27.3.0, zeromq-pyre==0.3.4`: the requirement lines without comments.
fn pins_line(requirements: &str) -> String {
    requirements
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

fn imports_ok(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", IMPORT_CHECK])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a command with its output captured; on failure the error carries its last lines.
fn quiet(cmd: &mut Command) -> std::result::Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot start {}: {e}", show(cmd)))?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let tail: Vec<&str> = text.lines().rev().take(6).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!(
        "{} ({})\n    {}",
        show(cmd),
        out.status,
        tail.join("\n    ")
    ))
}

/// Why namespaces cannot be made here, or `None` when they can.
pub(crate) fn netns_missing() -> Option<String> {
    let root_user = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false);
    if !root_user {
        return Some("not root (run as root, as CI does, to create network namespaces)".into());
    }
    let has_ip = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_ip {
        return Some("no `ip` command (Debian: `apt-get install iproute2`)".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_line_drops_comments_and_blank_lines() {
        let req = "# interop\npyzmq==27.3.0\n\nzeromq-pyre==0.3.4  # pyre\n";
        assert_eq!(pins_line(req), "pyzmq==27.3.0, zeromq-pyre==0.3.4");
    }

    #[test]
    fn the_pinned_requirements_exist_and_name_the_interop_packages() {
        let pins = pins_line(&read_requirements().expect("requirements file"));
        assert!(pins.contains("pyzmq=="), "{pins}");
        assert!(pins.contains("zeromq-pyre=="), "{pins}");
    }
}
