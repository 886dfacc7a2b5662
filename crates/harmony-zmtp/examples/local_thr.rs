//! `local_thr <bind-to> <message-size> <message-count>`: receives on a PULL socket and prints
//! the throughput in libzmq's `local_thr` format, so it can face libzmq's `remote_thr`.

use std::process::ExitCode;
use std::time::Instant;

use harmony_zmtp::PullSocket;

mod perf;

fn main() -> ExitCode {
    let Some((bind_to, size, count)) =
        perf::args("local_thr <bind-to> <message-size> <message-count>")
    else {
        return ExitCode::FAILURE;
    };
    perf::runtime().block_on(async move {
        let pull = PullSocket::new(perf::options(true));
        if let Err(e) = pull.bind(&bind_to).await {
            eprintln!("error in bind: {e}");
            return ExitCode::FAILURE;
        }
        let check = |len: usize| {
            if len != size {
                eprintln!("message of incorrect size received");
                false
            } else {
                true
            }
        };
        let Ok(first) = pull.recv().await else {
            return ExitCode::FAILURE;
        };
        if !check(first.byte_len()) {
            return ExitCode::FAILURE;
        }
        let start = Instant::now();
        for _ in 1..count {
            match pull.recv().await {
                Ok(m) if check(m.byte_len()) => {}
                _ => return ExitCode::FAILURE,
            }
        }
        let elapsed = start.elapsed().as_micros().max(1) as f64;
        let throughput = (count as f64 / elapsed * 1_000_000.0) as u64;
        let megabits = (throughput * size as u64 * 8) as f64 / 1_000_000.0;
        println!("message size: {size} [B]");
        println!("message count: {count}");
        println!("mean throughput: {throughput} [msg/s]");
        println!("mean throughput: {megabits:.3} [Mb/s]");
        ExitCode::SUCCESS
    })
}
