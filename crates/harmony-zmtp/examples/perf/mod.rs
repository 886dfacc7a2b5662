//! Shared bits of the four perf tools: libzmq's argument order, and the runtime.

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
