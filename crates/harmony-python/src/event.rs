//! Events as Python objects (`harmony.Event`) and as pyre's multipart lists.

use harmony_node::Event;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

/// One event of a node: a peer came (ENTER) or went (EXIT), joined or left a group, sent a
/// message (WHISPER, SHOUT), went quiet (EVASIVE, SILENT), a leader was elected (LEADER), or
/// this node stopped (STOP, the last event).
#[pyclass(name = "Event", module = "harmony", frozen)]
pub struct PyEvent {
    event: Event,
}

impl PyEvent {
    /// Wraps a node event.
    pub fn new(event: Event) -> Self {
        Self { event }
    }
}

fn frames<'py>(py: Python<'py>, content: &[bytes::Bytes]) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, content.iter().map(|f| PyBytes::new(py, f)))
}

#[pymethods]
impl PyEvent {
    /// The event type as Zyre spells it: "ENTER", "EXIT", "JOIN", "LEAVE", "WHISPER", "SHOUT",
    /// "EVASIVE", "SILENT", "LEADER" or "STOP".
    #[getter]
    fn r#type(&self) -> &'static str {
        self.event.kind()
    }

    /// The peer the event is about (this node for STOP), a `uuid.UUID`.
    #[getter]
    fn peer<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::py_uuid(py, self.event.peer())
    }

    /// The peer's UUID as 32 lowercase hex digits (Zyre's text form).
    #[getter]
    fn peer_id(&self) -> String {
        self.event.peer().simple().to_string()
    }

    /// The peer's name.
    #[getter]
    fn peer_name(&self) -> &str {
        self.event.name()
    }

    /// The group (JOIN, LEAVE, SHOUT, LEADER), else None.
    #[getter]
    fn group(&self) -> Option<&str> {
        self.event.group()
    }

    /// The message frames (WHISPER, SHOUT) as a list of bytes, else None.
    #[getter]
    fn content<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        match &self.event {
            Event::Whisper { content, .. } | Event::Shout { content, .. } => {
                frames(py, content).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The peer's headers (ENTER, HEADERS) as a dict, else None.
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let (Event::Enter { headers, .. } | Event::Headers { headers, .. }) = &self.event else {
            return Ok(None);
        };
        let dict = PyDict::new(py);
        for (k, v) in headers {
            dict.set_item(k, v)?;
        }
        Ok(Some(dict))
    }

    /// The peer's inbox endpoint, `tcp://ip:port` (ENTER), else None.
    #[getter]
    fn endpoint(&self) -> Option<&str> {
        match &self.event {
            Event::Enter { endpoint, .. } => Some(endpoint),
            _ => None,
        }
    }

    fn __repr__(&self) -> String {
        let mut s = format!(
            "<harmony.Event {} from {} ({})",
            self.event.kind(),
            self.peer_name(),
            self.event.peer().simple()
        );
        if let Some(group) = self.group() {
            s.push_str(&format!(" group={group:?}"));
        }
        if let Event::Whisper { content, .. } | Event::Shout { content, .. } = &self.event {
            s.push_str(&format!(
                " {} frame(s), {} bytes",
                content.len(),
                content.iter().map(|f| f.len()).sum::<usize>()
            ));
        }
        s.push('>');
        s
    }
}

/// Whether pyre would hand this event to the application (pyre has no EVASIVE, SILENT or
/// LEADER events).
pub fn pyre_visible(event: &Event) -> bool {
    matches!(
        event,
        Event::Enter { .. }
            | Event::Exit { .. }
            | Event::Join { .. }
            | Event::Leave { .. }
            | Event::Whisper { .. }
            | Event::Shout { .. }
            | Event::Stop { .. }
    )
}

/// JSON of the headers the way pyre's `send_json` writes them (`{"key": "value", ...}`, in
/// the peer's order).
fn headers_json(headers: &[(String, String)]) -> String {
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    let body: Vec<String> = headers
        .iter()
        .map(|(k, v)| format!("{}: {}", quote(k), quote(v)))
        .collect();
    format!("{{{}}}", body.join(", "))
}

/// The event as pyre's `recv()` returns it: `[type, uuid (16 bytes), name, ...]` with, after
/// the name, `[headers JSON, endpoint]` for ENTER, `[group]` for JOIN/LEAVE, the content for
/// WHISPER and `[group, content...]` for SHOUT.
pub fn pyre_frames<'py>(py: Python<'py>, event: &Event) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    list.append(PyBytes::new(py, event.kind().as_bytes()))?;
    list.append(PyBytes::new(py, event.peer().as_bytes()))?;
    let name = event.name();
    list.append(PyBytes::new(py, name.as_bytes()))?;
    match event {
        Event::Enter {
            headers, endpoint, ..
        } => {
            list.append(PyBytes::new(py, headers_json(headers).as_bytes()))?;
            list.append(PyBytes::new(py, endpoint.as_bytes()))?;
        }
        Event::Join { group, .. } | Event::Leave { group, .. } => {
            list.append(PyBytes::new(py, group.as_bytes()))?;
        }
        Event::Whisper { content, .. } => {
            for f in content {
                list.append(PyBytes::new(py, f))?;
            }
        }
        Event::Shout { group, content, .. } => {
            list.append(PyBytes::new(py, group.as_bytes()))?;
            for f in content {
                list.append(PyBytes::new(py, f))?;
            }
        }
        _ => {}
    }
    Ok(list)
}
