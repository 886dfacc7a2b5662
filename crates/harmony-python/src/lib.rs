//! Python bindings for Harmony: the native part (`harmony._harmony`) of the Python package
//! `harmony`, built with maturin (`pip install ./crates/harmony-python`).
//!
//! - [`node::PyNode`] (`harmony.Node`): a running ZRE node. Commands (`whisper`, `shout`,
//!   `join`, `leave`) run the node's state machine on the caller's thread; queries and `stop`
//!   wait for the node's driver with the GIL released.
//! - Events move from the node's tokio driver into an [`inbox::Inbox`], a bounded queue that
//!   `recv(timeout)` waits on without the GIL, and whose readiness is mirrored on a socketpair
//!   (`fileno()`), so `asyncio` (`loop.add_reader`) and `zmq.Poller` can wait on a node too.
//! - [`event::PyEvent`] (`harmony.Event`): one event as a Python object; the pyre-compatible
//!   multipart form is built here as well (`harmony.pyre` is pure Python on top).
//!
//! The crate is only useful inside Python, so its tests are pytest's
//! (`crates/harmony-python/tests/`), run by `cargo xtask ci`.

pub mod event;
pub mod inbox;
pub mod node;

use std::sync::OnceLock;

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyString, PyTuple};

pyo3::create_exception!(
    harmony,
    HarmonyError,
    pyo3::exceptions::PyException,
    "A Harmony node could not start or could not carry out a command."
);
pyo3::create_exception!(
    harmony,
    NodeStoppedError,
    HarmonyError,
    "The node has stopped: it sends nothing more."
);
pyo3::create_exception!(
    harmony,
    UnknownPeerError,
    HarmonyError,
    "No known (ready) peer has this UUID."
);

/// The tokio runtime every node of this process runs on (two worker threads).
fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("harmony")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| PyRuntimeError::new_err(format!("harmony: cannot start tokio: {e}")))
}

/// A Rust error of the node as the matching Python exception.
fn node_error(e: harmony_node::NodeError) -> PyErr {
    use harmony_node::NodeError;
    match e {
        NodeError::Invalid(msg) => PyValueError::new_err(msg),
        NodeError::Stopped => NodeStoppedError::new_err("the node has stopped"),
        NodeError::UnknownPeer(peer) => {
            UnknownPeerError::new_err(format!("no known peer has UUID {}", peer.simple()))
        }
        NodeError::Timeout(peer) => pyo3::exceptions::PyTimeoutError::new_err(format!(
            "peer {} did not answer in time",
            peer.simple()
        )),
        other => HarmonyError::new_err(other.to_string()),
    }
}

/// A peer id from Python: a `uuid.UUID`, a str (32 hex digits, dashes allowed) or 16 bytes.
fn peer_id(obj: &Bound<'_, PyAny>) -> PyResult<harmony_node::Uuid> {
    let bad = || {
        let ty = obj
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        PyTypeError::new_err(format!(
            "peer must be a uuid.UUID, a str of 32 hex digits or 16 bytes, not {ty}"
        ))
    };
    if let Ok(s) = obj.cast::<PyString>() {
        let s = s.to_cow()?;
        return harmony_node::Uuid::try_parse(&s).map_err(|_| {
            PyValueError::new_err(format!("peer {s:?} is not a UUID (32 hex digits)"))
        });
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return harmony_node::Uuid::from_slice(b.as_bytes()).map_err(|_| {
            PyValueError::new_err(format!(
                "a peer as bytes must be 16 bytes long, not {}",
                b.as_bytes().len()
            ))
        });
    }
    if obj.is_instance(uuid_class(obj.py())?)? {
        let bytes = obj.getattr("bytes")?;
        let bytes = bytes.cast::<PyBytes>().map_err(|_| bad())?;
        return harmony_node::Uuid::from_slice(bytes.as_bytes()).map_err(|_| bad());
    }
    Err(bad())
}

/// Python's `uuid.UUID`, looked up once.
fn uuid_class(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static CLASS: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
    CLASS
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("uuid")?.getattr("UUID")?.unbind())
        })
        .map(|c| c.bind(py))
}

/// A `uuid.UUID` for a Rust UUID.
fn py_uuid(py: Python<'_>, uuid: harmony_node::Uuid) -> PyResult<Bound<'_, PyAny>> {
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item(pyo3::intern!(py, "int"), uuid.as_u128())?;
    uuid_class(py)?.call((), Some(&kwargs))
}

/// One frame from Python: bytes, bytearray, memoryview or str (UTF-8).
fn frame(obj: &Bound<'_, PyAny>) -> PyResult<bytes::Bytes> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(bytes::Bytes::copy_from_slice(b.as_bytes()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(bytes::Bytes::copy_from_slice(s.to_cow()?.as_bytes()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(bytes::Bytes::from(b.to_vec()));
    }
    if obj.hasattr("tobytes")? {
        // memoryview and friends
        let b = obj.call_method0("tobytes")?;
        if let Ok(b) = b.cast::<PyBytes>() {
            return Ok(bytes::Bytes::copy_from_slice(b.as_bytes()));
        }
    }
    let ty = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    Err(PyTypeError::new_err(format!(
        "a message frame must be bytes, bytearray, memoryview or str, not {ty}"
    )))
}

/// Message content from Python: one frame, or a list/tuple of frames (a multipart message).
fn content(obj: &Bound<'_, PyAny>) -> PyResult<Vec<bytes::Bytes>> {
    if let Ok(list) = obj.cast::<PyList>() {
        return list.iter().map(|f| frame(&f)).collect();
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        return tuple.iter().map(|f| frame(&f)).collect();
    }
    Ok(vec![frame(obj)?])
}

/// A duration in seconds from Python, checked (finite, not negative).
fn seconds(what: &str, value: f64) -> PyResult<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(value).map_err(|_| {
        PyValueError::new_err(format!(
            "{what} must be a finite number of seconds >= 0, not {value}"
        ))
    })
}

/// A new CURVE key pair, as `(public, secret)` Z85 strings (40 characters each).
#[pyfunction]
fn curve_keypair() -> (String, String) {
    let keys = harmony_security::KeyPair::generate();
    (keys.public_z85(), keys.secret_z85().to_string())
}

/// The native module `harmony._harmony`; the package `harmony` re-exports it.
#[pymodule]
fn _harmony(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<node::PyNode>()?;
    m.add_class::<event::PyEvent>()?;
    m.add_function(wrap_pyfunction!(curve_keypair, m)?)?;
    m.add("HarmonyError", py.get_type::<HarmonyError>())?;
    m.add("NodeStoppedError", py.get_type::<NodeStoppedError>())?;
    m.add("UnknownPeerError", py.get_type::<UnknownPeerError>())?;
    m.add("DEFAULT_PORT", 5670u16)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
