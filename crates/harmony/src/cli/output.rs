//! How events are printed: one line of text, or one JSON object with every field.

use harmony::peer::uuid_string;
use harmony::Event;
use serde_json::Value;

use harmony::bridge::content_text as text;

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
        _ => head,
    }
}

/// One JSON object per event, headers and content included (the bridge's format).
pub(crate) fn json(event: &Event) -> Value {
    harmony::bridge::event_json(event)
}

/// A peer as JSON (for `harmony peers --json`).
pub(crate) fn peer_json(p: &harmony::PeerInfo) -> Value {
    harmony::bridge::peer_json(p)
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
