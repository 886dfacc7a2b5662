//! The running beacon: a tokio task that publishes and listens.

use std::net::SocketAddr;
use std::time::Duration;

use harmony_wire::zre::Beacon as ZreBeacon;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, trace, warn};

use crate::config::BeaconConfig;
use crate::core::BeaconCore;
use crate::error::{BeaconError, Result};
use crate::interface::SelectedInterface;
use crate::socket::{self, Sockets};

/// A beacon heard from another node, and the address it came from (whose IP is the node's IP).
pub type Heard = (ZreBeacon, SocketAddr);

/// Bigger than any beacon, so an oversized datagram is seen as such, not truncated to fit.
const RECV_BUF: usize = 64;
/// How long `stop` waits for the task to send its goodbye.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// A running beacon: publishes our payload every interval and delivers foreign beacons.
///
/// Dropping it stops it too (the goodbye beacon still goes out, from the background).
#[derive(Debug)]
pub struct Beacon {
    interface: SelectedInterface,
    port: u16,
    payload: ZreBeacon,
    heard: mpsc::Receiver<Heard>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<()>>>,
}

/// The name the design notes use for a running [`Beacon`].
pub type BeaconHandle = Beacon;

impl Beacon {
    /// Selects the interface `config` names, then starts publishing `payload` (the first beacon
    /// at once). Must be called inside a tokio runtime.
    pub fn start(config: &BeaconConfig, payload: ZreBeacon) -> Result<Self> {
        let interface = config.select_interface()?;
        Self::start_on(interface, config, payload)
    }

    /// Starts on an interface selected beforehand (e.g. to bind the node's TCP inbox on its
    /// address first); `config.interface` and `config.ipv6_multicast` are not consulted.
    pub fn start_on(
        interface: SelectedInterface,
        config: &BeaconConfig,
        payload: ZreBeacon,
    ) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| BeaconError::Io {
            context: "Beacon::start needs a tokio runtime",
            source: std::io::Error::other(e),
        })?;
        let _guard = runtime.enter();
        let sockets = socket::open(&interface, config.port)?;
        info!(
            interface = %interface.name,
            address = %interface.address,
            broadcast = %interface.broadcast,
            port = config.port,
            uuid = %payload.uuid,
            mailbox = payload.port,
            "beacon started"
        );
        let (tx, heard) = mpsc::channel(config.queue.max(1));
        let (stop, stop_rx) = oneshot::channel();
        let core = BeaconCore::new(payload, config.interval, Instant::now().into_std());
        let task = runtime.spawn(run(core, sockets, tx, stop_rx));
        Ok(Self {
            interface,
            port: config.port,
            payload,
            heard,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The interface in use: name, address (for `tcp://<address>:<port>`), broadcast.
    pub fn interface(&self) -> &SelectedInterface {
        &self.interface
    }

    /// The UDP beacon port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The beacon we publish.
    pub fn payload(&self) -> &ZreBeacon {
        &self.payload
    }

    /// The next beacon from another node; `None` once the beacon has stopped. Port 0 means that
    /// node is leaving.
    pub async fn recv(&mut self) -> Option<Heard> {
        self.heard.recv().await
    }

    /// A beacon already received, without waiting.
    pub fn try_recv(&mut self) -> Option<Heard> {
        self.heard.try_recv().ok()
    }

    /// Sends the goodbye beacon (port 0) once and ends the task.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(STOP_TIMEOUT, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) | Err(_) => Err(BeaconError::Stopped),
        }
    }
}

async fn run(
    mut core: BeaconCore,
    sockets: Sockets,
    tx: mpsc::Sender<Heard>,
    mut stop: oneshot::Receiver<()>,
) -> Result<()> {
    let Sockets { recv, send, dest } = sockets;
    let mut buf = [0u8; RECV_BUF];
    let mut send_failing = false;
    loop {
        tokio::select! {
            biased;
            // A stop request, or the handle dropped.
            _ = &mut stop => break,
            () = sleep_until(Instant::from_std(core.poll_timeout())) => {
                let Some((bytes, len)) = core.poll_transmit(Instant::now().into_std()) else {
                    continue;
                };
                match send.send_to(&bytes[..len], dest).await {
                    Ok(_) if send_failing => {
                        send_failing = false;
                        info!(%dest, "beacons go out again");
                    }
                    Ok(_) => trace!(%dest, "beacon sent"),
                    // The network may come back (cable, Wi-Fi): keep trying, say it once.
                    Err(e) if !send_failing => {
                        send_failing = true;
                        warn!(%dest, error = %e, "cannot send beacon; will keep trying");
                    }
                    Err(e) => trace!(%dest, error = %e, "beacon send failed again"),
                }
            }
            received = recv.recv_from(&mut buf) => match received {
                Ok((n, from)) => match core.handle_datagram(&buf[..n]) {
                    Ok(beacon) => match tx.try_send((beacon, from)) {
                        Ok(()) => trace!(%from, uuid = %beacon.uuid, port = beacon.port, "beacon heard"),
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            debug!(%from, "beacon queue full; beacon dropped");
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => break,
                    },
                    Err(why) => trace!(%from, len = n, %why, "datagram ignored"),
                },
                Err(e) => {
                    debug!(error = %e, "beacon receive failed");
                    // Do not spin on a persistent error.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    let (bytes, len) = core.goodbye();
    send.send_to(&bytes[..len], dest)
        .await
        .map_err(BeaconError::io("sending the goodbye beacon"))?;
    info!(uuid = %core.payload().uuid, %dest, "beacon stopped (goodbye sent)");
    Ok(())
}
