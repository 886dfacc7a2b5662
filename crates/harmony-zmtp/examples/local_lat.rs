//! `local_lat <bind-to> <message-size> <roundtrip-count>`: echoes every message back, like
//! libzmq's `local_lat`. A ROUTER, so both libzmq's REQ `remote_lat` and ours can connect.

use std::process::ExitCode;

use harmony_zmtp::RouterSocket;

mod perf;

fn main() -> ExitCode {
    let Some((bind_to, size, count)) =
        perf::args("local_lat <bind-to> <message-size> <roundtrip-count>")
    else {
        return ExitCode::FAILURE;
    };
    perf::runtime().block_on(async move {
        let router = RouterSocket::new(perf::options(true));
        if let Err(e) = router.bind(&bind_to).await {
            eprintln!("error in bind: {e}");
            return ExitCode::FAILURE;
        }
        for _ in 0..count {
            let Ok(msg) = router.recv().await else {
                return ExitCode::FAILURE;
            };
            // [identity, empty delimiter (REQ envelope), body]
            if msg.last().map_or(0, |b| b.len()) != size {
                eprintln!("message of incorrect size received");
                return ExitCode::FAILURE;
            }
            if router.send(msg).await.is_err() {
                return ExitCode::FAILURE;
            }
        }
        router.close().await;
        ExitCode::SUCCESS
    })
}
