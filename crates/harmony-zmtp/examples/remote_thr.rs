//! `remote_thr <connect-to> <message-size> <message-count>`: sends on a PUSH socket, like
//! libzmq's `remote_thr`, then waits until everything is written.

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use harmony_zmtp::{Message, PushSocket};

mod perf;

fn main() -> ExitCode {
    let Some((connect_to, size, count)) =
        perf::args("remote_thr <connect-to> <message-size> <message-count>")
    else {
        return ExitCode::FAILURE;
    };
    perf::runtime().block_on(async move {
        let push = PushSocket::new(perf::options(false).linger(Duration::from_secs(60)));
        if let Err(e) = push.connect(&connect_to) {
            eprintln!("error in connect: {e}");
            return ExitCode::FAILURE;
        }
        // One shared buffer: every message is a reference to it (zero copy).
        let body = Bytes::from(vec![0u8; size]);
        for _ in 0..count {
            if let Err(e) = push.send(Message::from(body.clone())).await {
                eprintln!("error in send: {e}");
                return ExitCode::FAILURE;
            }
        }
        push.close().await;
        ExitCode::SUCCESS
    })
}
