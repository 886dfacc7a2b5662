//! `harmony files serve` and `harmony files sync --once` as a user runs them, in two
//! processes that find each other by discovery on loopback; plain and with CURVE.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const BIN: &str = env!("CARGO_BIN_EXE_harmony");

/// Kills the serving process when the test ends, however it ends.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn publish(dir: &Path) {
    let files: [(&str, Vec<u8>); 3] = [
        ("hello.txt", b"hello, world\n".to_vec()),
        ("docs/readme.txt", b"FILEMQ capture\n".to_vec()),
        (
            "data/deep/big.bin",
            (0..3_000_000u32).map(|i| (i % 251) as u8).collect(),
        ),
    ];
    let past = SystemTime::now() - Duration::from_secs(10);
    for (name, data) in files {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, data).unwrap();
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(past)
            .unwrap();
    }
}

/// `harmony files VERB DIR`, discovering on loopback at `port`.
fn files(verb: &str, dir: &Path, port: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["files", verb]).arg(dir).args([
        "--interface",
        "loopback",
        "--port",
        port,
        "--interval-ms",
        "100",
    ]);
    cmd
}

fn sync_once(src: &Path, port: &str, serve_extra: &[&str]) -> String {
    let mut serve = files("serve", src, port);
    serve
        .args(serve_extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _serving = Serving(serve.spawn().expect("harmony files serve"));
    let dest = tempfile::tempdir().unwrap();
    let mut sync = files("sync", dest.path(), port)
        .arg("--once")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("harmony files sync");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = sync.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = sync.kill();
            panic!("sync --once did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(sync.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    for name in ["hello.txt", "docs/readme.txt", "data/deep/big.bin"] {
        assert_eq!(
            fs::read(dest.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}\n{stderr}")),
            fs::read(src.join(name)).unwrap(),
            "{name}"
        );
        // Not a terminal: one line per file.
        assert!(stderr.contains(&format!("updated {name} (")), "{stderr}");
    }
    stderr
}

#[test]
fn serve_and_sync_once_by_discovery() {
    let src = tempfile::tempdir().unwrap();
    publish(src.path());
    let port = harmony_testkit::free_udp_port().to_string();
    sync_once(src.path(), &port, &[]);
}

#[test]
fn serve_and_sync_once_with_curve() {
    let src = tempfile::tempdir().unwrap();
    publish(src.path());
    let keys = tempfile::tempdir().unwrap();
    let cert = keys.path().join("server");
    let status = Command::new(BIN)
        .args(["keygen"])
        .arg(&cert)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let port = harmony_testkit::free_udp_port().to_string();
    let cert = cert.to_string_lossy().into_owned();
    sync_once(src.path(), &port, &["--curve-cert", &cert]);
}
