//! Driving child processes that print one JSON object per line (harmony chat --json, pyre).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running child with line-based stdin and JSON-lines stdout. Killed on drop.
pub(crate) struct JsonProc {
    pub(crate) label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every object seen so far, in order.
    pub(crate) seen: Vec<Value>,
}

impl JsonProc {
    pub(crate) fn spawn(label: &str, cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{label}: cannot spawn {cmd:?}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Self {
            label: label.to_owned(),
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Writes one line to the child's stdin.
    pub(crate) fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .expect("write to child");
    }

    /// Closes stdin (harmony chat and the pyre script stop on EOF).
    pub(crate) fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the first object (seen before or arriving) that matches `pred`.
    pub(crate) fn expect(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        self.within(timeout, pred).unwrap_or_else(|| {
            panic!(
                "{}: no {what} within {timeout:?}; saw {:#?}",
                self.label, self.seen
            )
        })
    }

    /// The first object (seen before or arriving within `timeout`) that matches `pred`.
    pub(crate) fn within(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return Some(v.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    // Text lines (harmony chat without --json) come as JSON strings.
                    let v = serde_json::from_str::<Value>(&line).unwrap_or(Value::String(line));
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return Some(v);
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    return None
                }
            }
        }
    }

    /// Kills the process (SIGKILL: no goodbye to its peers).
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}",
                self.label
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for JsonProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `event == kind` and every `(key, value)` string field matches.
pub(crate) fn is(v: &Value, kind: &str, fields: &[(&str, &str)]) -> bool {
    v["event"] == kind && fields.iter().all(|(k, want)| v[*k].as_str() == Some(*want))
}
