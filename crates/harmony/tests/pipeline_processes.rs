//! `harmony pipeline` as separate OS processes on loopback: four workers, a collector and a
//! submitter; two workers and the collector are killed with SIGKILL mid-batch and the collector
//! started again on the same file. The file must end with every task's result exactly once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_harmony");
const TASKS: usize = 600;
const LIMIT: Duration = Duration::from_secs(90);

/// Kills its processes when dropped, so a failing test leaves nothing behind.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn harmony(port: u16, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("pipeline")
        .arg(args[0])
        .args(["--pipeline", "proc-test", "--interface", "loopback"])
        .args(["--port", &port.to_string(), "--interval-ms", "100"])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    cmd
}

fn worker(port: u16) -> Child {
    // Each task is a real process: upper-case the task after a short pause.
    harmony(
        port,
        &[
            "worker",
            "--jobs",
            "2",
            "--",
            "sh",
            "-c",
            "sleep 0.02; tr a-z A-Z",
        ],
    )
    .spawn()
    .expect("worker starts")
}

fn collector(port: u16, out: &Path) -> Child {
    harmony(
        port,
        &["collect", "--out", out.to_str().expect("utf-8 path")],
    )
    .spawn()
    .expect("collector starts")
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// Waits (bounded) until the collector's file holds at least `n` lines.
fn wait_for_lines(path: &Path, n: usize) {
    let start = Instant::now();
    while lines(path) < n {
        assert!(
            start.elapsed() < LIMIT,
            "the file has {} of {n} lines",
            lines(path)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) for the submitter to exit.
fn wait_for_submit(submit: &mut Child, out: &Path) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = submit.try_wait().expect("submit status") {
            return status;
        }
        if start.elapsed() > LIMIT {
            let _ = submit.kill();
            panic!("submit did not finish; {} results in the file", lines(out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "harmony-pipeline-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A batch of `n` tasks (`"{what} {i}"`) in a tasks file, and where its results go.
struct Batch {
    dir: PathBuf,
    out: PathBuf,
    input: PathBuf,
    tasks: Vec<String>,
}

fn batch(n: usize, what: &str) -> Batch {
    let dir = temp_dir();
    let out = dir.join("results.jsonl");
    let input = dir.join("tasks.txt");
    let tasks: Vec<String> = (0..n).map(|i| format!("{what} {i}")).collect();
    std::fs::write(&input, tasks.join("\n") + "\n").expect("write tasks");
    Batch {
        dir,
        out,
        input,
        tasks,
    }
}

#[test]
fn kill_two_workers_and_the_collector_mid_batch_every_result_once() {
    let port = harmony_testkit::free_udp_port();
    let Batch {
        dir,
        out,
        input,
        tasks,
    } = batch(TASKS, "task number");

    let mut procs = Procs(Vec::new());
    for _ in 0..4 {
        procs.0.push(worker(port));
    }
    procs.0.push(collector(port, &out));
    let mut submit = harmony(port, &["submit", input.to_str().expect("utf-8 path")])
        .spawn()
        .expect("submit starts");

    // A quarter in: kill -9 two workers and the collector, then start the collector again.
    wait_for_lines(&out, TASKS / 4);
    for i in [0, 1, 4] {
        procs.0[i].kill().expect("SIGKILL");
        procs.0[i].wait().expect("reaped");
    }
    let before = lines(&out);
    assert!(
        before < TASKS,
        "the batch ended before the kill; make it longer"
    );
    procs.0.push(collector(port, &out));

    let status = wait_for_submit(&mut submit, &out);
    let summary = std::io::read_to_string(submit.stdout.take().expect("stdout")).expect("read");
    assert!(status.success(), "submit failed: {summary}");
    assert!(
        summary.contains(&format!("{TASKS} tasks in")),
        "summary line: {summary:?}"
    );

    // The collector writes a result before acknowledging it: the file is complete now.
    let text = std::fs::read_to_string(&out).expect("results file");
    let mut seen: BTreeMap<u64, String> = BTreeMap::new();
    let mut batches = std::collections::BTreeSet::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        batches.insert(v["batch"].as_str().expect("batch").to_owned());
        let task = v["task"].as_u64().expect("task number");
        let result = v["result"].as_str().expect("result").to_owned();
        assert_eq!(v["failed"], false, "task {task} failed: {result}");
        assert!(
            seen.insert(task, result).is_none(),
            "task {task} is in the file twice"
        );
    }
    assert_eq!(batches.len(), 1, "one batch: {batches:?}");
    assert_eq!(seen.len(), TASKS, "every task once");
    for (i, task) in tasks.iter().enumerate() {
        assert_eq!(seen[&(i as u64)], task.to_uppercase(), "task {i}");
    }
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_pipeline_demo_ends_with_the_exactly_once_check_passing() {
    let port = harmony_testkit::free_udp_port().to_string();
    let out = Command::new(BIN)
        .args(["pipeline", "demo", "--tasks", "600", "--port", &port])
        .stdin(Stdio::null())
        .output()
        .expect("demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed: {stdout}");
    for step in [
        "killing worker 0",
        "the collector crashes",
        "a new collector",
        "exactly-once check passed: all 600 results",
    ] {
        assert!(stdout.contains(step), "no {step:?} in:\n{stdout}");
    }
}

/// `--curve` on every process: a worker, a collector and a submitter, each with a key pair of
/// its own, run a batch over CURVE (ZRE and pipeline sockets) and every result is in the file.
#[test]
fn curve_processes_run_a_batch_every_result_once() {
    const N: usize = 50;
    let port = harmony_testkit::free_udp_port();
    let Batch {
        dir,
        out,
        input,
        tasks,
    } = batch(N, "secret");
    let out_arg = out.to_str().expect("utf-8 path");
    let mut procs = Procs(Vec::new());
    let worker = ["worker", "--curve", "--", "tr", "a-z", "A-Z"];
    procs
        .0
        .push(harmony(port, &worker).spawn().expect("worker"));
    let collect = ["collect", "--curve", "--out", out_arg];
    procs
        .0
        .push(harmony(port, &collect).spawn().expect("collector"));
    let submit = ["submit", "--curve", input.to_str().expect("utf-8 path")];
    let mut submit = harmony(port, &submit).spawn().expect("submit");
    let status = wait_for_submit(&mut submit, &out);
    assert!(status.success(), "submit failed");
    let text = std::fs::read_to_string(&out).expect("results file");
    let mut seen: BTreeMap<u64, String> = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let task = v["task"].as_u64().expect("task number");
        let result = v["result"].as_str().expect("result").to_owned();
        assert!(seen.insert(task, result).is_none(), "task {task} twice");
    }
    assert_eq!(seen.len(), N, "every task once");
    for (i, task) in tasks.iter().enumerate() {
        assert_eq!(seen[&(i as u64)], task.to_uppercase(), "task {i}");
    }
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `harmony pipeline submit` on a terminal (a tmux pane), as a person runs it: a bar of the
/// results counted while the batch runs, then one line saying what was done, the bar cleared.
#[test]
fn submit_on_a_terminal_shows_a_bar_then_the_summary() {
    const N: usize = 200;
    let port = harmony_testkit::free_udp_port();
    let Batch {
        dir, out, input, ..
    } = batch(N, "task");
    let _procs = Procs(vec![worker(port), worker(port), collector(port, &out)]);

    let tmux = harmony_testkit::Tmux::start(
        &format!(
            "{BIN} pipeline submit {} --pipeline proc-test --interface loopback --port {port} \
             --interval-ms 100; echo EXIT=$?; sleep 60",
            input.display()
        ),
        120,
        10,
    );
    let screens = tmux.watch(LIMIT, |s| s.contains("EXIT="));
    let all = || screens.iter().flat_map(|s| s.lines());
    assert!(
        all().any(|l| l.contains(&format!("/{N} results (")) && l.contains('[')),
        "no progress bar: {screens:#?}"
    );
    let last = screens.last().expect("a screen");
    assert!(last.contains("EXIT=0"), "{last}");
    assert!(
        last.lines()
            .any(|l| l.starts_with("batch ") && l.contains(&format!(": {N} tasks in "))),
        "{last}"
    );
    assert!(!last.contains(" results ("), "bar left: {last}");
    assert_eq!(lines(&out), N, "every result once in the collector's file");
    let _ = std::fs::remove_dir_all(&dir);
}
