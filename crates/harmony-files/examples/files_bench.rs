//! FILEMQ transfers on loopback, timed, beside a raw TCP copy of the same files, for
//! `cargo xtask bench files`. Both sides run in this process (each Harmony side on its own
//! thread and runtime); the peak RSS printed is the whole process's.
//!
//! One server publishes the files once: the time until they are published (their manifests,
//! digest and chunk crc32s, made) is printed apart, `PUBLISH <seconds> <CPU seconds>`. Then
//! rounds alternate, a fresh Harmony client (into an empty destination) and the raw copy, each
//! printing `RESULT <who> <case> <seconds> <bytes> <files>` and `CPU <who> <seconds>`. Then a
//! server start: a new server with a client connected at once, while the server still makes its
//! manifests: `START <seconds to the first file> <seconds to the last> <CPU seconds>`, from the
//! server's start. Last `RSS <KiB>`.
//!
//! `files_bench DIR big|small|tree [curve] [plain] [cold] [harmony-only] [--rounds N (default 3)]
//! [--src SRC]`. `DIR` is a scratch directory (filled on first use); the files sent are made
//! in `SRC` (default `DIR/src-<case>`). `cold`: the files' pages are dropped from the page
//! cache before every round (published while cached, read from the disk when sent), for a
//! `SRC` on a disk; it has no server start. `HF_CHUNK` (server chunk bytes) and `HF_WINDOW_MIB`
//! (client credit) override the defaults.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use harmony_files::{ClientConfig, FileClient, FileServer, SyncEvent};
use harmony_security::{KeyPair, MechanismConfig};
use harmony_testkit::arg;
use harmony_zmtp::SocketOptions;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, case, rest @ ..] = &args[..] else {
        return Err(
            "usage: files_bench DIR big|small|tree [curve] [plain] [harmony-only] [--rounds N]"
                .into(),
        );
    };
    let rounds: usize = arg("--rounds", 3).max(1);
    // For profiling Harmony alone.
    let harmony_only = rest.iter().any(|a| a == "harmony-only");
    let curve = rest.iter().any(|a| a == "curve");
    // Without the extensions: no crc32, no whole-file digest (what a zeromq/filemq peer gets).
    let plain = rest.iter().any(|a| a == "plain");
    let cold = rest.iter().any(|a| a == "cold");
    let src = match arg("--src", String::new()) {
        s if s.is_empty() => Path::new(dir).join(format!("src-{case}")),
        s => PathBuf::from(s),
    };
    let files = prepare(&src, case)?;
    let bytes: u64 = files.iter().map(|(_, len)| len).sum();
    let label = format!(
        "{case}{}{}{}",
        if curve { "+curve" } else { "" },
        if plain { "+no-ext" } else { "" },
        if cold { "+disk" } else { "" }
    );

    // Untimed: the first copy after the files are made pays the kernel for finding free pages
    // (reclaiming page cache), whichever side goes first; this one pays it for both.
    let warm = Path::new(dir).join(format!("warm-{label}"));
    let _ = fs::remove_dir_all(&warm);
    raw_tcp(&src, &warm, &files)?;
    let _ = fs::remove_dir_all(&warm);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let keys = KeyPair::generate();
    let cpu = cpu_seconds();
    let started = Instant::now();
    let server = runtime.block_on(serve(&src, curve.then_some(&keys)))?;
    println!(
        "PUBLISH {:.4} {:.2}",
        started.elapsed().as_secs_f64(),
        cpu_seconds() - cpu
    );

    for _ in 0..rounds {
        let dest = Path::new(dir).join(format!("dest-{label}"));
        let _ = fs::remove_dir_all(&dest);
        if cold {
            evict(&src, &files)?;
        }
        let cpu = cpu_seconds();
        let threads = thread_cpu()?;
        let (_, took) = runtime.block_on(harmony(
            &server,
            &dest,
            files.len(),
            curve.then_some(&keys),
            !plain,
            Instant::now(),
        ))?;
        report("harmony", &label, took, bytes, files.len(), cpu, &threads)?;
        let _ = fs::remove_dir_all(&dest);
        if harmony_only {
            continue;
        }

        let raw_dest = Path::new(dir).join(format!("raw-{label}"));
        let _ = fs::remove_dir_all(&raw_dest);
        if cold {
            evict(&src, &files)?;
        }
        let cpu = cpu_seconds();
        let threads = thread_cpu()?;
        let took = raw_tcp(&src, &raw_dest, &files)?;
        report("raw-tcp", &label, took, bytes, files.len(), cpu, &threads)?;
        let _ = fs::remove_dir_all(&raw_dest);
    }
    server.stop();

    if !cold {
        // After the rounds: it pays no first-use costs that they did not. Not for the disk case
        // (its point is the rounds' reads from the disk).
        let start_dest = Path::new(dir).join(format!("start-{label}"));
        let _ = fs::remove_dir_all(&start_dest);
        let cpu = cpu_seconds();
        let (first, all) = runtime.block_on(async {
            let started = Instant::now();
            let server = start_server(&src, curve.then_some(&keys)).await?;
            let key = curve.then_some(&keys);
            let took = harmony(&server, &start_dest, files.len(), key, !plain, started).await?;
            server.stop();
            Result::Ok(took)
        })?;
        println!(
            "START {:.4} {:.4} {:.2}",
            first.as_secs_f64(),
            all.as_secs_f64(),
            cpu_seconds() - cpu
        );
        let _ = fs::remove_dir_all(&start_dest);
    }

    if !plain && !curve && !cold {
        println!("CHECK {:.4}", check_cpu(bytes));
    }
    println!("RSS {}", harmony_testkit::peak_rss_kib().unwrap_or(0));
    Ok(())
}

/// Drops the files' pages from the page cache (written back first), so that the next
/// transfer reads them from the disk.
fn evict(src: &Path, files: &[(String, u64)]) -> Result<()> {
    for (name, _) in files {
        let file = File::open(src.join(name))?;
        file.sync_all()?;
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)?;
    }
    Ok(())
}

/// CPU seconds one thread takes for what a client checks on `bytes` of content with the
/// extensions: crc32 of each 1 MB chunk and BLAKE3 over all of it, the chunks cycling through a
/// credit window's worth of buffers (16 MiB, as the client's chunks do). Measured apart so the
/// table can say how much of the gap to the raw copy is the checking itself (run once the
/// server is stopped: the process CPU is this thread's).
fn check_cpu(bytes: u64) -> f64 {
    const CHUNK: usize = 1_000_000;
    let ring: Vec<Vec<u8>> = (0..16u8).map(|i| vec![i.wrapping_mul(37); CHUNK]).collect();
    let chunks = bytes.div_ceil(CHUNK as u64) as usize;
    let before = harmony_testkit::cpu_time();
    let mut hasher = blake3::Hasher::new();
    let mut crcs = 0u32;
    for i in 0..chunks {
        let chunk = &ring[i % ring.len()];
        crcs ^= crc32fast::hash(chunk);
        hasher.update(chunk);
    }
    std::hint::black_box((crcs, hasher.finalize()));
    (harmony_testkit::cpu_time() - before).as_secs_f64()
}

/// CPU time (user + system, every thread) this process has used so far, in seconds: on a
/// shared machine the wall-clock ratio swings with the load, the CPU each side needs does not.
fn cpu_seconds() -> f64 {
    harmony_testkit::cpu_time().as_secs_f64()
}

/// CPU seconds so far of this process's threads, by name.
fn thread_cpu() -> Result<std::collections::BTreeMap<String, f64>> {
    let mut by_name = std::collections::BTreeMap::new();
    for task in fs::read_dir("/proc/self/task")? {
        let Ok(stat) = fs::read_to_string(task?.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        *by_name
            .entry(stat[open + 1..close].to_string())
            .or_insert(0.0) += ticks as f64 / 100.0;
    }
    Ok(by_name)
}

/// Prints a round's lines: `RESULT`, then `CPU` (since `cpu`) and `SIDES <who> <sending side
/// CPU> <receiving side CPU>` (since `before`). The side that lives on across rounds (Harmony's
/// server, the raw copy's receiver on the main thread) is counted by its threads, the other as
/// the rest.
fn report(
    who: &str,
    label: &str,
    took: Duration,
    bytes: u64,
    files: usize,
    cpu: f64,
    before: &std::collections::BTreeMap<String, f64>,
) -> Result<()> {
    println!(
        "RESULT {who} {label} {:.4} {bytes} {files}",
        took.as_secs_f64()
    );
    let total = cpu_seconds() - cpu;
    println!("CPU {who} {total:.2}");
    let now = thread_cpu()?;
    let used = |names: &[&str]| -> f64 {
        names
            .iter()
            .map(|n| now.get(*n).unwrap_or(&0.0) - before.get(*n).unwrap_or(&0.0))
            .sum()
    };
    let (send, recv) = if who == "harmony" {
        let server = used(&["harmony-files-s", "files-srv-io"]);
        (server, total - server)
    } else {
        let receiver = used(&["files_bench"]);
        (total - receiver, receiver)
    };
    println!("SIDES {who} {send:.2} {recv:.2}");
    Ok(())
}

/// The files of a case (made once): `big` = one 1 GiB file, `small` = 10 000 x 4 KiB,
/// `tree` = 256 x 4 MiB.
fn prepare(src: &Path, case: &str) -> Result<Vec<(String, u64)>> {
    let (count, len): (usize, usize) = match case {
        "big" => (1, 1 << 30),
        "small" => (10_000, 4096),
        // 1 GiB in files big enough that hashing them takes a while, many enough that a client
        // connected at the start gets most of them while the rest are hashed (the server start).
        "tree" => (256, 4 << 20),
        _ => return Err(format!("unknown case {case}").into()),
    };
    let mut files = Vec::new();
    fs::create_dir_all(src)?;
    let past = SystemTime::now() - Duration::from_secs(60);
    for i in 0..count {
        let name = format!("d{}/f{i}.bin", i % 100);
        let path = src.join(&name);
        if fs::metadata(&path).map(|m| m.len()).ok() != Some(len as u64) {
            fs::create_dir_all(path.parent().ok_or("no parent")?)?;
            let mut out = BufWriter::new(File::create(&path)?);
            let block: Vec<u8> = (0..1 << 20)
                .map(|j: usize| ((j * 31 + i) % 251) as u8)
                .collect();
            let mut left = len;
            while left > 0 {
                let n = left.min(block.len());
                out.write_all(&block[..n])?;
                left -= n;
            }
            out.into_inner()
                .map_err(|e| e.into_error())?
                .set_modified(past)?;
        }
        files.push((name, len as u64));
    }
    Ok(files)
}

/// The server publishing `src` (a CURVE server with `keys`), once every file in it is
/// published. It never scans again: a scan in a raw round would be counted as the raw copy's.
async fn serve(src: &Path, keys: Option<&KeyPair>) -> Result<FileServer> {
    let mut server = start_server(src, keys).await?;
    server.ready().await?;
    Ok(server)
}

/// The server of [`serve`], as soon as it listens (its manifests still being made).
async fn start_server(src: &Path, keys: Option<&KeyPair>) -> Result<FileServer> {
    let options = match keys {
        Some(keys) => {
            SocketOptions::default().mechanism(MechanismConfig::CurveServer { keys: keys.clone() })
        }
        None => SocketOptions::default(),
    };
    let mut config = harmony_files::ServerConfig::default();
    if let Ok(c) = std::env::var("HF_CHUNK") {
        config.chunk_size = c.parse().unwrap_or(config.chunk_size);
    }
    Ok(FileServer::builder()
        .publish(src, "/")
        .config(config)
        .socket_options(options)
        .scan_interval(Duration::from_secs(3600))
        .start()
        .await?)
}

/// Harmony: a fresh client mirroring the server into `dest`; time from `started` (the
/// client's start, or the server's) to its first and to its last file on disk.
async fn harmony(
    server: &FileServer,
    dest: &Path,
    count: usize,
    server_key: Option<&KeyPair>,
    extensions: bool,
    started: Instant,
) -> Result<(Duration, Duration)> {
    {
        let client_opts = match server_key {
            Some(keys) => SocketOptions::default().mechanism(MechanismConfig::CurveClient {
                keys: KeyPair::generate(),
                server_key: *keys.public(),
            }),
            None => SocketOptions::default(),
        };
        let mut client = FileClient::builder(dest, server.endpoint())
            .config(ClientConfig {
                extensions,
                credit_window: std::env::var("HF_WINDOW_MIB")
                    .map_or(ClientConfig::default().credit_window, |m| {
                        m.parse::<u64>().unwrap_or(16) << 20
                    }),
                ..ClientConfig::default()
            })
            .socket_options(client_opts)
            .start()?;
        let mut updated = 0;
        let mut first = None;
        while updated < count {
            match client.next_event().await.ok_or("client stopped")? {
                SyncEvent::Updated { .. } => {
                    updated += 1;
                    first.get_or_insert_with(|| started.elapsed());
                }
                SyncEvent::Disconnected { reason } => return Err(reason.into()),
                _ => {}
            }
        }
        let took = started.elapsed();
        client.stop()?;
        Ok((first.unwrap_or(took), took))
    }
}

/// The baseline: each file read, sent over one TCP connection (name, length, bytes) and
/// written on the other side, in 1 MiB blocks.
fn raw_tcp(src: &Path, dest: &Path, files: &[(String, u64)]) -> Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let src: PathBuf = src.to_path_buf();
    let list = files.to_vec();
    let started = Instant::now();
    let sender = std::thread::Builder::new()
        .name("raw-sender".into())
        .spawn(move || -> std::io::Result<()> {
            let (stream, _) = listener.accept()?;
            let mut out = BufWriter::with_capacity(1 << 20, stream);
            let mut buf = vec![0u8; 1 << 20];
            for (name, len) in list {
                out.write_all(&(name.len() as u32).to_be_bytes())?;
                out.write_all(name.as_bytes())?;
                out.write_all(&len.to_be_bytes())?;
                let mut file = File::open(src.join(&name))?;
                loop {
                    let n = file.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    out.write_all(&buf[..n])?;
                }
            }
            out.flush()
        })?;
    let mut input = BufReader::with_capacity(1 << 20, TcpStream::connect(addr)?);
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..files.len() {
        let mut len4 = [0u8; 4];
        input.read_exact(&mut len4)?;
        let mut name = vec![0u8; u32::from_be_bytes(len4) as usize];
        input.read_exact(&mut name)?;
        let mut len8 = [0u8; 8];
        input.read_exact(&mut len8)?;
        let mut left = u64::from_be_bytes(len8);
        let path = dest.join(String::from_utf8(name)?);
        fs::create_dir_all(path.parent().ok_or("no parent")?)?;
        let mut out = File::create(&path)?;
        while left > 0 {
            let n = (left as usize).min(buf.len());
            input.read_exact(&mut buf[..n])?;
            out.write_all(&buf[..n])?;
            left -= n as u64;
        }
    }
    sender.join().map_err(|_| "sender panicked")??;
    Ok(started.elapsed())
}
