//! Checks shared by the fuzz targets `curve_server`, `curve_client` and `plain_server` and by the
//! corpus replay test: arbitrary handshake frames fed to a mechanism never panic, and a
//! mechanism that errs once stays failed (nothing is let through after a refusal).

use harmony_wire::fuzzing::split_frames;
use harmony_wire::zmtp::{Frame, Greeting, Mechanism as Name, Metadata};

use crate::curve::KeyPair;
use crate::mechanism::{AuthReply, Handshake, Mechanism, MechanismConfig};

/// Feeds the frames cut from `data` (as `harmony_wire::fuzzing::split_frames` cuts them) to
/// `mechanism` as command frames.
fn feed(mut mechanism: Box<dyn Mechanism>, peer: Greeting, data: &[u8]) {
    let mut out = Vec::new();
    let local = Metadata::new().with("Socket-Type", "DEALER");
    if mechanism.start(&peer, &local, &mut out).is_err() {
        return;
    }
    for body in split_frames(data) {
        let frame = Frame::command(body);
        match mechanism.receive(frame, &mut out) {
            Ok(Handshake::Authenticate(_)) => {
                if mechanism
                    .authenticated(AuthReply::allow("fuzz"), &mut out)
                    .is_err()
                {
                    return;
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

fn keys(seed: u8) -> KeyPair {
    KeyPair::from_secret([seed; 32])
}

/// CURVE server fed by an unknown client.
pub fn curve_server(data: &[u8]) {
    let m = MechanismConfig::CurveServer { keys: keys(1) }.build();
    feed(m, Greeting::new(Name::Curve, false), data);
}

/// CURVE client fed by an unknown server.
pub fn curve_client(data: &[u8]) {
    let server_key = *keys(1).public();
    let m = MechanismConfig::CurveClient {
        keys: keys(2),
        server_key,
    }
    .build();
    feed(m, Greeting::new(Name::Curve, true), data);
}

/// PLAIN server fed by an unknown client.
pub fn plain_server(data: &[u8]) {
    feed(
        MechanismConfig::PlainServer.build(),
        Greeting::new(Name::Plain, false),
        data,
    );
}
