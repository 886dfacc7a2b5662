//! The transport every role shares: a ZRE node for discovery and liveness (the pipeline's
//! group, headers naming each member's role and ZMTP endpoint) and harmony-zmtp sockets for
//! the traffic itself: one ROUTER inbox, one DEALER to each peer.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use harmony_node::{Event, Node, NodeBuilder, Uuid, PUBLIC_KEY_HEADER};
use harmony_security::{public_key_from_z85, KeyPair};
use harmony_wire::pipeline::PipelineMessage;
use harmony_zmtp::{DealerSocket, MechanismConfig, Message, RouterSocket, SocketOptions};
use tracing::{debug, warn};

use crate::core::{Role, Transmit};
use crate::error::PipelineError;

/// The header naming a member's role (`client`, `worker`, `collector`).
pub const ROLE_HEADER: &str = "X-PIPELINE-ROLE";
/// The header naming a member's pipeline ZMTP endpoint (`tcp://address:port`).
pub const ENDPOINT_HEADER: &str = "X-PIPELINE-ENDPOINT";
/// Largest pipeline message accepted (a task or a result with its fields).
pub(crate) const MAX_MESSAGE: usize = 64 << 20;
/// Messages queued per peer before more are dropped (the protocol resends what is lost).
const SEND_HWM: usize = 50_000;

/// The ZRE group of pipeline `name`.
pub fn group_name(name: &str) -> String {
    format!("pipeline:{name}")
}

/// A change in the pipeline's membership.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PeerChange {
    Up(Uuid, Role),
    Down(Uuid),
}

/// What [`Mesh::next_input`] brings.
#[derive(Debug)]
pub(crate) enum Input {
    /// A member came or went.
    Peer(PeerChange),
    /// A burst of messages arrived (malformed ones were refused and left out).
    Messages(Vec<(Uuid, PipelineMessage)>),
    /// The node or the inbox has stopped.
    Closed,
}

/// Most pipeline messages sent to a peer in one ZMTP message.
const MAX_FRAMES: usize = 1024;
/// Most inbox messages taken in one burst before the state machine's output is sent.
const BURST: usize = 256;

#[derive(Debug)]
struct Peer {
    role: Role,
    endpoint: String,
    /// Its CURVE public key, from `X-PUBLICKEY` (encrypted mode).
    key: Option<[u8; 32]>,
    dealer: Option<DealerSocket>,
}

/// A node in a pipeline's group with its pipeline sockets.
pub(crate) struct Mesh {
    pub(crate) node: Node,
    group: String,
    pub(crate) inbox: RouterSocket,
    /// Peers entered with pipeline headers: role and endpoint; a dealer once they join.
    peers: HashMap<Uuid, Peer>,
    /// The roles this member talks to.
    talks_to: &'static [Role],
    /// Encoded messages waiting to leave, by peer (kept to reuse the buffers).
    outgoing: HashMap<Uuid, Vec<Bytes>>,
    /// Where messages are encoded: each is split off as its own frame, so a burst costs one
    /// allocation per [`ENCODE_CHUNK`] bytes, not one per message.
    scratch: BytesMut,
    /// The node's CURVE key pair in encrypted mode: the inbox is a CURVE server with it and
    /// every DEALER a CURVE client of the peer's advertised key.
    curve: Option<KeyPair>,
}

/// The size of the encoding buffer taken at a time.
const ENCODE_CHUNK: usize = 64 << 10;

impl Mesh {
    /// Binds the inbox on the node's interface, starts the node with the headers, joins.
    pub(crate) async fn start(
        builder: NodeBuilder,
        pipeline: &str,
        role: Role,
        talks_to: &'static [Role],
    ) -> Result<Self, PipelineError> {
        let interface = builder.selected_interface()?;
        let curve = builder.curve_keys().cloned();
        let mut options = SocketOptions::default()
            .max_msg_size(MAX_MESSAGE)
            .recv_hwm(100_000);
        if let Some(keys) = &curve {
            options = options.mechanism(MechanismConfig::CurveServer { keys: keys.clone() });
        }
        let inbox = RouterSocket::new(options);
        let bound = inbox.bind(&interface.tcp_endpoint(0)).await?;
        let endpoint = interface.tcp_endpoint(bound.port());
        let node = builder
            .header(ROLE_HEADER, role.as_str())
            .header(ENDPOINT_HEADER, endpoint.as_str())
            .start()
            .await?;
        let group = group_name(pipeline);
        node.join(group.as_str()).await?;
        debug!(uuid = %node.uuid(), role = role.as_str(), %endpoint, %group, "pipeline member started");
        Ok(Self {
            node,
            group,
            inbox,
            peers: HashMap::new(),
            talks_to,
            outgoing: HashMap::new(),
            scratch: BytesMut::new(),
            curve,
        })
    }

    pub(crate) fn uuid(&self) -> Uuid {
        self.node.uuid()
    }

    /// Waits for the next membership change or burst of messages. Cancel-safe: once an event
    /// or message has been taken nothing waits (connecting a DEALER returns at once).
    pub(crate) async fn next_input(&mut self) -> Input {
        loop {
            tokio::select! {
                event = self.node.next_event() => {
                    let Some(event) = event else { return Input::Closed };
                    if let Some(change) = self.on_event(event).await {
                        return Input::Peer(change);
                    }
                }
                msg = self.inbox.recv() => {
                    let Ok(msg) = msg else { return Input::Closed };
                    let mut burst = Vec::new();
                    Self::decode(&msg, &mut burst);
                    for _ in 1..BURST {
                        let Ok(Some(msg)) = self.inbox.try_recv() else { break };
                        Self::decode(&msg, &mut burst);
                    }
                    return Input::Messages(burst);
                }
            }
        }
    }

    /// Turns a node event into a membership change, connecting to peers that join.
    async fn on_event(&mut self, event: Event) -> Option<PeerChange> {
        match event {
            Event::Enter { peer, headers, .. } => {
                let header = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v);
                let role = header(ROLE_HEADER).and_then(|r| Role::parse(r));
                let key = header(PUBLIC_KEY_HEADER).and_then(|k| public_key_from_z85(k).ok());
                if let (Some(role), Some(endpoint)) = (role, header(ENDPOINT_HEADER)) {
                    self.peers.insert(
                        peer,
                        Peer {
                            role,
                            endpoint: endpoint.clone(),
                            key,
                            dealer: None,
                        },
                    );
                }
                None
            }
            Event::Join { peer, group, .. } if *group == *self.group => {
                let me = self.node.uuid();
                let talks_to = self.talks_to;
                let p = self.peers.get_mut(&peer)?;
                if p.dealer.is_some() {
                    return None;
                }
                if talks_to.contains(&p.role) {
                    let mut options = SocketOptions::default()
                        .identity(identity(me))
                        .send_hwm(SEND_HWM)
                        .linger(Duration::from_millis(200))
                        .max_msg_size(MAX_MESSAGE);
                    if let Some(keys) = &self.curve {
                        let Some(server_key) = p.key else {
                            warn!(%peer, "no valid X-PUBLICKEY from this pipeline peer (encrypted mode); not connecting");
                            return None;
                        };
                        options = options.mechanism(MechanismConfig::CurveClient {
                            keys: keys.clone(),
                            server_key,
                        });
                    }
                    let dealer = DealerSocket::new(options);
                    // Connecting starts in the background: this never waits.
                    if let Err(e) = dealer.connect(&p.endpoint) {
                        warn!(%peer, endpoint = %p.endpoint, error = %e, "cannot connect to pipeline peer");
                        return None;
                    }
                    p.dealer = Some(dealer);
                }
                Some(PeerChange::Up(peer, p.role))
            }
            Event::Leave { peer, group, .. } if *group == *self.group => self.down(peer),
            Event::Exit { peer, .. } => {
                let change = self.down(peer);
                self.peers.remove(&peer);
                change
            }
            _ => None,
        }
    }

    fn down(&mut self, peer: Uuid) -> Option<PeerChange> {
        let p = self.peers.get_mut(&peer)?;
        let dealer = p.dealer.take();
        let was_up = dealer.is_some() || !self.talks_to.contains(&p.role);
        if let Some(dealer) = dealer {
            tokio::spawn(async move { dealer.close().await });
        }
        was_up.then_some(PeerChange::Down(peer))
    }

    /// Sends everything `transmits` yields, the messages for one peer together as the frames
    /// of one ZMTP message (one queue push and one write for a burst). A message for a peer
    /// not connected, or whose queue is full, is dropped and logged: the protocol recovers it.
    pub(crate) fn send_all(&mut self, transmits: impl Iterator<Item = Transmit>) {
        for t in transmits {
            let len = t.message.encoded_len();
            if self.scratch.capacity() < len {
                self.scratch = BytesMut::with_capacity(len.max(ENCODE_CHUNK));
            }
            match t.message.encode(&mut self.scratch) {
                Ok(()) => {
                    let bytes = self.scratch.split().freeze();
                    self.outgoing.entry(t.to).or_default().push(bytes);
                }
                Err(e) => warn!(to = %t.to, error = %e, "message not encodable, dropped"),
            }
        }
        for (to, frames) in self.outgoing.iter_mut() {
            if frames.is_empty() {
                continue;
            }
            let Some(dealer) = self.peers.get(to).and_then(|p| p.dealer.as_ref()) else {
                debug!(%to, messages = frames.len(), "no connection to peer, messages dropped");
                frames.clear();
                continue;
            };
            while !frames.is_empty() {
                let n = frames.len().min(MAX_FRAMES);
                let msg = Message::from_frames(frames.drain(..n));
                if dealer.try_send(msg).is_err() {
                    debug!(%to, messages = n, "peer queue full, messages dropped");
                }
            }
        }
        self.outgoing.retain(|to, _| self.peers.contains_key(to));
    }

    /// Decodes one inbox message, `[identity, message, message...]`, into `out`: the sender
    /// (from its DEALER identity) and each well-formed message; anything malformed is refused
    /// and logged, the rest still counts.
    fn decode(msg: &Message, out: &mut Vec<(Uuid, PipelineMessage)>) {
        let Some((id, bodies)) = msg.frames().split_first() else {
            return;
        };
        let Some(from) = id
            .strip_prefix(&[1u8])
            .and_then(|u| Uuid::from_slice(u).ok())
        else {
            warn!("refused inbox message: the sender's identity is not 0x01 + UUID");
            return;
        };
        if bodies.is_empty() {
            warn!(%from, "refused inbox message: no pipeline message in it");
        }
        for body in bodies {
            match PipelineMessage::decode(body, MAX_MESSAGE) {
                Ok(m) => out.push((from, m)),
                Err(e) => warn!(%from, error = %e, "refused malformed pipeline message"),
            }
        }
    }

    /// Leaves the group and stops the node.
    pub(crate) async fn stop(mut self) {
        let _ = self.node.leave(self.group.as_str()).await;
        let mut closing = tokio::task::JoinSet::new();
        for p in self.peers.values_mut() {
            if let Some(d) = p.dealer.take() {
                closing.spawn(async move { d.close().await });
            }
        }
        // Not join_all: a close cancelled by a runtime shutting down is no error here.
        while closing.join_next().await.is_some() {}
        let _ = self.node.stop().await;
        self.inbox.close().await;
    }
}

/// The DEALER identity of member `uuid`: 0x01 and the UUID, as ZRE does (identities may not
/// start with a zero byte).
pub(crate) fn identity(uuid: Uuid) -> Bytes {
    let mut id = Vec::with_capacity(17);
    id.push(1);
    id.extend_from_slice(uuid.as_bytes());
    Bytes::from(id)
}
