//! Shared bits of the four perf tools: libzmq's argument order, the runtime, and the
//! security (`ZMTP_PERF_CURVE=1`: CURVE with a fixed test key pair).

/// Parses `<endpoint> <message-size> <count>`, printing `usage` on error.
pub(crate) fn args(usage: &str) -> Option<(String, usize, u64)> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match a.as_slice() {
        [ep, size, count] => size
            .parse()
            .ok()
            .zip(count.parse().ok())
            .map(|(s, c)| (ep.clone(), s, c)),
        _ => None,
    };
    if parsed.is_none() {
        eprintln!("usage: {usage}");
    }
    parsed
}

/// One thread by default, like one application thread plus libzmq's one I/O thread would share
/// two cores with the peer process; `HARMONY_THREADS=n` for a multi-thread runtime.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    let threads: usize = std::env::var("HARMONY_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut b = if threads > 1 {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all().build().expect("tokio runtime")
}

/// The server's secret key of the CURVE test key pair (from libzmq's `zmq_curve(7)` page, so
/// the C driver in `benches/zmtp/` uses the same pair).
const TEST_SERVER_SECRET: &str = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6";
/// The client's secret key of the CURVE test key pair.
const TEST_CLIENT_SECRET: &str = "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs";

/// Socket options for a perf tool: NULL, or CURVE with the fixed test key pair when
/// `ZMTP_PERF_CURVE=1` (the binding side is the CURVE server, the connecting side the client).
pub(crate) fn options(server: bool) -> harmony_zmtp::SocketOptions {
    use harmony_security::KeyPair;
    use harmony_zmtp::MechanismConfig;
    let opts = harmony_zmtp::SocketOptions::default();
    if std::env::var("ZMTP_PERF_CURVE").map_or(true, |v| v.is_empty() || v == "0") {
        return opts;
    }
    let server_keys = KeyPair::from_secret_z85(TEST_SERVER_SECRET).expect("test server key");
    opts.mechanism(if server {
        MechanismConfig::CurveServer { keys: server_keys }
    } else {
        MechanismConfig::CurveClient {
            keys: KeyPair::from_secret_z85(TEST_CLIENT_SECRET).expect("test client key"),
            server_key: *server_keys.public(),
        }
    })
}
