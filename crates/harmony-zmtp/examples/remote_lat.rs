//! `remote_lat <connect-to> <message-size> <roundtrip-count>`: measures round trips and prints
//! the one-way latency in libzmq's `remote_lat` format. A DEALER sending the REQ envelope (an
//! empty delimiter frame), so it talks to libzmq's REP `local_lat` as well as to ours.

use std::process::ExitCode;
use std::time::Instant;

use bytes::Bytes;
use harmony_zmtp::{DealerSocket, Message};

mod perf;

fn main() -> ExitCode {
    let Some((connect_to, size, count)) =
        perf::args("remote_lat <connect-to> <message-size> <roundtrip-count>")
    else {
        return ExitCode::FAILURE;
    };
    perf::runtime().block_on(async move {
        let dealer = DealerSocket::new(perf::options(false));
        if let Err(e) = dealer.connect(&connect_to) {
            eprintln!("error in connect: {e}");
            return ExitCode::FAILURE;
        }
        let msg = Message::from_frames([Bytes::new(), Bytes::from(vec![0u8; size])]);
        let start = Instant::now();
        for _ in 0..count {
            if dealer.send(msg.clone()).await.is_err() {
                return ExitCode::FAILURE;
            }
            match dealer.recv().await {
                Ok(m) if m.last().map_or(0, |b| b.len()) == size => {}
                _ => {
                    eprintln!("message of incorrect size received");
                    return ExitCode::FAILURE;
                }
            }
        }
        let elapsed = start.elapsed().as_micros() as f64;
        let latency = elapsed / (count as f64 * 2.0);
        println!("message size: {size} [B]");
        println!("roundtrip count: {count}");
        println!("average latency: {latency:.3} [us]");
        dealer.close().await;
        ExitCode::SUCCESS
    })
}
