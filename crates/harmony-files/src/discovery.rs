//! Finding FILEMQ servers through ZRE discovery: a node that serves files carries its
//! endpoint in the `X-FILEMQ` header of its HELLO; `tcp://*:PORT` stands for "this node's own
//! address", for a server listening on every interface.

use std::time::Duration;

use harmony_node::{Event, Node};
use tokio::time::{timeout_at, Instant};

/// The ZRE header that carries a FILEMQ endpoint.
pub const FILEMQ_HEADER: &str = "X-FILEMQ";

/// The ZRE header that carries a CURVE FILEMQ server's public key (Z85).
pub const KEY_HEADER: &str = "X-FILEMQ-KEY";

/// The ZRE header that names what a FILEMQ server publishes (see [`tree_id`]): a server
/// restarted on the same tree carries the same one, so a client can follow it to its new
/// endpoint, and not to another server's.
pub const TREE_HEADER: &str = "X-FILEMQ-TREE";

/// The [`TREE_HEADER`] value for directory `dir` published at `vpath`: a digest of where the
/// directory really is and of the virtual path (not the path itself, which stays private).
pub fn tree_id(dir: &std::path::Path, vpath: &str) -> String {
    use std::os::unix::ffi::OsStrExt;
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut hasher = crate::ext::Hasher::new();
    hasher.update(dir.as_os_str().as_bytes());
    hasher.update(b"\0");
    hasher.update(vpath.as_bytes());
    crate::ext::digest_hex(&hasher)[..16].to_string()
}

/// The header value for a server bound at `bound`.
pub fn advertise(bound: &str) -> String {
    match bound.strip_prefix("tcp://0.0.0.0:") {
        Some(port) => format!("tcp://*:{port}"),
        None => bound.to_string(),
    }
}

/// The endpoint to connect to, from a header value and the advertising node's own ZRE
/// endpoint (`tcp://host:port`).
pub fn resolve(advertised: &str, node_endpoint: &str) -> Option<String> {
    let Some(port) = advertised.strip_prefix("tcp://*:") else {
        return advertised
            .starts_with("tcp://")
            .then(|| advertised.to_string());
    };
    let (host, _) = node_endpoint.strip_prefix("tcp://")?.rsplit_once(':')?;
    Some(format!("tcp://{host}:{port}"))
}

/// The FILEMQ endpoint a peer advertises in an ENTER event.
pub fn server_in(event: &Event) -> Option<String> {
    match event {
        Event::Enter {
            headers, endpoint, ..
        } => headers
            .iter()
            .find(|(k, _)| k == FILEMQ_HEADER)
            .and_then(|(_, v)| resolve(v, endpoint)),
        _ => None,
    }
}

/// Waits up to `wait` for a peer that serves files; its FILEMQ endpoint.
pub async fn find_server(node: &mut Node, wait: Duration) -> Option<String> {
    let deadline = Instant::now() + wait;
    loop {
        let event = timeout_at(deadline, node.next_event()).await.ok()??;
        if let Some(endpoint) = server_in(&event) {
            return Some(endpoint);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(advertise("tcp://0.0.0.0:5670"), "tcp://*:5670");
        assert_eq!(advertise("tcp://127.0.0.1:5670"), "tcp://127.0.0.1:5670");
        assert_eq!(
            resolve("tcp://*:5670", "tcp://10.0.0.7:49152").as_deref(),
            Some("tcp://10.0.0.7:5670")
        );
        assert_eq!(
            resolve("tcp://127.0.0.1:1", "tcp://10.0.0.7:2").as_deref(),
            Some("tcp://127.0.0.1:1")
        );
        assert_eq!(resolve("garbage", "tcp://10.0.0.7:2"), None);
        assert_eq!(resolve("tcp://*:1", "nonsense"), None);
    }

    #[test]
    fn a_tree_is_named_by_where_it_is_and_its_virtual_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        let id = tree_id(&dir.path().join("a"), "/");
        assert_eq!(id.len(), 16);
        assert_eq!(tree_id(&dir.path().join("a/../a"), "/"), id);
        assert_ne!(tree_id(&dir.path().join("a"), "/x"), id);
        assert_ne!(tree_id(dir.path(), "/"), id);
    }
}
