//! A 1 GiB file moves with a peak RSS under 64 MiB on either side. Each side runs in a child
//! process (this test binary again, running the ignored `side` test), which reports its own
//! `VmHWM` from `/proc/self/status` when done; the file is sparse, so making it costs nothing.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use harmony_files::{ext, ClientConfig, FileClient, FileServer, SyncEvent};

/// 1 GiB; `HARMONY_FILES_GIB_MIB` sets another size in MiB (for trying things out).
fn size() -> u64 {
    std::env::var("HARMONY_FILES_GIB_MIB").map_or(1 << 30, |m| m.parse::<u64>().unwrap() << 20)
}
const LIMIT_KIB: u64 = 64 * 1024;

fn peak_rss_kib() -> u64 {
    harmony_testkit::peak_rss_kib().expect("VmHWM in /proc/self/status")
}

fn spawn(role: &str, dir: &std::path::Path, endpoint: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "side",
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HARMONY_FILES_SIDE", role)
        .env("HARMONY_FILES_DIR", dir)
        .env("HARMONY_FILES_ENDPOINT", endpoint)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn side")
}

/// Lines the child prints, read on a thread so that a stuck child fails the test in time.
fn lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { return };
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    rx
}

/// The rest of the first line starting with `prefix`.
fn line(rx: &std::sync::mpsc::Receiver<String>, prefix: &str) -> String {
    loop {
        let l = rx
            .recv_timeout(Duration::from_secs(200))
            .unwrap_or_else(|e| panic!("waiting for {prefix:?}: {e}"));
        // libtest may have printed "test side ... " on the same line.
        if let Some((_, rest)) = l.split_once(prefix) {
            return rest.trim().to_string();
        }
    }
}

#[test]
fn one_gib_with_peak_rss_under_64_mib_on_either_side() {
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let file = std::fs::File::create(src.path().join("gib.bin")).unwrap();
    file.set_len(size()).unwrap();
    drop(file);
    harmony_testkit::settled(&src.path().join("gib.bin"));
    let mut server = spawn("server", src.path(), "");
    let server_out = lines(&mut server);
    let endpoint = line(&server_out, "ENDPOINT ");
    let mut client = spawn("client", dest.path(), &endpoint);
    let client_out = lines(&mut client);
    let digest = line(&client_out, "DIGEST ");
    let client_rss: u64 = line(&client_out, "RSS ").parse().unwrap();
    drop(server.stdin.take()); // tells the server to report and stop
    let server_rss: u64 = line(&server_out, "RSS ").parse().unwrap();
    assert!(client.wait().unwrap().success() && server.wait().unwrap().success());
    let sparse_digest = {
        let mut hasher = ext::Hasher::new();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..size() >> 20 {
            hasher.update(&zeros);
        }
        ext::digest_hex(&hasher)
    };
    assert_eq!(digest, sparse_digest);
    assert_eq!(
        std::fs::metadata(dest.path().join("gib.bin"))
            .unwrap()
            .len(),
        size()
    );
    eprintln!("peak RSS: server {server_rss} KiB, client {client_rss} KiB");
    assert!(server_rss < LIMIT_KIB, "server peak RSS {server_rss} KiB");
    assert!(client_rss < LIMIT_KIB, "client peak RSS {client_rss} KiB");
}

/// One side of the transfer, run by the test above in a child process.
#[test]
#[ignore = "a child process of one_gib_with_peak_rss_under_64_mib_on_either_side"]
fn side() {
    let Ok(role) = std::env::var("HARMONY_FILES_SIDE") else {
        return;
    };
    let dir = std::env::var("HARMONY_FILES_DIR").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut stdout = std::io::stdout();
    if role == "server" {
        let server = runtime
            .block_on(FileServer::builder().publish(&dir, "/").start())
            .unwrap();
        writeln!(stdout, "ENDPOINT {}", server.endpoint()).unwrap();
        stdout.flush().unwrap();
        let _ = std::io::stdin().read_line(&mut String::new());
        server.stop();
    } else {
        let endpoint = std::env::var("HARMONY_FILES_ENDPOINT").unwrap();
        let mut client = FileClient::builder(&dir, endpoint)
            .config(ClientConfig::default())
            .start()
            .unwrap();
        let digest = runtime.block_on(async {
            loop {
                match client.next_event().await.expect("client runs") {
                    SyncEvent::Updated { digest, .. } => {
                        return digest.expect("digests with the extensions")
                    }
                    SyncEvent::Disconnected { reason } => panic!("{reason}"),
                    _ => {}
                }
            }
        });
        client.stop().unwrap();
        writeln!(stdout, "DIGEST {digest}").unwrap();
    }
    writeln!(stdout, "RSS {}", peak_rss_kib()).unwrap();
    stdout.flush().unwrap();
}
