//! `harmony.Node`: a running Harmony node driven from Python.

use std::sync::Arc;
use std::time::{Duration, Instant};

use harmony_node::{Node, NodeError, Uuid};
use harmony_security::{Certificate, KeyPair};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::event::{pyre_frames, pyre_visible, PyEvent};
use crate::inbox::{pump, Held, Inbox, NodeCell, Wait};
use crate::{node_error, peer_id, runtime, seconds, HarmonyError};

/// Longest wait without the GIL before `recv` checks for signals (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(100);
/// How long a query or stop holds the node before it lets the pump have it (see `detached`).
const ATTEMPT: Duration = Duration::from_millis(50);

/// A Harmony node: finds peers by UDP beacons, talks to them over ZMTP (ZRE protocol,
/// compatible with Zyre and pyre), optionally encrypted with CURVE.
///
/// The node starts when it is created and runs until `stop()` (or until the object goes away).
/// Events are read with `recv(timeout=None)`, or `async for event in node.events()`; neither
/// holds the GIL while it waits.
#[pyclass(name = "_Node", module = "harmony._harmony", subclass)]
pub struct PyNode {
    rt: &'static tokio::runtime::Runtime,
    cell: Arc<NodeCell>,
    inbox: Arc<Inbox>,
    uuid: Uuid,
    name: String,
    endpoint: String,
    interface: String,
    public_key: Option<String>,
}

impl PyNode {
    /// Runs `f` on the node with the GIL released, for calls that wait on the node's driver
    /// (queries, stop). The driver answers only once the events it has are taken, and taking
    /// them needs the node: so the node is held for [`ATTEMPT`] at a time, `f` starting over
    /// after each, with the inbox unbounded meanwhile so the pump can always take events.
    fn detached<T: Send>(
        &self,
        py: Python<'_>,
        f: impl AsyncFn(&mut Node) -> Result<T, NodeError> + Send + Sync,
    ) -> PyResult<T> {
        let (cell, inbox, rt) = (&self.cell, &self.inbox, self.rt);
        let _unbounded = inbox.unbounded();
        loop {
            let attempt = py.detach(|| {
                let mut held = cell.lock();
                match held.node() {
                    // The timer is made inside `block_on`, in the runtime's context.
                    Some(node) => rt
                        .block_on(async { tokio::time::timeout(ATTEMPT, f(node)).await })
                        .ok(),
                    None => Some(Err(NodeError::Stopped)),
                }
            });
            if let Some(result) = attempt {
                return result.map_err(node_error);
            }
            py.check_signals()?;
            // Let the pump, woken as the node was released, take the node first.
            py.detach(|| std::thread::sleep(Duration::from_millis(1)));
        }
    }

    /// Runs a command that never waits (whisper, shout, join, leave) on the node; keeps the
    /// GIL unless another thread holds the node.
    fn command(
        &self,
        py: Python<'_>,
        f: impl AsyncFnOnce(&mut Node) -> Result<(), NodeError> + Send,
    ) -> PyResult<()> {
        let rt = self.rt;
        let run = |mut held: Held<'_>| match held.node() {
            Some(node) => rt.block_on(f(node)),
            None => Err(NodeError::Stopped),
        };
        match self.cell.try_lock() {
            Some(held) => run(held),
            None => py.detach(|| run(self.cell.lock())),
        }
        .map_err(node_error)
    }

    /// Waits for the next event (GIL released, Ctrl-C honoured) and converts it with `convert`;
    /// None on timeout or once the node has stopped and every event was read.
    fn wait_event<'py, T>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
        skip: impl Fn(&harmony_node::Event) -> bool,
        convert: impl Fn(Python<'py>, harmony_node::Event) -> PyResult<T>,
    ) -> PyResult<Option<T>> {
        let deadline = match timeout {
            Some(t) => Some(Instant::now() + seconds("timeout", t)?),
            None => None,
        };
        loop {
            let outcome = match self.inbox.try_pop() {
                Some(event) => Wait::Event(event),
                None => {
                    let slice = match deadline {
                        Some(d) => d
                            .saturating_duration_since(Instant::now())
                            .min(SIGNAL_CHECK),
                        None => SIGNAL_CHECK,
                    };
                    if slice.is_zero() {
                        return Ok(None);
                    }
                    let inbox = &self.inbox;
                    py.detach(|| inbox.wait(slice))
                }
            };
            match outcome {
                Wait::Event(event) if skip(&event) => {}
                Wait::Event(event) => return convert(py, event).map(Some),
                Wait::Closed => return Ok(None),
                Wait::Timeout => py.check_signals()?,
            }
        }
    }
}

#[pymethods]
impl PyNode {
    /// Starts a node.
    ///
    /// - `name`: sent to peers (default: the first 6 hex digits of the UUID).
    /// - `headers`: dict of str, sent to every peer in HELLO.
    /// - `interface`: beacon interface, "auto" (default, as Zyre), "loopback" (this machine
    ///   only), a name such as "eth0", or an address. `loopback=True` is the same as
    ///   `interface="loopback"`.
    /// - `port`: UDP discovery port (5670); `interval`: seconds between beacons (1.0).
    /// - `evasive_timeout`, `expired_timeout`: seconds of silence before a peer is PINGed
    ///   (EVASIVE) and removed (EXIT).
    /// - `curve_secret_key` (Z85) or `curve_cert` (a czmq/pyzmq certificate file whose
    ///   `_secret` file exists): encrypted mode; such nodes only meet other encrypted nodes.
    /// - `uuid`: a fixed UUID instead of a random one.
    #[new]
    #[pyo3(signature = (name=None, *, headers=None, interface=None, loopback=false, port=5670,
        interval=1.0, evasive_timeout=None, expired_timeout=None, curve_secret_key=None,
        curve_cert=None, uuid=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: Option<String>,
        headers: Option<&Bound<'_, PyDict>>,
        interface: Option<String>,
        loopback: bool,
        port: u16,
        interval: f64,
        evasive_timeout: Option<f64>,
        expired_timeout: Option<f64>,
        curve_secret_key: Option<String>,
        curve_cert: Option<std::path::PathBuf>,
        uuid: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mut builder = Node::builder();
        if let Some(uuid) = uuid {
            builder = builder.uuid(peer_id(uuid)?);
        }
        if let Some(name) = name {
            if name.is_empty() || name.len() > 255 {
                return Err(PyValueError::new_err(format!(
                    "name must be 1 to 255 bytes of UTF-8, not {} bytes",
                    name.len()
                )));
            }
            builder = builder.name(name);
        }
        if let Some(headers) = headers {
            for (k, v) in headers.iter() {
                let k: String = k
                    .extract()
                    .map_err(|_| PyValueError::new_err("header names must be str"))?;
                let v: String = v.extract().map_err(|_| {
                    PyValueError::new_err(format!("the value of header {k:?} must be a str"))
                })?;
                builder = builder.header(k, v);
            }
        }
        match (loopback, interface.as_deref()) {
            (true, None | Some("loopback" | "lo")) => builder = builder.loopback(),
            (true, Some(other)) => {
                return Err(PyValueError::new_err(format!(
                    "loopback=True contradicts interface={other:?}"
                )))
            }
            (false, Some("")) => {
                return Err(PyValueError::new_err(
                    "interface must be 'auto', 'loopback', an interface name or an address, not ''",
                ))
            }
            (false, Some(select)) => builder = builder.interface(select),
            (false, None) => {}
        }
        if port == 0 {
            return Err(PyValueError::new_err("port must be 1 to 65535, not 0"));
        }
        builder = builder.port(port);
        let interval = seconds("interval", interval)?;
        if interval.is_zero() {
            return Err(PyValueError::new_err(
                "interval must be more than 0 seconds",
            ));
        }
        builder = builder.interval(interval);
        if let Some(t) = evasive_timeout {
            builder = builder.evasive_timeout(seconds("evasive_timeout", t)?);
        }
        if let Some(t) = expired_timeout {
            builder = builder.expired_timeout(seconds("expired_timeout", t)?);
        }
        let keys = curve_keys(curve_secret_key, curve_cert)?;
        let public_key = keys.as_ref().map(KeyPair::public_z85);
        if let Some(keys) = keys {
            builder = builder.curve(keys);
        }
        let rt = runtime()?;
        let inbox = Arc::new(
            Inbox::new()
                .map_err(|e| HarmonyError::new_err(format!("cannot make the event pipe: {e}")))?,
        );
        let node = py
            .detach(|| rt.block_on(builder.start()))
            .map_err(node_error)?;
        let this = Self {
            rt,
            uuid: node.uuid(),
            name: node.name().to_owned(),
            endpoint: node.endpoint().to_owned(),
            interface: node.interface().name.clone(),
            public_key,
            cell: Arc::new(NodeCell::new(node)),
            inbox,
        };
        rt.spawn(pump(this.cell.clone(), this.inbox.clone()));
        Ok(this)
    }

    /// This node's UUID (a `uuid.UUID`).
    #[getter]
    fn uuid<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::py_uuid(py, self.uuid)
    }

    /// This node's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// This node's inbox endpoint, `tcp://ip:port`.
    #[getter]
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The name of the interface the node beacons on (e.g. "lo", "eth0").
    #[getter]
    fn interface(&self) -> &str {
        &self.interface
    }

    /// This node's CURVE public key (Z85) in encrypted mode, else None.
    #[getter]
    fn public_key(&self) -> Option<&str> {
        self.public_key.as_deref()
    }

    /// Joins a group; peers see JOIN.
    fn join(&self, py: Python<'_>, group: String) -> PyResult<()> {
        check_group(&group)?;
        self.command(py, async |n| n.join(group).await)
    }

    /// Leaves a group; peers see LEAVE.
    fn leave(&self, py: Python<'_>, group: String) -> PyResult<()> {
        check_group(&group)?;
        self.command(py, async |n| n.leave(group).await)
    }

    /// Sends a message to every peer in `group`. `content` is bytes or str (one frame) or a
    /// list of them (a multipart message).
    fn shout(&self, py: Python<'_>, group: String, content: &Bound<'_, PyAny>) -> PyResult<()> {
        check_group(&group)?;
        let content = crate::content(content)?;
        self.command(py, async |n| n.shout(group, content).await)
    }

    /// Sends a message to one peer (`uuid.UUID`, hex str or 16 bytes). Raises
    /// `UnknownPeerError` if no ready peer has this UUID.
    fn whisper(
        &self,
        py: Python<'_>,
        peer: &Bound<'_, PyAny>,
        content: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let peer = peer_id(peer)?;
        let content = crate::content(content)?;
        self.command(py, async |n| n.whisper(peer, content).await)
    }

    /// The next event, waiting up to `timeout` seconds (forever if None); None on timeout or
    /// once the node has stopped and every event was read. The GIL is released while waiting.
    #[pyo3(signature = (timeout=None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<PyEvent>> {
        self.wait_event(py, timeout, |_| false, |_, e| Ok(PyEvent::new(e)))
    }

    /// Like `recv`, but the event as pyre's `recv()` returns it (a list of bytes frames);
    /// events pyre does not have (EVASIVE, SILENT, LEADER) are skipped.
    #[pyo3(signature = (timeout=None))]
    fn recv_multipart<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        self.wait_event(
            py,
            timeout,
            |e| !pyre_visible(e),
            |py, e| pyre_frames(py, &e),
        )
    }

    /// How many events wait to be read (about 16384 at most while nothing reads them: then
    /// the node stops taking messages off the network until the application catches up).
    #[getter]
    fn pending(&self) -> usize {
        self.inbox.pending()
    }

    /// Whether an event is waiting (recv would not block).
    fn has_events(&self) -> bool {
        self.inbox.has_events()
    }

    /// True once the node has stopped and every event was read (recv returns None at once).
    #[getter]
    fn finished(&self) -> bool {
        self.inbox.finished()
    }

    /// A file descriptor that is readable exactly while events wait: for `select`, `asyncio`'s
    /// `add_reader` or `zmq.Poller`. Read events with `recv`, never from the descriptor.
    fn fileno(&self) -> i32 {
        self.inbox.fileno()
    }

    /// UUIDs of the known peers.
    fn peers<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let peers = self.detached(py, async |n| n.peers().await)?;
        uuids(py, peers)
    }

    /// UUIDs of the peers in `group`.
    fn peers_by_group<'py>(
        &self,
        py: Python<'py>,
        group: String,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let peers = self.detached(py, async |n| n.peers_by_group(group.as_str()).await)?;
        uuids(py, peers)
    }

    /// The groups this node is in.
    fn own_groups(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.detached(py, async |n| n.own_groups().await)
    }

    /// The groups known peers are in.
    fn peer_groups(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.detached(py, async |n| n.peer_groups().await)
    }

    /// A peer's name, None if the peer is unknown.
    fn peer_name(&self, py: Python<'_>, peer: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
        let peer = peer_id(peer)?;
        self.detached(py, async |n| n.peer_name(peer).await)
    }

    /// A peer's inbox endpoint (`tcp://ip:port`), None if the peer is unknown.
    fn peer_address(&self, py: Python<'_>, peer: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
        let peer = peer_id(peer)?;
        self.detached(py, async |n| n.peer_address(peer).await)
    }

    /// The value of one of a peer's headers, None if the peer or the header is unknown.
    fn peer_header_value(
        &self,
        py: Python<'_>,
        peer: &Bound<'_, PyAny>,
        key: String,
    ) -> PyResult<Option<String>> {
        let peer = peer_id(peer)?;
        self.detached(py, async |n| n.peer_header_value(peer, key.as_str()).await)
    }

    /// All of a peer's headers as a dict, None if the peer is unknown.
    fn peer_headers<'py>(
        &self,
        py: Python<'py>,
        peer: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let peer = peer_id(peer)?;
        let infos = self.detached(py, async |n| n.peer_infos().await)?;
        let Some(info) = infos.into_iter().find(|i| i.uuid == peer) else {
            return Ok(None);
        };
        let dict = PyDict::new(py);
        for (k, v) in info.headers {
            dict.set_item(k, v)?;
        }
        Ok(Some(dict))
    }

    /// Changes (or adds) one of this node's headers while it runs. Harmony peers get the new
    /// set at once (a HEADERS event; their queries return the new value); Zyre and pyre peers
    /// keep the headers of the HELLO they got. `X-HARMONY` is reserved (ValueError).
    fn set_header(&self, py: Python<'_>, key: String, value: String) -> PyResult<()> {
        self.command(py, async |n| n.set_header(key, value).await)
    }

    /// A Harmony peer's current headers as a dict, asked for over the network; waits up to
    /// `timeout` seconds (5.0) with the GIL released, then raises TimeoutError. Raises
    /// `UnknownPeerError` for an unknown peer and `HarmonyError` for a peer that does not
    /// speak property requests (Zyre, pyre: use `peer_headers`).
    #[pyo3(signature = (peer, timeout=None))]
    fn request_properties<'py>(
        &self,
        py: Python<'py>,
        peer: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let peer = peer_id(peer)?;
        let timeout = match timeout {
            Some(t) => seconds("timeout", t)?,
            None => harmony_node::PROPS_TIMEOUT,
        };
        // The request goes out under the node; its answer is awaited without it (the pump
        // keeps taking events meanwhile), in slices so that Ctrl-C is honoured.
        let start = |mut held: Held<'_>| match held.node() {
            Some(node) => node.start_request_properties(peer, timeout),
            None => Err(NodeError::Stopped),
        };
        let wait = match self.cell.try_lock() {
            Some(held) => start(held),
            None => py.detach(|| start(self.cell.lock())),
        }
        .map_err(node_error)?;
        let mut wait = Box::pin(wait);
        let rt = self.rt;
        let headers = loop {
            let slice = py.detach(|| {
                rt.block_on(async { tokio::time::timeout(SIGNAL_CHECK, &mut wait).await })
            });
            match slice {
                Ok(result) => break result.map_err(node_error)?,
                Err(_) => py.check_signals()?,
            }
        };
        let dict = PyDict::new(py);
        for (k, v) in headers {
            dict.set_item(k, v)?;
        }
        Ok(dict)
    }

    /// Stops the node: peers are told (a port-0 beacon), a STOP event ends the events. Events
    /// not read yet stay readable. Stopping twice is harmless.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        // Unbounded until the end: the pump must see the driver's queue close.
        let _unbounded = self.inbox.unbounded();
        self.detached(py, async |n| n.stop().await)?;
        // The driver has ended; the pump takes its last events.
        while !py.detach(|| self.inbox.wait_closed(SIGNAL_CHECK)) {
            py.check_signals()?;
        }
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.stop(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<harmony.Node {:?} {} at {} on {}{}>",
            self.name,
            self.uuid.simple(),
            self.endpoint,
            self.interface,
            if self.public_key.is_some() {
                " (CURVE)"
            } else {
                ""
            }
        )
    }
}

impl Drop for PyNode {
    fn drop(&mut self) {
        // Dropping the node ends its driver like a stop (goodbye beacon, connections closed)
        // without waiting for anyone to read its events.
        if let Some(node) = self.cell.take() {
            let _guard = self.rt.enter();
            drop(node);
        }
    }
}

/// The key pair of encrypted mode, from a Z85 secret key or a certificate file.
fn curve_keys(
    secret: Option<String>,
    cert: Option<std::path::PathBuf>,
) -> PyResult<Option<KeyPair>> {
    Ok(match (secret, cert) {
        (Some(_), Some(_)) => {
            return Err(PyValueError::new_err(
                "give curve_secret_key or curve_cert, not both",
            ))
        }
        (Some(secret), None) => Some(KeyPair::from_secret_z85(secret.trim()).map_err(|e| {
            PyValueError::new_err(format!(
                "curve_secret_key is not a Z85 CURVE secret key (40 characters): {e}"
            ))
        })?),
        (None, Some(path)) => {
            let cert = Certificate::load(&path).map_err(|e| {
                PyValueError::new_err(format!("curve_cert {}: {e}", path.display()))
            })?;
            Some(cert.key_pair().cloned().ok_or_else(|| {
                PyValueError::new_err(format!(
                    "curve_cert {} has no secret key (its _secret file is needed)",
                    path.display()
                ))
            })?)
        }
        (None, None) => None,
    })
}

fn check_group(group: &str) -> PyResult<()> {
    if group.is_empty() || group.len() > 255 {
        return Err(PyValueError::new_err(format!(
            "a group name must be 1 to 255 bytes of UTF-8, not {} bytes",
            group.len()
        )));
    }
    Ok(())
}

fn uuids(py: Python<'_>, peers: Vec<Uuid>) -> PyResult<Vec<Bound<'_, PyAny>>> {
    peers.into_iter().map(|p| crate::py_uuid(py, p)).collect()
}
