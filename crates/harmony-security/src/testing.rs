//! In-memory handshakes for the unit tests: two mechanisms, two queues, no sockets.

use std::collections::VecDeque;

use harmony_wire::zmtp::{Frame, Greeting, Metadata};

use crate::error::Result;
use crate::mechanism::{AuthReply, AuthRequest, Handshake, Mechanism};

/// What a finished (or failed) in-memory handshake produced.
pub(crate) struct Run {
    /// The client's end result, `None` if it was still waiting when traffic stopped.
    pub(crate) client: Option<Result<Metadata>>,
    /// The server's end result.
    pub(crate) server: Option<Result<Metadata>>,
    /// Every frame the client sent, in order.
    pub(crate) client_sent: Vec<Frame>,
    /// Every frame the server sent, in order.
    pub(crate) server_sent: Vec<Frame>,
    /// The requests the server's authenticator saw.
    pub(crate) requests: Vec<AuthRequest>,
}

/// Feeds one step's outcome through the authenticator until it is not `Authenticate`.
fn settle(
    mech: &mut dyn Mechanism,
    mut step: Result<Handshake>,
    out: &mut Vec<Frame>,
    auth: &dyn Fn(&AuthRequest) -> AuthReply,
    requests: &mut Vec<AuthRequest>,
) -> Option<Result<Metadata>> {
    loop {
        match step {
            Ok(Handshake::Continue) => return None,
            Ok(Handshake::Done(meta)) => return Some(Ok(meta)),
            Ok(Handshake::Authenticate(req)) => {
                let reply = auth(&req);
                requests.push(req);
                step = mech.authenticated(reply, out);
            }
            Err(e) => return Some(Err(e)),
        }
    }
}

/// Runs a client and a server against each other until neither has anything left to say.
/// A side that failed still gets its queued frames (an ERROR) delivered, like a real driver.
pub(crate) fn run(
    client: &mut dyn Mechanism,
    server: &mut dyn Mechanism,
    client_meta: &Metadata,
    server_meta: &Metadata,
    auth: &dyn Fn(&AuthRequest) -> AuthReply,
) -> Run {
    let client_greeting = Greeting::new(client.kind(), client.as_server());
    let server_greeting = Greeting::new(server.kind(), server.as_server());
    let mut run = Run {
        client: None,
        server: None,
        client_sent: Vec::new(),
        server_sent: Vec::new(),
        requests: Vec::new(),
    };
    let (mut to_server, mut to_client) = (VecDeque::new(), VecDeque::new());

    let mut out = Vec::new();
    let step = client.start(&server_greeting, client_meta, &mut out);
    run.client = settle(client, step, &mut out, auth, &mut run.requests);
    run.client_sent.extend(out.iter().cloned());
    to_server.extend(out.drain(..));
    let step = server.start(&client_greeting, server_meta, &mut out);
    run.server = settle(server, step, &mut out, auth, &mut run.requests);
    run.server_sent.extend(out.iter().cloned());
    to_client.extend(out.drain(..));

    for _ in 0..64 {
        if let Some(frame) = to_server
            .pop_front()
            .filter(|_| !matches!(run.server, Some(Err(_))))
        {
            let step = server.receive(frame, &mut out);
            let result = settle(server, step, &mut out, auth, &mut run.requests);
            run.server = result.or(run.server.take());
            run.server_sent.extend(out.iter().cloned());
            to_client.extend(out.drain(..));
        } else if let Some(frame) = to_client
            .pop_front()
            .filter(|_| !matches!(run.client, Some(Err(_))))
        {
            let step = client.receive(frame, &mut out);
            let result = settle(client, step, &mut out, auth, &mut run.requests);
            run.client = result.or(run.client.take());
            run.client_sent.extend(out.iter().cloned());
            to_server.extend(out.drain(..));
        } else {
            break;
        }
    }
    run
}

/// [`run`] between a DEALER client and a ROUTER server (each sending only its Socket-Type).
pub(crate) fn run_dealer_router(
    client: &mut dyn Mechanism,
    server: &mut dyn Mechanism,
    auth: &dyn Fn(&AuthRequest) -> AuthReply,
) -> Run {
    run(client, server, &meta("DEALER"), &meta("ROUTER"), auth)
}

/// Metadata as a socket would send it.
pub(crate) fn meta(socket_type: &str) -> Metadata {
    Metadata::new().with("Socket-Type", socket_type.to_string())
}
