//! `cargo xtask bench python`: whisper messages per second between two Python processes, with
//! pyre (the baseline), `harmony.pyre` and `harmony`, in one run
//! (`crates/harmony-python/bench/whisper_rate.py`; needs root for its network namespaces, as
//! pyre cannot use loopback).

use std::process::Command;

use super::BenchOpts;
use crate::run::{root, step, Result};

const SCRIPT: &str = "crates/harmony-python/bench/whisper_rate.py";

pub(super) fn run(opts: &BenchOpts) -> Result<()> {
    let site = crate::python::build(true)?;
    let mut cmd = Command::new(crate::python::interpreter());
    cmd.current_dir(root()).env("PYTHONPATH", &site).arg(SCRIPT);
    if opts.quick {
        cmd.args(["--pyre-messages", "5000", "--harmony-messages", "50000"]);
    }
    step("whisper_rate.py (pyre, harmony.pyre, harmony)", &mut cmd)?;
    Ok(())
}
