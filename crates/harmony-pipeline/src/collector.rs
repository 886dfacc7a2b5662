//! The collector's driver: [`Collector::recv`] runs the protocol until the next result.

use harmony_node::Uuid;

use crate::core::{CollectorCore, CollectorEvent, Role};
use crate::error::PipelineError;
use crate::mesh::{Input, Mesh, PeerChange};
use crate::settings::Settings;

/// A pipeline collector. Each [`recv`](Self::recv) call tells the protocol that the
/// application has durably taken everything returned before: only then are those results
/// acknowledged to their clients. A collector killed between two calls loses nothing: the
/// clients resend what was not acknowledged, and [`restore`](Self::restore) (from the
/// application's own record) keeps what it had from being handed out twice.
pub struct Collector {
    mesh: Mesh,
    core: CollectorCore,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("uuid", &self.mesh.uuid())
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// Joins the pipeline as a collector.
    pub async fn start(settings: Settings) -> Result<Self, PipelineError> {
        let mesh = Mesh::start(
            settings.node,
            &settings.pipeline,
            Role::Collector,
            &[Role::Client],
        )
        .await?;
        Ok(Self {
            mesh,
            core: CollectorCore::new(),
        })
    }

    /// The collector's node UUID.
    pub fn uuid(&self) -> Uuid {
        self.mesh.uuid()
    }

    /// Records a result the application already has (e.g. read back from its file after a
    /// restart): it is never returned again, and reported to the client as held.
    pub fn restore(&mut self, batch: Uuid, task: u32) {
        self.core.restore(batch, task);
    }

    /// The next result or batch completion. Calling it again commits everything returned so far.
    pub async fn recv(&mut self) -> Result<CollectorEvent, PipelineError> {
        self.core.commit();
        loop {
            // Events already decoded go out first; acknowledgements then leave together.
            if let Some(event) = self.core.poll_event() {
                return Ok(event);
            }
            let core = &mut self.core;
            self.mesh
                .send_all(std::iter::from_fn(|| core.poll_transmit()));
            match self.mesh.next_input().await {
                Input::Peer(PeerChange::Up(peer, role)) => self.core.peer_up(peer, role),
                Input::Peer(PeerChange::Down(peer)) => self.core.peer_down(peer),
                Input::Messages(burst) => {
                    for (from, m) in burst {
                        self.core.handle(from, m);
                    }
                }
                Input::Closed => return Err(PipelineError::Stopped("collector")),
            }
        }
    }

    /// Commits what was returned, sends the last acknowledgements, leaves the pipeline.
    pub async fn stop(mut self) {
        self.core.commit();
        let core = &mut self.core;
        self.mesh
            .send_all(std::iter::from_fn(|| core.poll_transmit()));
        self.mesh.stop().await;
    }
}
