//! The routes: JSON in and out, SSE and WebSocket streams, the page.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::sync::{broadcast, oneshot};

use super::{Request, Shared};

/// Largest request body accepted.
const MAX_BODY: usize = 64 << 10;
/// Most events written to a WebSocket before one flush.
const WS_BATCH: usize = 256;
/// Largest group name (a ZRE `string`).
const MAX_GROUP: usize = 255;

const PAGE: &str = include_str!("page.html");

pub(super) fn router(shared: Shared) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/peers", get(peers))
        .route("/api/groups", get(groups))
        .route("/api/shout", post(shout))
        .route("/api/whisper", post(whisper))
        .route("/api/events", get(events))
        .route("/api/logs", get(logs))
        .route("/api/stats", get(stats))
        .route("/ws", get(ws))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route").into_response() })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// A 4xx/5xx answer: `{"error": message}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError(status, message.into())
}

async fn page() -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE)).into_response()
}

async fn ask<T>(
    shared: &Shared,
    make: impl FnOnce(oneshot::Sender<T>) -> Request,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    if shared.requests.send(make(tx)).await.is_err() {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node has stopped",
        ));
    }
    rx.await
        .map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "the node has stopped"))
}

async fn peers(State(shared): State<Shared>) -> Response {
    match ask(&shared, Request::Peers).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn groups(State(shared): State<Shared>) -> Response {
    match ask(&shared, Request::Groups).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

fn authorized(shared: &Shared, headers: &HeaderMap, query_token: Option<&str>) -> bool {
    let Some(token) = &shared.token else {
        return true;
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer.or(query_token) == Some(&**token)
}

/// A JSON object body with string fields `names`.
fn fields<const N: usize>(body: &[u8], names: [&str; N]) -> Result<[String; N], ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad JSON: {e}")))?;
    let Some(obj) = value.as_object() else {
        return Err(error(StatusCode::BAD_REQUEST, "expected a JSON object"));
    };
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    for (slot, name) in out.iter_mut().zip(names) {
        match obj.get(name) {
            Some(Value::String(s)) => *slot = s.clone(),
            Some(_) => {
                return Err(error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("\"{name}\" must be a string"),
                ))
            }
            None => {
                return Err(error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("missing \"{name}\""),
                ))
            }
        }
    }
    Ok(out)
}

fn check_group(group: &str) -> Result<(), ApiError> {
    if group.is_empty() || group.len() > MAX_GROUP {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a group is 1 to 255 bytes",
        ));
    }
    Ok(())
}

async fn do_shout(shared: &Shared, group: String, text: String) -> Result<Value, ApiError> {
    check_group(&group)?;
    ask(shared, |reply| Request::Shout {
        group: group.clone(),
        text,
        reply,
    })
    .await?
    .map_err(|e| error(StatusCode::CONFLICT, e))?;
    Ok(json!({"ok": true, "group": group}))
}

async fn do_whisper(shared: &Shared, peer: String, text: String) -> Result<Value, ApiError> {
    let uuid = ask(shared, |reply| Request::Whisper { peer, text, reply })
        .await?
        .map_err(|(code, e)| {
            error(
                StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
                e,
            )
        })?;
    Ok(json!({"ok": true, "peer": harmony_peer::uuid_string(&uuid)}))
}

async fn shout(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&shared, &headers, None) {
        return error(StatusCode::UNAUTHORIZED, "a bearer token is required").into_response();
    }
    let result = async {
        let [group, text] = fields(&body, ["group", "text"])?;
        do_shout(&shared, group, text).await
    }
    .await;
    result.map_or_else(IntoResponse::into_response, |v| Json(v).into_response())
}

async fn whisper(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&shared, &headers, None) {
        return error(StatusCode::UNAUTHORIZED, "a bearer token is required").into_response();
    }
    let result = async {
        let [peer, text] = fields(&body, ["peer", "text"])?;
        do_whisper(&shared, peer, text).await
    }
    .await;
    result.map_or_else(IntoResponse::into_response, |v| Json(v).into_response())
}

async fn logs(State(shared): State<Shared>) -> Response {
    match &shared.logs {
        Some(tail) => Json(Value::Array(tail())).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "no log collector runs in this bridge",
        )
        .into_response(),
    }
}

async fn stats(State(shared): State<Shared>) -> Response {
    Json(json!({
        "uuid": harmony_peer::uuid_string(&shared.uuid),
        "name": &*shared.name,
        "published": shared.counters.published.load(Ordering::Relaxed),
        "dropped": shared.counters.dropped.load(Ordering::Relaxed),
        "logs": shared.logs.is_some(),
    }))
    .into_response()
}

/// Counts `n` events a client lost and tells it.
fn dropped(shared: &Shared, n: u64) -> Arc<str> {
    shared.counters.dropped.fetch_add(n, Ordering::Relaxed);
    Arc::from(json!({"event": "DROPPED", "count": n}).to_string())
}

/// The next stream item for one client: an event, or a DROPPED notice after it fell behind.
async fn next_item(shared: &Shared, rx: &mut broadcast::Receiver<Arc<str>>) -> Option<Arc<str>> {
    match rx.recv().await {
        Ok(s) => Some(s),
        Err(broadcast::error::RecvError::Lagged(n)) => {
            shared.counters.dropped.fetch_add(n, Ordering::Relaxed);
            Some(Arc::from(
                json!({"event": "DROPPED", "count": n}).to_string(),
            ))
        }
        Err(broadcast::error::RecvError::Closed) => None,
    }
}

/// Like [`next_item`] without waiting: `None` when nothing is queued.
fn try_next_item(shared: &Shared, rx: &mut broadcast::Receiver<Arc<str>>) -> Option<Arc<str>> {
    match rx.try_recv() {
        Ok(s) => Some(s),
        Err(broadcast::error::TryRecvError::Lagged(n)) => Some(dropped(shared, n)),
        Err(_) => None,
    }
}

fn hello(shared: &Shared) -> Arc<str> {
    Arc::from(
        json!({
            "event": "HELLO",
            "uuid": harmony_peer::uuid_string(&shared.uuid),
            "name": &*shared.name,
            "logs": shared.logs.is_some(),
        })
        .to_string(),
    )
}

async fn events(
    State(shared): State<Shared>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = shared.events.subscribe();
    let first = hello(&shared);
    let stream = stream::unfold(
        (shared, rx, Some(first)),
        |(shared, mut rx, first)| async move {
            let item = match first {
                Some(f) => f,
                None => next_item(&shared, &mut rx).await?,
            };
            Some((Ok(SseEvent::default().data(&*item)), (shared, rx, None)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn ws(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<std::collections::HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let may_send = authorized(&shared, &headers, query.get("token").map(String::as_str));
    upgrade.on_upgrade(move |socket| ws_session(socket, shared, may_send))
}

async fn ws_session(mut socket: WebSocket, shared: Shared, may_send: bool) {
    let mut rx = shared.events.subscribe();
    if socket
        .send(WsMessage::Text(hello(&shared).to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            item = next_item(&shared, &mut rx) => {
                let Some(item) = item else { break };
                // Write what is queued in one go, flushed once.
                let mut batch = vec![item];
                while batch.len() < WS_BATCH {
                    match try_next_item(&shared, &mut rx) {
                        Some(item) => batch.push(item),
                        None => break,
                    }
                }
                let mut failed = false;
                for item in batch {
                    if socket.feed(WsMessage::Text(item.to_string().into())).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                if failed || socket.flush().await.is_err() {
                    break;
                }
            }
            msg = socket.recv() => {
                let text = match msg {
                    Some(Ok(WsMessage::Text(t))) => t,
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let reply = if may_send {
                    ws_command(&shared, text.as_bytes()).await
                } else {
                    json!({"event": "ERROR", "error": "a token is required to send (?token=...)"})
                };
                if socket.send(WsMessage::Text(reply.to_string().into())).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// One command from a WebSocket client; the reply is `{"event": "OK", ...}` or
/// `{"event": "ERROR", "error": ...}`.
async fn ws_command(shared: &Shared, body: &[u8]) -> Value {
    let result = async {
        let [kind] = fields(body, ["type"])?;
        match kind.as_str() {
            "shout" => {
                let [group, text] = fields(body, ["group", "text"])?;
                do_shout(shared, group, text).await
            }
            "whisper" => {
                let [peer, text] = fields(body, ["peer", "text"])?;
                do_whisper(shared, peer, text).await
            }
            "join" | "leave" => {
                let [group] = fields(body, ["group"])?;
                check_group(&group)?;
                ask(shared, |reply| Request::Join {
                    group: group.clone(),
                    leave: kind == "leave",
                    reply,
                })
                .await?
                .map_err(|e| error(StatusCode::CONFLICT, e))?;
                Ok(json!({"ok": true, "group": group}))
            }
            other => Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("unknown type {other:?}"),
            )),
        }
    }
    .await;
    match result {
        Ok(mut v) => {
            v["event"] = "OK".into();
            v
        }
        Err(ApiError(status, message)) => {
            json!({"event": "ERROR", "error": message, "status": status.as_u16()})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::Counters;

    #[tokio::test]
    async fn a_client_that_falls_behind_is_told_and_counted() {
        let (events, mut rx) = broadcast::channel::<Arc<str>>(4);
        let (requests, _keep) = tokio::sync::mpsc::channel(1);
        let shared = Shared {
            requests,
            events: events.clone(),
            token: None,
            counters: Arc::new(Counters::default()),
            logs: None,
            uuid: harmony_node::Uuid::nil(),
            name: Arc::from("test"),
        };
        // The node side never waits: ten sends into a queue of four.
        for i in 0..10 {
            events.send(Arc::from(format!("{{\"n\":{i}}}"))).unwrap();
        }
        let first = next_item(&shared, &mut rx).await.unwrap();
        assert_eq!(&*first, r#"{"count":6,"event":"DROPPED"}"#);
        assert_eq!(shared.counters.dropped.load(Ordering::Relaxed), 6);
        for i in 6..10 {
            assert_eq!(
                &*next_item(&shared, &mut rx).await.unwrap(),
                format!("{{\"n\":{i}}}")
            );
        }
    }
}
