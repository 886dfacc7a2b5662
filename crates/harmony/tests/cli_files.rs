//! `harmony files serve` and `harmony files sync --once` as a user runs them, in two
//! processes that find each other by discovery on loopback; plain and with CURVE.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harmony::files::path::{CACHE_SUFFIX, PART_SUFFIX};

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
    for (name, data) in files {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, data).unwrap();
        harmony_testkit::settled(&path);
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

/// Serves `src` and syncs it once into a new destination; checks what arrived and returns what
/// the sync said. The server must say what it published and that a client connected.
fn sync_once(src: &Path, port: &str, serve_extra: &[&str]) -> String {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut serve = files("serve", src, port);
    serve
        .args(serve_extra)
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap());
    let _serving = Serving(serve.spawn().expect("harmony files serve"));
    let dest = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = finish(files("sync", dest.path(), port).arg("--once"));
    assert!(ok, "{stderr}");
    for name in ["hello.txt", "docs/readme.txt", "data/deep/big.bin"] {
        assert_eq!(
            fs::read(dest.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}\n{stderr}")),
            fs::read(src.join(name)).unwrap(),
            "{name}"
        );
        // Not a terminal: one line per file.
        assert!(stderr.contains(&format!("updated {name} (")), "{stderr}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let said = fs::read_to_string(log.path()).unwrap();
        let connected = said
            .lines()
            .any(|l| l.starts_with("harmony: client ") && l.ends_with(" connected"));
        if said.contains("harmony: 3 files published") && connected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not say so: {said}"
        );
        std::thread::sleep(Duration::from_millis(10));
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
fn serve_keeps_its_manifests_on_record_when_asked() {
    let src = tempfile::tempdir().unwrap();
    publish(src.path());
    let keep = tempfile::tempdir().unwrap();
    let record = keep.path().join("manifests");
    let port = harmony_testkit::free_udp_port().to_string();
    let arg = record.to_string_lossy().into_owned();
    sync_once(src.path(), &port, &["--manifest-record", &arg]);
    // Written by the server's manifest thread once caught up: by now, or very soon.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !record.exists() {
        assert!(Instant::now() < deadline, "no record of manifests");
        std::thread::sleep(Duration::from_millis(10));
    }
    let text = fs::read_to_string(&record).unwrap();
    for name in ["hello.txt", "docs/readme.txt", "data/deep/big.bin"] {
        assert!(
            text.contains(&format!("{name}\0")),
            "{name} not on record: {text:?}"
        );
    }
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

// Faults on the destination: each is a clear error from `harmony files sync`, nothing half
// written is left under a final name, and another client of the same server is untouched.

/// A FILEMQ server in this process publishing `src`; it serves while the runtime lives.
fn serve_here(src: &Path) -> (tokio::runtime::Runtime, harmony::files::FileServer) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime
        .block_on(
            harmony::files::FileServer::builder()
                .publish(src, "/")
                .scan_interval(Duration::from_millis(100))
                .stable_after(Duration::from_millis(100))
                .start(),
        )
        .expect("server starts");
    (runtime, server)
}

/// `harmony files sync DEST --from ENDPOINT --once`, output captured.
fn sync_from(dest: &Path, endpoint: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["files", "sync"])
        .arg(dest)
        .args(["--from", endpoint, "--once"]);
    cmd
}

/// Runs `cmd` to its end (at most a minute): success, stdout, stderr.
fn finish(cmd: &mut Command) -> (bool, String, String) {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    exit_of(child)
}

/// Waits (at most a minute) for `child` to exit: success, and what it wrote to the pipes it has.
fn exit_of(mut child: Child) -> (bool, String, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{child:?} did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |pipe: Option<&mut dyn std::io::Read>| {
        let mut text = String::new();
        if let Some(pipe) = pipe {
            pipe.read_to_string(&mut text).unwrap();
        }
        text
    };
    let out = read(child.stdout.as_mut().map(|p| p as &mut dyn std::io::Read));
    let err = read(child.stderr.as_mut().map(|p| p as &mut dyn std::io::Read));
    (status.success(), out, err)
}

/// A client into a healthy destination, started beside a failing one: it mirrors everything.
fn healthy_client(src: &Path, endpoint: &str) -> std::thread::JoinHandle<()> {
    let src = src.to_path_buf();
    let endpoint = endpoint.to_string();
    std::thread::spawn(move || {
        let dest = tempfile::tempdir().unwrap();
        let (ok, _, err) = finish(&mut sync_from(dest.path(), &endpoint));
        assert!(ok, "the healthy client failed: {err}");
        for name in ["hello.txt", "docs/readme.txt", "data/deep/big.bin"] {
            assert_eq!(
                fs::read(dest.path().join(name)).unwrap(),
                fs::read(src.join(name)).unwrap(),
                "{name}"
            );
        }
    })
}

/// Every file under `dest` is a partial file or identical to its source.
fn nothing_half_written(dest: &Path, src: &Path) {
    let mut stack = vec![dest.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(PART_SUFFIX) || name.ends_with(CACHE_SUFFIX)
            {
                continue;
            }
            let rel = path.strip_prefix(dest).unwrap();
            assert_eq!(
                fs::read(&path).unwrap(),
                fs::read(src.join(rel)).unwrap(),
                "{} is under its final name but not whole",
                rel.display()
            );
        }
    }
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

#[test]
fn sync_into_a_directory_it_may_not_write_fails_cleanly() {
    use std::os::unix::fs::PermissionsExt;
    let src = tempfile::tempdir().unwrap();
    publish(src.path());
    fs::create_dir_all(src.path().join("locked")).unwrap();
    fs::write(
        src.path().join("locked/secret.txt"),
        b"for the eyes of a few",
    )
    .unwrap();
    harmony_testkit::settled(&src.path().join("locked/secret.txt"));
    let (_runtime, server) = serve_here(src.path());
    let healthy = healthy_client(src.path(), server.endpoint());

    let base = tempfile::tempdir().unwrap();
    fs::set_permissions(base.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let dest = base.path().join("dest");
    let locked = dest.join("locked");
    fs::create_dir_all(&locked).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).unwrap();
    let mut sync = if is_root() {
        // Root writes anywhere: the client runs as nobody, who owns the destination but not
        // `locked`. Its own copy of the program, where nobody can reach it (the build tree
        // may sit under a private home).
        std::os::unix::fs::chown(&dest, Some(65534), Some(65534)).unwrap();
        let program = base.path().join("harmony");
        fs::copy(BIN, &program).unwrap();
        fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&program)
            .args(sync_from(&dest, server.endpoint()).get_args());
        cmd
    } else {
        sync_from(&dest, server.endpoint())
    };
    let (ok, _, err) = finish(&mut sync);
    assert!(!ok, "writing into a read-only directory must fail: {err}");
    assert!(
        err.contains("files sync: ")
            && err.contains("Permission denied")
            && err.contains("secret.txt"),
        "the error names the cause and the file: {err}"
    );
    assert_eq!(fs::read_dir(&locked).unwrap().count(), 0);
    nothing_half_written(&dest, src.path());
    healthy.join().expect("the other client is untouched");
}

#[test]
fn sync_onto_a_full_disk_fails_cleanly_netns() {
    // Root only (a tmpfs in a private mount namespace); `netns` in the name lets
    // `cargo xtask ci` skip it, with the reason, where it cannot run.
    harmony_testkit::require_netns();
    let src = tempfile::tempdir().unwrap();
    publish(src.path());
    let (_runtime, server) = serve_here(src.path());
    let healthy = healthy_client(src.path(), server.endpoint());
    let base = tempfile::tempdir().unwrap();
    let dest = base.path().join("dest");
    fs::create_dir(&dest).unwrap();
    // 1 MiB of disk for a 3 MB file. The mount lives and dies with the child's namespace, so
    // the child looks at what is left before it exits.
    let script = r#"
        mount -t tmpfs -o size=1m harmony-full "$1" || exit 99
        "$2" files sync "$1" --from "$3" --once
        rc=$?
        cd "$1" && find . -type f | while read -r f; do
            case "$(basename "$f")" in
                .*"$5") echo "PARTIAL $f" ;;
                *) if cmp -s "$f" "$4/$f"; then echo "WHOLE $f"; else echo "DIFFERS $f"; fi ;;
            esac
        done
        exit $rc
    "#;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .arg(&dest)
    .arg(BIN)
    .arg(server.endpoint())
    .arg(src.path())
    .arg(PART_SUFFIX);
    let (ok, out, err) = finish(&mut cmd);
    assert!(!ok, "a full disk must fail the sync: {out}{err}");
    assert!(
        err.contains("files sync: ")
            && err.contains("No space left on device")
            && err.contains("big.bin"),
        "the error names the cause and the file: {err}"
    );
    assert!(!out.contains("DIFFERS"), "{out}");
    assert!(!out.contains("WHOLE ./data/deep/big.bin"), "{out}");
    // The host's directory never saw a byte.
    assert_eq!(fs::read_dir(&dest).unwrap().count(), 0);
    healthy.join().expect("the other client is untouched");
}

// On a terminal: what a person sees, read off a tmux pane (Debian's `tmux`; `.ci/run` installs
// it).

#[test]
fn sync_on_a_terminal_draws_bars_then_says_what_it_did() {
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("small.txt"), b"hello\n").unwrap();
    // Large enough to be on screen for a while: 256 MiB.
    let block: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut big = fs::File::create(src.path().join("big.bin")).unwrap();
    for _ in 0..256 {
        std::io::Write::write_all(&mut big, &block).unwrap();
    }
    drop(big);
    for name in ["small.txt", "big.bin"] {
        harmony_testkit::settled(&src.path().join(name));
    }
    let (_runtime, server) = serve_here(src.path());
    let dest = tempfile::tempdir().unwrap();
    let tmux = harmony_testkit::Tmux::start(
        &format!(
            "{BIN} files sync {} --from {} --once; echo EXIT=$?; sleep 60",
            dest.path().display(),
            server.endpoint()
        ),
        100,
        16,
    );
    // Every different screen, until the program has exited.
    let screens = tmux.watch(Duration::from_secs(60), |s| s.contains("EXIT="));
    // Kept for a person to look at.
    let record = Path::new(env!("CARGO_TARGET_TMPDIR")).join("files-sync-tty.txt");
    let _ = fs::write(&record, screens.join("\n-----\n"));
    let all = || screens.iter().flat_map(|s| s.lines());

    // While it ran: the file's bar (name, bar, bytes of total) and the overall line.
    assert!(
        all().any(|l| l.contains("big.bin") && l.contains('░') && l.contains("MiB/256.00 MiB")),
        "no bar for big.bin: {screens:#?}"
    );
    assert!(
        all().any(|l| l.contains(" received (")),
        "no overall line: {screens:#?}"
    );
    // At the end: the bars are gone, a summary says what was done, and it exited 0; no
    // line-per-file output (that is for a stderr that is not a terminal).
    let last = screens.last().unwrap();
    assert!(last.contains("EXIT=0"), "{last}");
    assert!(
        last.contains("harmony: in sync: 2 files updated (256.00 MiB), 0 files deleted in "),
        "{last}"
    );
    assert!(
        !last.contains('░') && !last.contains('█'),
        "bars left: {last}"
    );
    assert!(!last.contains("updated big.bin ("), "{last}");
    assert_eq!(
        fs::metadata(dest.path().join("big.bin")).unwrap().len(),
        256 << 20
    );
    assert_eq!(fs::read(dest.path().join("small.txt")).unwrap(), b"hello\n");
}

// Killed with SIGKILL mid-transfer (no goodbye, no flush) and started again: the partial file
// is resumed, not started over. The proof: the program says it resumes, and the file that ends
// under the final name is the partial file seen before the kill (same inode: a restart from
// zero makes a new one).

/// `SRC/big.bin`, 256 MiB, stable (modified in the past).
fn publish_big(src: &Path) -> Vec<u8> {
    let block: Vec<u8> = (0..1u32 << 20).map(|i| (i % 253) as u8).collect();
    let mut data = Vec::with_capacity(256 << 20);
    // Each MiB a different rotation of the block.
    for i in 0..256 {
        data.extend_from_slice(&block[i * 17..]);
        data.extend_from_slice(&block[..i * 17]);
    }
    fs::write(src.join("big.bin"), &data).unwrap();
    harmony_testkit::settled(&src.join("big.bin"));
    data
}

/// `harmony files serve SRC --bind ENDPOINT`, beacons on loopback only.
fn serve_at(src: &Path, endpoint: &str) -> Child {
    files("serve", src, &harmony_testkit::free_udp_port().to_string())
        .args(["--bind", endpoint])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("harmony files serve")
}

/// `harmony files sync DEST --from ENDPOINT --once`, its stderr piped.
fn sync_process(dest: &Path, endpoint: &str) -> Child {
    sync_from(dest, endpoint)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("harmony files sync")
}

/// A loopback endpoint with a port free now.
fn free_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("tcp://{}", listener.local_addr().unwrap())
}

/// Waits (at most a minute) until `dest`'s partial big.bin holds at least 32 MiB; its inode.
fn partial_under_way(dest: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let partial = dest.join(format!(".big.bin{PART_SUFFIX}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(meta) = fs::metadata(&partial) {
            if meta.len() >= 32 << 20 {
                return meta.ino();
            }
        }
        assert!(
            !dest.join("big.bin").exists(),
            "finished before the kill: make the file bigger"
        );
        assert!(Instant::now() < deadline, "no partial file under way");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The final big.bin: identical to `data`, and the same file (inode) as the partial one.
fn resumed_into_place(dest: &Path, data: &[u8], partial_inode: u64) {
    use std::os::unix::fs::MetadataExt;
    let done = dest.join("big.bin");
    assert_eq!(
        fs::metadata(&done).unwrap().ino(),
        partial_inode,
        "the partial file was started over, not resumed"
    );
    assert!(fs::read(&done).unwrap() == data, "big.bin differs");
}

#[test]
fn serve_killed_with_sigkill_and_restarted_the_sync_resumes() {
    let src = tempfile::tempdir().unwrap();
    let data = publish_big(src.path());
    let endpoint = free_endpoint();
    let mut server = Serving(serve_at(src.path(), &endpoint));
    let dest = tempfile::tempdir().unwrap();
    let sync = sync_process(dest.path(), &endpoint);

    let inode = partial_under_way(dest.path());
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let _server = Serving(serve_at(src.path(), &endpoint));

    let (ok, _, err) = exit_of(sync);
    assert!(ok, "{err}");
    assert!(err.contains("disconnected: "), "{err}");
    // Said once however many retries it took, and the return said.
    let lines: Vec<&str> = err.lines().collect();
    let said = |text: &str| lines.iter().filter(|l| l.starts_with(text)).count();
    assert_eq!(said("disconnected: "), said("reconnected"), "{err}");
    assert!(said("reconnected") >= 1, "{err}");
    assert!(err.contains("resuming big.bin at "), "{err}");
    resumed_into_place(dest.path(), &data, inode);
}

#[test]
fn sync_killed_with_sigkill_and_restarted_resumes_from_what_it_has() {
    let src = tempfile::tempdir().unwrap();
    let data = publish_big(src.path());
    let endpoint = free_endpoint();
    let _server = Serving(serve_at(src.path(), &endpoint));
    let dest = tempfile::tempdir().unwrap();
    let mut first = sync_process(dest.path(), &endpoint);

    let inode = partial_under_way(dest.path());
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(!dest.path().join("big.bin").exists());

    let (ok, _, err) = exit_of(sync_process(dest.path(), &endpoint));
    assert!(ok, "{err}");
    assert!(err.contains("resuming big.bin at "), "{err}");
    resumed_into_place(dest.path(), &data, inode);
}

/// Waits (at most a minute) until `path` holds `data`, while `child` runs.
fn arrives(path: &Path, data: &[u8], child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while fs::read(path).ok().as_deref() != Some(data) {
        assert!(child.try_wait().unwrap().is_none(), "sync exited");
        assert!(
            Instant::now() < deadline,
            "{} never arrived",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `files sync` found its server by discovery; the server is killed and started again, on
/// another (ephemeral) port: the sync follows it there and gets what it publishes now. Another
/// server, publishing another directory, is there all along: the sync never goes to it.
#[test]
fn sync_follows_its_server_restarted_at_another_port() {
    let (src, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    publish(src.path());
    let elsewhere = other.path().join("elsewhere.txt");
    fs::write(&elsewhere, b"another tree\n").unwrap();
    harmony_testkit::settled(&elsewhere);
    let port = harmony_testkit::free_udp_port().to_string();
    let serve = |dir: &Path| {
        let mut serve = files("serve", dir, &port);
        serve.stdout(Stdio::null()).stderr(Stdio::null());
        Serving(serve.spawn().expect("harmony files serve"))
    };
    let first = serve(src.path());
    let dest = tempfile::tempdir().unwrap();
    let mut sync = files("sync", dest.path(), &port)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("harmony files sync");
    let hello = fs::read(src.path().join("hello.txt")).unwrap();
    arrives(&dest.path().join("hello.txt"), &hello, &mut sync);
    let _other = serve(other.path());
    drop(first);
    let after = src.path().join("after.txt");
    fs::write(&after, b"published by the second server\n").unwrap();
    harmony_testkit::settled(&after);
    let _second = serve(src.path());
    let data = fs::read(&after).unwrap();
    arrives(&dest.path().join("after.txt"), &data, &mut sync);
    sync.kill().unwrap();
    let (_, _, stderr) = exit_of(sync);
    assert!(!dest.path().join("elsewhere.txt").exists(), "{stderr}");
    assert!(dest.path().join("data/deep/big.bin").exists(), "{stderr}");
    assert!(
        stderr.contains("harmony: the file server is now at tcp://"),
        "{stderr}"
    );
    let mirrored = stderr.matches("harmony: mirroring tcp://").count();
    assert_eq!(mirrored, 2, "{stderr}");
}

/// `files sync --from` a server not started yet: it says so once, then that it connected when
/// the server comes, and syncs.
#[test]
fn sync_says_when_its_server_does_not_answer_yet() {
    use std::io::BufRead;
    let src = tempfile::tempdir().unwrap();
    publish(src.path());
    let endpoint = free_endpoint();
    let dest = tempfile::tempdir().unwrap();
    let mut sync = sync_process(dest.path(), &endpoint);
    let stderr = sync.stderr.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut said = Vec::new();
    while !said.iter().any(|l: &String| l.contains("does not answer")) {
        let line = lines.recv_timeout(Duration::from_secs(60));
        said.push(line.unwrap_or_else(|e| panic!("{e}: {said:?}")));
    }
    let _server = Serving(serve_at(src.path(), &endpoint));
    let (ok, _, _) = exit_of(sync);
    said.extend(lines.iter());
    assert!(ok, "{said:?}");
    let count = |text: &str| said.iter().filter(|l| l.as_str() == text).count();
    assert_eq!(
        count("the server does not answer yet (retrying)"),
        1,
        "{said:?}"
    );
    assert_eq!(count("connected"), 1, "{said:?}");
    assert!(said
        .iter()
        .any(|l| l.starts_with("harmony: in sync: 3 files updated")));
}
