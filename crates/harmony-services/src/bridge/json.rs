//! Node events and peers as JSON: the fields of `harmony chat --json`.

use std::collections::BTreeMap;

use bytes::Bytes;
use harmony_node::{Event, PeerInfo};
use harmony_peer::uuid_string;
use serde_json::{json, Map, Value};

/// Content frames as text (lossy UTF-8), joined by spaces.
pub fn content_text(frames: &[Bytes]) -> String {
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

/// One JSON object per event: `event`, `uuid`, `name`, and `group`, `endpoint`, `headers`,
/// `text`, `content` where the event has them.
pub fn event_json(event: &Event) -> Value {
    let mut obj = json!({
        "event": event.kind(),
        "uuid": uuid_string(&event.peer()),
        "name": event.name(),
    });
    let Some(map) = obj.as_object_mut() else {
        return obj;
    };
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
            map.insert("text".into(), content_text(content).into());
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

/// A peer as JSON.
pub fn peer_json(p: &PeerInfo) -> Value {
    json!({
        "uuid": uuid_string(&p.uuid),
        "name": p.name,
        "endpoint": p.endpoint,
        "groups": p.groups,
        "headers": headers_json(&p.headers),
    })
}

/// Every group someone (or we) is in, with its members.
pub(crate) fn groups_json(peers: &[PeerInfo], own: &[String]) -> Value {
    let mut groups: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for g in own {
        groups.entry(g).or_default();
    }
    for p in peers {
        for g in &p.groups {
            groups
                .entry(g)
                .or_default()
                .push(json!({"uuid": uuid_string(&p.uuid), "name": p.name}));
        }
    }
    Value::Array(
        groups
            .into_iter()
            .map(|(g, members)| {
                json!({"group": g, "joined": own.iter().any(|o| o == g), "members": members})
            })
            .collect(),
    )
}
