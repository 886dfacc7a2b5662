//! Test support shared by Harmony's crates.
//!
//! - [`python`]: the Python interpreter that has pyzmq and zeromq-pyre (for interop tests).
//! - [`NetnsPair`]: two network namespaces joined by a veth pair on a private /24, so tests can
//!   broadcast without any packet leaving the machine; [`run_in_netns`] runs Rust code inside one.
//! - [`Tmux`]: a terminal pane to run a program in and read its screen, as a person would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// The workspace root (the directory holding the top `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The Python interpreter for interop tests: `$HARMONY_PYTHON`, else `<workspace>/.venv/bin/python`.
///
/// Panics with set-up instructions when neither exists: an interop test must not pass silently.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("HARMONY_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = workspace_root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "interop tests need Python with pyzmq and zeromq-pyre: run `python3 -m venv .venv && \
         .venv/bin/pip install pyzmq zeromq-pyre` in the workspace root (as .ci/run does), or set HARMONY_PYTHON"
    );
    venv
}

/// Runs a command to completion, panicking with its output if it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The value after `name` on the command line (`--tasks 1000`), or `default` when it is
/// missing or does not parse: the options of the benchmark programs.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time of this whole process so far (every thread, user and system), from
/// `getrusage` (microsecond resolution): the benchmark programs' CPU per operation.
pub fn cpu_time() -> std::time::Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF).map_or(std::time::Duration::ZERO, |u| {
        let (user, system) = (u.user_time(), u.system_time());
        let micros = |t: nix::sys::time::TimeVal| {
            u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000
                + u64::try_from(t.tv_usec()).unwrap_or(0)
        };
        std::time::Duration::from_micros(micros(user) + micros(system))
    })
}

/// This process's peak resident set size so far, in KiB (`VmHWM` in `/proc/self/status`);
/// `None` where it cannot be read.
pub fn peak_rss_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// One throughput measurement of a benchmark: operations per second, and CPU microseconds
/// of the whole process per operation.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Operations per second of wall-clock time.
    pub per_second: f64,
    /// CPU time of the process (every thread) per operation, in microseconds.
    pub cpu_us: f64,
}

impl Rate {
    /// The rate of `count` operations done in `wall` with `cpu` of CPU time.
    pub fn of(count: usize, wall: std::time::Duration, cpu: std::time::Duration) -> Self {
        Self {
            per_second: count as f64 / wall.as_secs_f64(),
            cpu_us: cpu.as_secs_f64() * 1e6 / count as f64,
        }
    }
}

/// The median of `values` (the upper one of an even count); panics when empty.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Keeps this thread, and the threads it starts from now on, on these CPUs
/// (`sched_setaffinity`): a benchmark pins itself before starting its runtime, so that its
/// figures do not depend on where the scheduler puts its threads.
pub fn pin_to_cpus(cpus: &[usize]) -> nix::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    for &cpu in cpus {
        set.set(cpu)?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
}

/// The CPUs this thread may run on now (`sched_getaffinity`): read before [`pin_to_cpus`],
/// pinning to all of them again undoes it.
pub fn allowed_cpus() -> nix::Result<Vec<usize>> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))?;
    Ok((0..nix::sched::CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect())
}

/// The load average over the last minute, 5 and 15 minutes (`/proc/loadavg`), as printed
/// beside every benchmark figure (empty where it cannot be read).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A UDP port that was free a moment ago, so parallel tests on loopback do not hear each
/// other's beacons.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind(("0.0.0.0", 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Two fresh network namespaces joined by a veth pair: `a` has `10.77.0.1/24`, `b` has
/// `10.77.0.2/24`, both with `lo` up. Deleted on drop. Needs root (CI runs as root).
#[derive(Debug)]
pub struct NetnsPair {
    /// Name of the first namespace.
    pub a: String,
    /// Name of the second namespace.
    pub b: String,
    /// Interface name inside `a`.
    pub if_a: String,
    /// Interface name inside `b`.
    pub if_b: String,
}

impl NetnsPair {
    /// Address of the first namespace.
    pub const ADDR_A: &'static str = "10.77.0.1";
    /// Address of the second namespace.
    pub const ADDR_B: &'static str = "10.77.0.2";
    /// Directed broadcast of the shared /24.
    pub const BROADCAST: &'static str = "10.77.0.255";

    /// Creates the pair; `tag` (a few letters) makes the names readable.
    pub fn create(tag: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{}", std::process::id() % 100_000, n);
        let pair = Self {
            a: format!("h{tag}{id}a"),
            b: format!("h{tag}{id}b"),
            if_a: format!("hv{id}a"),
            if_b: format!("hv{id}b"),
        };
        assert!(pair.if_a.len() <= 15, "interface name too long");
        run(Command::new("ip").args(["netns", "add", &pair.a]));
        run(Command::new("ip").args(["netns", "add", &pair.b]));
        run(Command::new("ip").args([
            "link", "add", &pair.if_a, "netns", &pair.a, "type", "veth", "peer", "name",
            &pair.if_b, "netns", &pair.b,
        ]));
        for (ns, ifname, addr) in [
            (&pair.a, &pair.if_a, Self::ADDR_A),
            (&pair.b, &pair.if_b, Self::ADDR_B),
        ] {
            run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]));
            run(Command::new("ip").args([
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                ifname,
            ]));
            run(Command::new("ip").args(["-n", ns, "link", "set", ifname, "up"]));
        }
        pair
    }

    /// A command that runs `program` inside namespace `ns`.
    pub fn command(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(program);
        cmd
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "delete", ns]).output();
        }
    }
}

/// Runs `f` on a new thread that has entered namespace `ns` (sockets it creates live there).
pub fn run_in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("netns thread panicked")
}

/// Whether this process can create network namespaces (root with iproute2).
pub fn can_create_netns() -> bool {
    nix::unistd::Uid::effective().is_root() && Command::new("ip").arg("-V").output().is_ok()
}

/// Fails the calling test, with the reason, when namespaces cannot be created here.
///
/// Namespace tests carry `netns` in their name: `cargo xtask ci` leaves them out, and reports
/// them as skipped with this reason, on a machine where they cannot run. Run directly, a
/// namespace test fails rather than pass without testing anything.
pub fn require_netns() {
    assert!(
        can_create_netns(),
        "this test needs root and iproute2 to create network namespaces \
         (`cargo xtask ci` skips tests named *netns* when it cannot create them)"
    );
}

/// Marks file `path` as last written a minute ago: settled, so a file server that waits for
/// files to stop changing publishes it at its first scan.
pub fn settled(path: &Path) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| {
            f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60))
        })
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// A terminal a test can look at as a person would: a detached tmux pane (Debian's `tmux`;
/// `.ci/run` installs it) on a tmux server of its own (`-L`), killed when dropped.
pub struct Tmux {
    socket: String,
}

/// Tmux servers started by this process, to keep their sockets apart.
static TMUX_SERVERS: AtomicU32 = AtomicU32::new(0);

impl Tmux {
    /// Runs `command` (a shell line) in a detached pane of `width` x `height` characters.
    ///
    /// Panics with set-up instructions when tmux is missing: a terminal test must not pass
    /// silently.
    pub fn start(command: &str, width: u16, height: u16) -> Self {
        let socket = format!(
            "harmony-test-{}-{}",
            std::process::id(),
            TMUX_SERVERS.fetch_add(1, Ordering::Relaxed)
        );
        let tmux = Self { socket };
        let (w, h) = (width.to_string(), height.to_string());
        let status = tmux
            .cmd()
            .args(["new-session", "-d", "-s", "main", "-x", &w, "-y", &h])
            .arg(command)
            .status()
            .expect("terminal tests need tmux: `apt-get install -y tmux` (.ci/run installs it)");
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.socket, "-f", "/dev/null"]);
        cmd
    }

    /// The pane's text as it is on the screen now.
    pub fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "main"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `keys` as tmux's `send-keys` reads them (`"hello"`, `"Enter"`, `"C-d"`).
    pub fn send_keys(&self, keys: &[&str]) {
        let status = self
            .cmd()
            .args(["send-keys", "-t", "main"])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success(), "tmux send-keys {keys:?} failed");
    }

    /// Watches the screen (every 5 ms, at most `within`) until `done` holds for it; returns
    /// every different screen seen, the last one first satisfying `done`. Panics with them
    /// when it never does.
    pub fn watch(&self, within: std::time::Duration, done: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = std::time::Instant::now() + within;
        let mut screens: Vec<String> = Vec::new();
        loop {
            let screen = self.screen();
            let met = done(&screen);
            if screens.last() != Some(&screen) {
                screens.push(screen);
            }
            if met {
                return screens;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the screen never got there: {screens:#?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_pair_reaches_across_the_veth() {
        require_netns();
        use std::net::UdpSocket;
        use std::time::Duration;
        let pair = NetnsPair::create("tk");
        let rx = run_in_netns(&pair.b, || UdpSocket::bind((NetnsPair::ADDR_B, 0)).unwrap());
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let to = rx.local_addr().unwrap();
        run_in_netns(&pair.a, move || {
            UdpSocket::bind((NetnsPair::ADDR_A, 0))
                .unwrap()
                .send_to(b"hello", to)
                .unwrap();
        });
        let mut buf = [0u8; 16];
        let (n, from) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from.ip().to_string(), NetnsPair::ADDR_A);
    }
}
