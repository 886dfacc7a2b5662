//! The `files` family: FILEMQ on loopback against a raw TCP copy of the same files (read,
//! send, write), measured in the same run by `crates/harmony-files/examples/files_bench.rs`:
//! one 1 GiB file and 10 000 x 4 KiB files, plain and with CURVE (the raw copy is never
//! encrypted), the 1 GiB file without the integrity extensions, 256 x 4 MiB (a tree whose
//! hashing takes a while), and the 1 GiB file read from the disk ("disk": kept in
//! `target/bench-files-cold`, its pages dropped from the page cache before every round of
//! either side). Peak RSS is the whole process's (both sides of both transfers).
//!
//! The server publishes once (each file read into its manifest: BLAKE3 digest and chunk
//! crc32s), timed apart as "publish"; then rounds alternate, a fresh client into an empty
//! destination and the raw copy, three times; the table gives medians, each round's ratio and
//! the CPU of each side (sending: Harmony's server threads or the raw sender; receiving: the
//! rest).
//! Last a server start (not for "disk"): a client connected as a new server starts, served
//! while the server still makes its manifests; beside it, publish + harmony (the same run's
//! figures): what that client waited for when subscriptions were held until every manifest
//! was made. One file (big) gains nothing there, its manifest comes first either way; many
//! files go out while the rest are
//! hashed.
//! For the 1 GiB file with the extensions the driver also times the client's checks alone
//! (crc32 of each chunk and BLAKE3 over every byte, on one thread): the part of the receiving
//! side's work that the raw copy does not have.
//!
//! Where the time goes (perf, 2-core machine shared with builds). 1 GiB with the integrity
//! extensions: the server does not read the content at all (its manifest has the crc32s and
//! the digest): each chunk's head is queued with the file region behind it and the socket's
//! worker writes the region with sendfile(2), about half the CPU of the server that read each
//! chunk and below the raw sender (which reads and writes). So that sendfile on that one worker
//! does not wait for the disk (stalling every connection), the driver has the kernel read the
//! file ahead of the chunks it queues (`posix_fadvise` WILLNEED, about the client's credit
//! ahead, one call per chunk): on the cached cases that call costs nothing measurable. On the
//! cold file it moves the disk reads off the worker and ahead of it, for about 0.15-0.2 s more
//! server CPU per GiB: the forced read-ahead adds the pages one 4 KiB folio at a time
//! (perf: `force_page_cache_ra` -> `__filemap_add_folio`, LRU, memcg charge) where sendfile's
//! own read-ahead used larger ones. Same-run A/B, before / after, load 2.1-2.7: send CPU
//! 0.24-0.40 / 0.42-0.50 s, time medians 1.50, 1.35 / 1.28, 1.06 s. CURVE still reads (it
//! seals). The
//! client checks crc32 and BLAKE3 over every byte (about a third of its main thread) and
//! writes (its partial file's blocks reserved up front with fallocate, which took about 10% off
//! the client's CPU). Both sides recycle their chunk buffers up to the credit window. Left:
//! the client's hashing, its copy out of the socket and the hand-over between its threads.
//! Tried and measured without gain (alternating runs, load 1.2-2): the client's writes on a
//! writer thread fed by a bounded queue (its main thread's CPU per GiB 0.74 -> 0.50 s, but the
//! time stayed 0.82-0.87 s, the total CPU ~1.25 s unchanged), and crc32 + BLAKE3 fused in
//! 64 KiB blocks (no change in CPU); `Hasher::update_rayon` per chunk was slower.
//! 10 000 x 4 KiB: per file an open, a write and the rename of the partial file into place, and
//! one message; events reach the reader in batches. With CURVE, salsa20 + poly1305 in the
//! sockets' connection tasks dominate. Under CPU contention the time ratios swing by 2x from run
//! to run: the CPU ratio is steadier.

use std::process::Command;

use super::BenchOpts;
use crate::run::{cargo, step, target_dir, Result};

/// One line of the table: medians over the rounds.
struct Row {
    case: String,
    /// Server start: from it, the client's first file and its last, and the CPU.
    start_first_s: f64,
    start_all_s: f64,
    start_cpu: f64,
    publish_s: f64,
    publish_cpu: f64,
    harmony_s: f64,
    raw_s: f64,
    bytes: f64,
    files: f64,
    rss_kib: u64,
    harmony_cpu: f64,
    raw_cpu: f64,
    /// CPU seconds of each side: Harmony sending, receiving; raw sending, receiving.
    sides: [f64; 4],
    /// raw time / Harmony time in each round.
    ratios: Vec<f64>,
    /// CPU seconds of the client's checks alone (crc32 + BLAKE3 over every byte), with the
    /// extensions.
    check_s: Option<f64>,
}

/// Rounds of each case: Harmony and the raw copy alternate.
const ROUNDS: usize = 3;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

pub(super) fn run(opts: &BenchOpts) -> Result<()> {
    step(
        "build the FILEMQ bench driver",
        cargo().args([
            "build",
            "--release",
            "-p",
            "harmony-files",
            "--example",
            "files_bench",
        ]),
    )?;
    let driver = target_dir().join("release/examples/files_bench");
    // Files in memory when /dev/shm exists: the protocol is measured, not the disk's
    // writeback (both sides write the same bytes either way). Removed at the end.
    let shm = std::path::Path::new("/dev/shm");
    let scratch = if shm.is_dir() {
        shm.join(format!("harmony-bench-files-{}", std::process::id()))
    } else {
        target_dir().join("bench-files")
    };
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let result = measure(&driver, &scratch, opts);
    if scratch.starts_with(shm) {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    result
}

fn measure(driver: &std::path::Path, scratch: &std::path::Path, opts: &BenchOpts) -> Result<()> {
    let cases: &[&[&str]] = if opts.quick {
        &[&["big"], &["small"]]
    } else {
        &[
            &["big"],
            &["big", "plain"],
            &["big", "curve"],
            &["big", "cold"],
            &["small"],
            &["small", "curve"],
            &["tree"],
        ]
    };
    // The cold case's file on the disk (tmpfs pages cannot be dropped), kept for later runs.
    let cold_src = target_dir().join("bench-files-cold");
    let mut rows = Vec::new();
    for case in cases {
        let mut cmd = Command::new(driver);
        cmd.arg(scratch)
            .args(*case)
            .args(["--rounds", &ROUNDS.to_string()]);
        if case.contains(&"cold") {
            cmd.arg("--src").arg(&cold_src);
        }
        let out = cmd
            .output()
            .map_err(|e| format!("{}: {e}", driver.display()))?;
        if !out.status.success() {
            return Err(format!(
                "files_bench {case:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        rows.push(parse(&String::from_utf8_lossy(&out.stdout))?);
    }
    println!(
        "\nFILEMQ on loopback: Harmony vs raw TCP copy, same run, median of {ROUNDS} \
         alternating rounds"
    );
    println!(
        "  {:<16} {:>9} {:>10} {:>10} {:>8} {:>8} {:>7} {:>9} {:>8}  rounds",
        "case",
        "publish",
        "harmony",
        "raw tcp",
        "MB/s",
        "files/s",
        "ratio",
        "CPU ratio",
        "peak RSS"
    );
    for r in &rows {
        let rounds: Vec<String> = r.ratios.iter().map(|x| format!("{x:.2}")).collect();
        println!(
            "  {:<16} {:>7.2} s {:>8.2} s {:>8.2} s {:>8.1} {:>8.0} {:>6.2}x {:>8.2}x {:>4} MiB  {}",
            r.case,
            r.publish_s,
            r.harmony_s,
            r.raw_s,
            r.bytes / r.harmony_s / 1e6,
            r.files / r.harmony_s,
            r.raw_s / r.harmony_s,
            r.raw_cpu / r.harmony_cpu.max(0.01),
            r.rss_kib / 1024,
            rounds.join(" / ")
        );
    }
    println!("\n  CPU seconds per side (medians)  harmony send / receive    raw send / receive");
    for r in &rows {
        println!(
            "  {:<16} {:>27.2} / {:<7.2} {:>14.2} / {:<7.2}",
            r.case, r.sides[0], r.sides[1], r.sides[2], r.sides[3]
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for r in rows.iter().filter(|r| r.bytes >= f64::from(1u32 << 30)) {
        // What the target leaves: every core busy for the whole of 1/0.9 of raw's time.
        let budget = cores as f64 * r.raw_s / 0.9;
        println!(
            "  {}: taking at most 1/0.9 of raw's {:.2} s, {cores} cores have {budget:.2} s of \
             CPU at most; raw used {:.2} s, Harmony {:.2} s",
            r.case, r.raw_s, r.raw_cpu, r.harmony_cpu
        );
        let Some(check) = r.check_s else { continue };
        println!(
            "  {}: the client's checks alone (crc32 + BLAKE3 over every byte, one thread) take \
             {check:.2} s of CPU, {:.0}% of the whole raw copy's {:.2} s",
            r.case,
            100.0 * check / r.raw_cpu.max(f64::EPSILON),
            r.raw_cpu
        );
    }
    println!(
        "  publish = the server's one-off reading of the files into their manifests (BLAKE3 \
         digest, chunk crc32s), before any client; not in the harmony column"
    );
    println!("  harmony = a fresh client's start to its last file on disk (the server up)");
    println!("  ratio = raw time / Harmony time (1.00x = as fast as the raw copy)");
    println!(
        "  CPU ratio = raw CPU / Harmony CPU, both sides, every thread (steadier than time \
         on a loaded machine)"
    );
    println!(
        "\n  server start: a client connected as a new server starts (one run)\n  {:<16} {:>11} \
         {:>10} {:>17} {:>7} {:>9}",
        "case", "first file", "all files", "publish + harmony", "ratio", "CPU ratio"
    );
    // The disk case has none: its point is the rounds' reads from the disk.
    for r in rows.iter().filter(|r| r.start_all_s > 0.0) {
        let sequential = r.publish_s + r.harmony_s;
        println!(
            "  {:<16} {:>9.3} s {:>8.2} s {:>15.2} s {:>6.2}x {:>8.2}x",
            r.case,
            r.start_first_s,
            r.start_all_s,
            sequential,
            sequential / r.start_all_s.max(1e-9),
            (r.publish_cpu + r.harmony_cpu) / r.start_cpu.max(0.01)
        );
    }
    println!(
        "  publish + harmony = when that client had everything while subscriptions waited for \
         every manifest (the same run's figures); ratio = that / all files; CPU likewise"
    );
    Ok(())
}

/// The driver's output for one case: its rounds reduced to medians.
fn parse(text: &str) -> Result<Row> {
    let mut row = Row {
        case: String::new(),
        start_first_s: 0.0,
        start_all_s: 0.0,
        start_cpu: 0.0,
        publish_s: 0.0,
        publish_cpu: 0.0,
        harmony_s: 0.0,
        raw_s: 0.0,
        bytes: 0.0,
        files: 0.0,
        rss_kib: 0,
        harmony_cpu: 0.0,
        raw_cpu: 0.0,
        sides: [0.0; 4],
        ratios: Vec::new(),
        check_s: None,
    };
    let mut sides: [Vec<f64>; 4] = Default::default();
    let (mut harmony, mut raw, mut harmony_cpu, mut raw_cpu) = (vec![], vec![], vec![], vec![]);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |s: &str| -> Result<f64> { s.parse().map_err(|_| line.to_string()) };
        match f[..] {
            ["PUBLISH", secs, cpu] => {
                row.publish_s = num(secs)?;
                row.publish_cpu = num(cpu)?;
            }
            ["START", first, all, cpu] => {
                row.start_first_s = num(first)?;
                row.start_all_s = num(all)?;
                row.start_cpu = num(cpu)?;
            }
            ["RESULT", who, case, secs, bytes, files] => {
                row.case = case.to_string();
                row.bytes = num(bytes)?;
                row.files = num(files)?;
                if who == "harmony" {
                    harmony.push(num(secs)?);
                } else {
                    raw.push(num(secs)?);
                }
            }
            ["CPU", who, secs] => {
                if who == "harmony" {
                    harmony_cpu.push(num(secs)?);
                } else {
                    raw_cpu.push(num(secs)?);
                }
            }
            ["SIDES", who, send, recv] => {
                let at = if who == "harmony" { 0 } else { 2 };
                sides[at].push(num(send)?);
                sides[at + 1].push(num(recv)?);
            }
            ["RSS", kib] => row.rss_kib = kib.parse().unwrap_or(0),
            ["CHECK", secs] => row.check_s = Some(num(secs)?),
            _ => {}
        }
    }
    row.ratios = harmony.iter().zip(&raw).map(|(h, r)| r / h).collect();
    row.harmony_s = median(harmony);
    row.raw_s = median(raw);
    row.harmony_cpu = median(harmony_cpu);
    row.raw_cpu = median(raw_cpu);
    for (at, values) in sides.into_iter().enumerate() {
        row.sides[at] = median(values);
    }
    Ok(row)
}
