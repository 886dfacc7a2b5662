//! How events are printed: one line of text, or one JSON object with every field.

use harmony::peer::uuid_string;
use harmony::Event;
use serde_json::{json, Map, Value};

fn text(frames: &[bytes::Bytes]) -> String {
    frames
        .iter()
        .map(|f| String::from_utf8_lossy(f))
        .collect::<Vec<_>>()
        .join(" ")
}

fn headers_json(headers: &[(String, String)]) -> Value {
    Value::Object(
        headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}

/// `ENTER <uuid> <name> <endpoint>`, `SHOUT <uuid> <name> <group> <text>`, ...
pub(crate) fn line(event: &Event) -> String {
    let head = format!(
        "{} {} {}",
        event.kind(),
        uuid_string(&event.peer()),
        event.name()
    );
    match event {
        Event::Enter { endpoint, .. } => format!("{head} {endpoint}"),
        Event::Join { group, .. } | Event::Leave { group, .. } | Event::Leader { group, .. } => {
            format!("{head} {group}")
        }
        Event::Shout { group, content, .. } => format!("{head} {group} {}", text(content)),
        Event::Whisper { content, .. } => format!("{head} {}", text(content)),
        Event::Headers { headers, .. } => {
            let kv: Vec<String> = headers.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{head} {}", kv.join(" "))
        }
        _ => head,
    }
}

/// One JSON object per event, headers and content included.
pub(crate) fn json(event: &Event) -> Value {
    let mut obj = json!({
        "event": event.kind(),
        "uuid": uuid_string(&event.peer()),
        "name": event.name(),
    });
    let map = obj.as_object_mut().expect("object");
    if let Some(group) = event.group() {
        map.insert("group".into(), group.into());
    }
    match event {
        Event::Enter {
            endpoint, headers, ..
        } => {
            map.insert("endpoint".into(), endpoint.as_str().into());
            map.insert("headers".into(), headers_json(headers));
        }
        Event::Headers {
            headers, request, ..
        } => {
            map.insert("headers".into(), headers_json(headers));
            if let Some(request) = request {
                map.insert("request".into(), (*request).into());
            }
        }
        Event::Shout { content, .. } | Event::Whisper { content, .. } => {
            map.insert("text".into(), text(content).into());
            let frames: Vec<Value> = content
                .iter()
                .map(|f| String::from_utf8_lossy(f).into())
                .collect();
            map.insert("content".into(), frames.into());
        }
        _ => {}
    }
    obj
}

/// A peer as JSON (for `harmony peers --json`).
pub(crate) fn peer_json(p: &harmony::PeerInfo) -> Value {
    json!({
        "uuid": uuid_string(&p.uuid),
        "name": p.name,
        "endpoint": p.endpoint,
        "groups": p.groups,
        "headers": headers_json(&p.headers),
    })
}

/// `link <peer uuid | inbox>: <monitor event>` for `--verbose`.
pub(crate) fn link_line(link: &harmony::node::LinkEvent) -> String {
    let who = link
        .peer
        .map_or_else(|| "inbox".to_owned(), |p| uuid_string(&p));
    format!("link {who}: {}", link.event)
}

/// The next link event, if the links are watched; never otherwise.
pub(crate) async fn next_link(
    links: &mut Option<tokio::sync::mpsc::Receiver<harmony::node::LinkEvent>>,
) -> Option<harmony::node::LinkEvent> {
    match links {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
