//! Running commands from the workspace root, loudly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Errors of the task runner are plain messages for a human.
pub(crate) type Result<T> = std::result::Result<T, String>;

/// The workspace root (the parent of `xtask/`). `cargo run` tells the manifest directory at run
/// time; the compile-time one is the fallback for a binary started by hand.
pub(crate) fn root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest
        .parent()
        .map_or_else(|| Path::new("..").to_path_buf(), Path::to_path_buf)
}

/// The cargo that runs this task (so `cargo +toolchain xtask` stays on that toolchain).
pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// The cargo target directory builds of the workspace go to.
pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
}

/// Prints a banner, runs the command with inherited output, and tells how it went.
pub(crate) fn step(title: &str, cmd: &mut Command) -> Result<Duration> {
    eprintln!("\n==> {title}\n    $ {}", show(cmd));
    let start = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("{title}: cannot start {:?}: {e}", cmd.get_program()))?;
    let took = start.elapsed();
    if status.success() {
        eprintln!("<== {title}: ok ({:.1} s)", took.as_secs_f64());
        Ok(took)
    } else {
        Err(format!("{title}: failed ({status})"))
    }
}

/// Whether a cargo subcommand is installed (`cargo <sub> --version` succeeds).
pub(crate) fn has_cargo_subcommand(sub: &str) -> bool {
    cargo()
        .args([sub, "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The command line, for the log.
pub(crate) fn show(cmd: &Command) -> String {
    let mut out = String::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            out.push_str(&format!(
                "{}={} ",
                key.to_string_lossy(),
                value.to_string_lossy()
            ));
        }
    }
    out.push_str(&cmd.get_program().to_string_lossy());
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&arg.to_string_lossy());
    }
    out
}
