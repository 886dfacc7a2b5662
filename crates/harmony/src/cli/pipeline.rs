//! `harmony pipeline worker|collect|submit|demo`: the reliable pipeline from the shell.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Subcommand};
use harmony::pipeline::{
    Client, Collector, CollectorEvent, PipelineError, Settings, Timing, Worker, WorkerOptions,
};
use harmony::{Node, NodeBuilder, NodeError, Uuid};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

#[derive(Debug, Args)]
pub(crate) struct PipelineArgs {
    #[command(subcommand)]
    command: PipelineCommand,
}

#[derive(Debug, Subcommand)]
enum PipelineCommand {
    /// Run CMD for each task: the task on its stdin, its stdout (trailing newline removed) the
    /// result, a non-zero exit a failed task.
    Worker(WorkerArgs),
    /// Append every result to FILE as one JSON object per line; started again with the same
    /// FILE it carries on where it stopped.
    Collect(CollectArgs),
    /// Submit FILE (or `-`, stdin) as a batch, one task per line; exit 0 once the collector has
    /// every result.
    Submit(SubmitArgs),
    /// One process, loopback: 1 client, 4 workers, 1 collector; a worker is killed and the
    /// collector restarted mid-batch; every result still arrives exactly once.
    Demo(DemoArgs),
}

/// Where the pipeline is.
#[derive(Debug, Clone, Args)]
struct Net {
    /// The pipeline's name.
    #[arg(long, default_value = "default")]
    pipeline: String,
    /// The node (with `--curve`/`--curve-cert` the pipeline sockets are CURVE too).
    #[command(flatten)]
    node: super::NodeArgs,
}

impl Net {
    fn settings(&self) -> Result<Settings, NodeError> {
        let node = self.node.apply(Node::builder())?;
        Ok(Settings::new(node).pipeline(self.pipeline.as_str()))
    }
}

#[derive(Debug, Args)]
struct WorkerArgs {
    #[command(flatten)]
    net: Net,
    /// Tasks run at once.
    #[arg(short, long, default_value_t = 1)]
    jobs: usize,
    /// Runs of a failing task before its failure is reported.
    #[arg(long, default_value_t = 3)]
    attempts: u32,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Debug, Args)]
struct CollectArgs {
    #[command(flatten)]
    net: Net,
    /// The JSON-lines file results are appended to.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct SubmitArgs {
    #[command(flatten)]
    net: Net,
    /// One task per line; `-` for stdin.
    file: String,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Tasks in the batch.
    #[arg(long, default_value_t = 2000)]
    tasks: u32,
    /// UDP discovery port on loopback (default: a free one).
    #[arg(long)]
    port: Option<u16>,
}

fn invalid(e: impl std::fmt::Display) -> NodeError {
    NodeError::Invalid(e.to_string())
}

fn from_pipeline(e: PipelineError) -> NodeError {
    match e {
        PipelineError::Node(e) => e,
        other => invalid(other),
    }
}

pub(crate) async fn run(args: PipelineArgs) -> Result<(), NodeError> {
    match args.command {
        PipelineCommand::Worker(a) => worker(a).await,
        PipelineCommand::Collect(a) => collect(a).await,
        PipelineCommand::Submit(a) => submit(a).await,
        PipelineCommand::Demo(a) => demo(a).await,
    }
    .map_err(from_pipeline)
}

/// Runs `command` with `task` on stdin: stdout without its trailing newline, or the failure.
async fn run_command(command: &[String], task: Bytes) -> Result<Bytes, String> {
    let (program, args) = command.split_first().ok_or("no command")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its stdin is fine.
        let _ = stdin.write_all(&task).await;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{program}: {} {}", out.status, stderr.trim_end()));
    }
    let mut stdout = out.stdout;
    if stdout.last() == Some(&b'\n') {
        stdout.pop();
        if stdout.last() == Some(&b'\r') {
            stdout.pop();
        }
    }
    Ok(Bytes::from(stdout))
}

async fn worker(args: WorkerArgs) -> Result<(), PipelineError> {
    let command = std::sync::Arc::new(args.command);
    let options = WorkerOptions {
        jobs: args.jobs.max(1),
        window: None,
        attempts: args.attempts.max(1),
    };
    let worker = Worker::start(args.net.settings()?, options, move |task| {
        let command = command.clone();
        async move { run_command(&command, task).await }
    })
    .await?;
    eprintln!(
        "worker {} in pipeline {:?}, {} at once; Ctrl-C to stop",
        worker.uuid(),
        args.net.pipeline,
        options.jobs
    );
    let _ = tokio::signal::ctrl_c().await;
    worker.stop().await;
    Ok(())
}

/// One line of the collector's file.
fn result_line(batch: Uuid, task: u32, failed: bool, payload: &[u8]) -> String {
    let value = serde_json::json!({
        "batch": batch.to_string(),
        "task": task,
        "result": String::from_utf8_lossy(payload),
        "failed": failed,
    });
    format!("{value}\n")
}

/// Reads back a collector file: the (batch, task) pairs it holds. A last line cut short by a
/// crash is removed from the file (its result was never acknowledged, so it comes again).
fn read_results(path: &Path) -> std::io::Result<BTreeSet<(Uuid, u32)>> {
    let mut have = BTreeSet::new();
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(have),
        Err(e) => return Err(e),
    };
    let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if complete < data.len() {
        tracing::warn!(
            bytes = data.len() - complete,
            "collector file ends in a partial line; removing it"
        );
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)?
            .set_len(complete as u64)?;
    }
    for line in data[..complete].split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let parsed: Option<(Uuid, u32)> = serde_json::from_slice::<serde_json::Value>(line)
            .ok()
            .and_then(|v| {
                let batch = v.get("batch")?.as_str()?.parse().ok()?;
                let task = u32::try_from(v.get("task")?.as_u64()?).ok()?;
                Some((batch, task))
            });
        match parsed {
            Some(key) => {
                have.insert(key);
            }
            None => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{}: not a collector line: {}",
                        path.display(),
                        String::from_utf8_lossy(line)
                    ),
                ))
            }
        }
    }
    Ok(have)
}

async fn collect(args: CollectArgs) -> Result<(), PipelineError> {
    let have = read_results(&args.out).map_err(invalid)?;
    let mut collector = Collector::start(args.net.settings()?).await?;
    for &(batch, task) in &have {
        collector.restore(batch, task);
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.out)
        .map_err(|e| invalid(format!("{}: {e}", args.out.display())))?;
    eprintln!(
        "collector {} in pipeline {:?}, {} results already in {}",
        collector.uuid(),
        args.net.pipeline,
        have.len(),
        args.out.display()
    );
    loop {
        let event = tokio::select! {
            event = collector.recv() => event?,
            _ = tokio::signal::ctrl_c() => break,
        };
        match event {
            CollectorEvent::Result {
                batch,
                task,
                failed,
                payload,
                ..
            } => {
                // In the file (one write call, so the OS has it even if we are killed) before
                // the next recv(), which is what acknowledges it.
                file.write_all(result_line(batch, task, failed, &payload).as_bytes())
                    .map_err(|e| invalid(format!("{}: {e}", args.out.display())))?;
            }
            CollectorEvent::BatchComplete { batch, size, .. } => {
                eprintln!("batch {batch} complete: {size} results");
            }
            _ => {}
        }
    }
    file.flush().map_err(invalid)?;
    collector.stop().await;
    Ok(())
}

async fn submit(args: SubmitArgs) -> Result<(), PipelineError> {
    let text = if args.file == "-" {
        let mut buf = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut buf).map_err(invalid)?;
        buf
    } else {
        std::fs::read_to_string(&args.file).map_err(|e| invalid(format!("{}: {e}", args.file)))?
    };
    let tasks: Vec<String> = text.lines().map(str::to_owned).collect();
    let client = Client::start(args.net.settings()?).await?;
    let started = Instant::now();
    let mut batch = client.submit(tasks).await?;
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(u64::from(batch.progress().size));
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} results ({per_sec}, eta {eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    while let Some(p) = batch.next_progress().await {
        bar.set_position(u64::from(p.done));
    }
    let summary = batch.wait().await?;
    bar.finish_and_clear();
    println!(
        "batch {}: {} tasks in {:.2} s, {} resent",
        summary.batch,
        summary.tasks,
        started.elapsed().as_secs_f64(),
        summary.resent
    );
    client.stop().await;
    Ok(())
}

/// The demo's narrator.
struct Narrator {
    started: Instant,
}

impl Narrator {
    fn say(&self, text: impl AsRef<str>) {
        println!(
            "[{:>7.1} ms] {}",
            self.started.elapsed().as_secs_f64() * 1e3,
            text.as_ref()
        );
    }
}

async fn demo(args: DemoArgs) -> Result<(), PipelineError> {
    let port = args.port.unwrap_or_else(super::demo::free_udp_port);
    let settings = || {
        let node: NodeBuilder = Node::builder()
            .loopback()
            .port(port)
            .interval(Duration::from_millis(100));
        Settings::new(node).pipeline("demo").timing(Timing {
            heartbeat: Duration::from_millis(200),
            peer_timeout: Duration::from_millis(1000),
            lost_after: Duration::from_millis(1000),
            task_timeout: Duration::from_secs(10),
        })
    };
    let n = Narrator {
        started: Instant::now(),
    };
    let size = args.tasks.max(8);
    n.say(format!(
        "pipeline \"demo\" on loopback (beacons on UDP {port}): 4 workers, 1 collector, 1 client, {size} tasks"
    ));
    let mut workers = Vec::new();
    for i in 0..4 {
        let w = Worker::start(
            settings(),
            WorkerOptions {
                jobs: 2,
                ..WorkerOptions::default()
            },
            move |task: Bytes| async move {
                tokio::time::sleep(Duration::from_micros(500)).await;
                Ok::<_, String>(Bytes::from(task.to_ascii_uppercase()))
            },
        )
        .await?;
        n.say(format!("worker {i} started ({})", w.uuid()));
        workers.push(w);
    }
    // The collector's "file": what its application has durably taken.
    let record = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::<(Uuid, u32), u32>::new()));
    let spawn_collector = |collector: Collector| {
        let record = record.clone();
        tokio::spawn(async move {
            let mut collector = collector;
            loop {
                match collector.recv().await {
                    Ok(CollectorEvent::Result { batch, task, .. }) => {
                        if let Ok(mut r) = record.lock() {
                            *r.entry((batch, task)).or_default() += 1;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        })
    };
    let collector = Collector::start(settings()).await?;
    n.say(format!("collector started ({})", collector.uuid()));
    let mut collector_task = spawn_collector(collector);
    let client = Client::start(settings()).await?;
    n.say(format!(
        "client started ({}); it finds the others through ZRE, no endpoint typed",
        client.uuid()
    ));
    let mut batch = client
        .submit((0..size).map(|i| format!("task {i}")))
        .await?;
    n.say(format!("batch {} submitted: {size} tasks", batch.id()));
    let mut killed = false;
    let mut restarted = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Ok(Some(p)) = tokio::time::timeout_at(deadline, batch.next_progress()).await {
        if !killed && p.done >= size / 4 {
            killed = true;
            let victim = workers.remove(0);
            n.say(format!(
                "{}/{size} results in; killing worker 0 ({}) with its work in progress",
                p.done,
                victim.uuid()
            ));
            victim.kill();
        }
        if !restarted && p.done >= size / 2 {
            restarted = true;
            n.say(format!(
                "{}/{size} results in; the collector crashes",
                p.done
            ));
            collector_task.abort();
            let _ = (&mut collector_task).await;
            let mut collector = Collector::start(settings()).await?;
            let held = record.lock().map(|r| r.len()).unwrap_or(0);
            if let Ok(r) = record.lock() {
                for &(b, t) in r.keys() {
                    collector.restore(b, t);
                }
            }
            n.say(format!(
                "a new collector ({}) starts from its record of {held} results",
                collector.uuid()
            ));
            collector_task = spawn_collector(collector);
        }
    }
    let id = batch.id();
    let summary = tokio::time::timeout_at(deadline, batch.wait())
        .await
        .map_err(|_| invalid("the demo's batch did not complete in 60 s"))??;
    n.say(format!(
        "batch complete at the client: {} tasks, {} resent",
        summary.tasks, summary.resent
    ));
    let (missing, twice) = {
        let r = record.lock().map_err(|_| invalid("record poisoned"))?;
        let missing = (0..size).filter(|t| !r.contains_key(&(id, *t))).count();
        let twice = r.values().filter(|&&c| c > 1).count();
        (missing, twice)
    };
    if missing > 0 || twice > 0 {
        return Err(invalid(format!(
            "exactly-once check FAILED: {missing} results missing, {twice} delivered twice"
        ))
        .into());
    }
    n.say(format!(
        "exactly-once check passed: all {size} results at the collector, none twice"
    ));
    client.stop().await;
    collector_task.abort();
    for w in workers {
        w.stop().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_last_line_is_cut_and_the_rest_read() {
        let dir = std::env::temp_dir().join(format!("harmony-collect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.jsonl");
        let b = Uuid::from_u128(5);
        let mut text = result_line(b, 0, false, b"A");
        text.push_str(&result_line(b, 1, true, b"oops"));
        text.push_str("{\"batch\": \"0000");
        std::fs::write(&path, &text).unwrap();
        let have = read_results(&path).unwrap();
        assert_eq!(have, BTreeSet::from([(b, 0), (b, 1)]));
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(after.ends_with('\n') && after.lines().count() == 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
