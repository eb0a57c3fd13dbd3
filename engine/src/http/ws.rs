//! `/ws`: live debate events, with resume from a client's last seen `seq`.
//!
//! A client subscribes with `/ws?debate_id=ID&last_seq=N`, or by sending
//! `{"type":"subscribe","debate_id":ID,"last_seq":N}` (several debates per connection). For
//! each subscription the server first subscribes to the live channel, then replays from the
//! store every event after `last_seq`, then forwards live events, skipping any it already sent
//! and refilling any gap from the store. Because events are persisted before they are
//! announced, the client sees every event exactly once, in order, across reconnects.
//!
//! The upgrade is refused (403) from a browser `Origin` not in `ARAGORA_ALLOWED_ORIGINS` and not
//! the request's own (the console's pages, served on the same listener, may watch), and
//! needs a credential: `Authorization: Bearer`, a `token` query parameter, or, for browsers,
//! the subprotocol `aragora.bearer.<token>` (valid only for tokens that are HTTP tokens: JWTs,
//! API keys; the runbook's `loop:expires:sig` has ':' and works as header or query only). The
//! answer echoes `aragora.v1` when the client offered it too, else the bearer protocol. Every
//! subscription is authorised like `GET /api/debates/{id}`: a share link watches its debate
//! only, and a refused subscription gets an `error` event with code `forbidden`.
//!
//! Per client (see [`limits`]): at most `ARAGORA_WS_MAX_CONNECTIONS_PER_CLIENT` open
//! WebSockets (one more: 429 `client_limit` at the upgrade) and `ARAGORA_WS_MAX_SUBSCRIPTIONS`
//! debates per connection (one more: an `error` event `client_limit`, the connection stays),
//! and `ARAGORA_WS_MAX_MESSAGES_PER_SECOND` messages a second across the client's WebSockets
//! (one more closes that connection with 1008, policy). A connection ends with 1008 too when its
//! credential expires (a JWT's `exp`, a key's or loop token's expiry) or its API key is revoked
//! (checked at each heartbeat).
//! A frame the connection cannot take closes it with RFC 6455's code: 1009 for a message or
//! frame over `ARAGORA_WS_MAX_MESSAGE_SIZE` (refused at the frame's header, before it is read),
//! 1007 for text that is not UTF-8, 1002 for a protocol error (an unmasked frame, a
//! continuation without a start, a fragmented control frame, reserved bits).

use super::access;
use super::limits::{self, ClientLimit, ClientSlot, ConnectionRefusals};
use super::{AppState, Phase};
use crate::error::ApiError;
use crate::events::{EventHub, HubMessage};
use crate::model::{format_ms, now_ms, DebateEvent, EventKind};
use crate::store::DebateStore;
use aragora_auth::{AuthError, Principal};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::Response;
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, Mutex};
use tokio::task::JoinHandle;

/// Close code 1001: the server is going away; the client should reconnect and resume.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code 1002: the client broke the WebSocket protocol.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code 1007: a text message that is not UTF-8.
pub const CLOSE_INVALID_DATA: u16 = 1007;
/// Close code 1008: the client broke a policy (more messages than
/// `ARAGORA_WS_MAX_MESSAGES_PER_SECOND`, a credential that expired or was revoked).
pub const CLOSE_POLICY: u16 = 1008;
/// Close code 1009: a message or frame larger than `ARAGORA_WS_MAX_MESSAGE_SIZE`.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Initial read buffer of a connection. Clients send only small control messages, and
/// tungstenite zero-fills the whole buffer when it first reads (its default, 128 KiB, was
/// nearly all of an idle connection's memory); a larger message grows it.
const WS_READ_BUFFER: usize = 4 * 1024;
/// Events read from the store per query while catching up.
const REPLAY_BATCH: i64 = 500;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WsQuery {
    /// Subscribe to this debate at once (more with `subscribe` messages).
    debate_id: Option<String>,
    /// Replay the events after this `seq` first (a reconnecting client's last seen).
    last_seq: Option<i64>,
    /// A credential, for links and browsers; read by [`access::query_token`], never logged.
    #[allow(dead_code)]
    token: Option<String>,
}

/// The subprotocol prefix carrying a bearer token (browsers cannot set headers on WebSockets).
pub const BEARER_PROTOCOL: &str = "aragora.bearer.";
/// The subprotocol echoed back when offered along with the bearer one, so the token does not
/// come back in the answer's headers.
pub const PROTOCOL: &str = "aragora.v1";

/// The offered subprotocols, in order.
fn offered_protocols(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// What a client may send on an open `/ws`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    Subscribe {
        debate_id: String,
        #[serde(default)]
        last_seq: i64,
    },
    Unsubscribe {
        debate_id: String,
    },
    Ping,
}

/// A client's text message read as the session reads it (`fuzzing/` tries any text through it).
pub fn parse_client_message(text: &str) -> Result<ClientMessage, serde_json::Error> {
    serde_json::from_str(text)
}

/// Live debate events over a WebSocket (readers, or a share link to the debate).
///
/// The module's documentation (and the README's WebSocket section) describe the messages; the
/// credential may also come as the subprotocol `aragora.bearer.<token>`.
#[utoipa::path(get, path = "/ws", operation_id = "websocket", tag = "debates",
    security(("bearer" = []), ("query_token" = [])),
    params(WsQuery),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol."),
        (status = 400, description = "Not a WebSocket upgrade, or a query that does not parse.", body = crate::error::ErrorBody),
        (status = 426, description = "The connection cannot be upgraded.", body = crate::error::ErrorBody),
    ))]
pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    // Taken as a Result so that the credential is checked first: a caller without one learns
    // nothing, not even that the request was not an upgrade.
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    const ROUTE: &str = "/ws";
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let policy = aragora_auth::OriginPolicy::new(&state.auth.config().allowed_origins);
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        let scheme = header("x-forwarded-proto").unwrap_or("http");
        if !policy.allows_from(origin, scheme, header(header::HOST.as_str())) {
            state.metrics.auth_failure("origin");
            tracing::warn!(
                route = ROUTE,
                "WebSocket upgrade from an origin not in ARAGORA_ALLOWED_ORIGINS refused"
            );
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "this page's origin may not open aragora WebSockets; add it to ARAGORA_ALLOWED_ORIGINS",
            ));
        }
    }
    let offered = offered_protocols(&headers);
    let bearer_protocol = offered
        .iter()
        .find(|p| p.starts_with(BEARER_PROTOCOL))
        .map(|p| p.to_string());
    let fallback = access::query_token(&uri).or_else(|| {
        bearer_protocol
            .as_deref()
            .and_then(|p| p.strip_prefix(BEARER_PROTOCOL))
            .map(str::to_string)
    });
    let principal = access::authenticate(&state, ROUTE, &headers, fallback.as_deref()).await?;
    let ws = ws.map_err(|rejection| {
        ApiError::new(
            rejection.status(),
            "not_a_websocket",
            format!(
                "{}; connect with a WebSocket client to /ws?debate_id=ID",
                rejection.body_text()
            ),
        )
    })?;
    let Query(query) = Query::<WsQuery>::try_from_uri(&uri).map_err(ApiError::from)?;
    if let Some(id) = &query.debate_id {
        access::check(&state, ROUTE, &principal, principal.require_debate(id))?;
    }
    state.core()?;
    if state.phase() == Phase::Draining {
        return Err(ApiError::unavailable(
            "this replica is draining; reconnect and the load balancer will pick a ready one",
            1,
        ));
    }
    let allowed = state.config.ws_max_connections_per_client;
    let rate = state.config.ws_max_messages_per_second;
    // Counted here (the message allowance is this replica's) and, with Redis, across the
    // replicas: the slot is refused, and given back, as a whole.
    let (slot, held_here) = state.websockets.take(&principal.subject, rate);
    let label = ClientLimit::WebSockets.label();
    let slot = match state
        .slots
        .take(label, &principal.subject, None, allowed, held_here)
        .await
    {
        Ok(shared) => slot.with_shared(shared),
        Err(refused) => {
            drop(slot);
            return Err(limits::too_many(
                &state,
                ClientLimit::WebSockets,
                &principal.subject,
                format!(
                    "this credential already holds {} WebSockets open {}, the most one client may (ARAGORA_WS_MAX_CONNECTIONS_PER_CLIENT is {allowed}); close one, or follow several debates on one connection",
                    refused.held,
                    refused.scope.phrase()
                ),
                1,
            ));
        }
    };
    let max = state.config.ws_max_message_size;
    let ws = match (offered.contains(&PROTOCOL), bearer_protocol) {
        (true, _) => ws.protocols([PROTOCOL]),
        (false, Some(bearer)) => ws.protocols([bearer]),
        (false, None) => ws,
    };
    // The frame bound as well: a frame is read whole before its message is measured, so
    // without it one 16 MiB frame (tungstenite's default) would be buffered before the 1009.
    Ok(ws
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(WS_READ_BUFFER)
        .on_upgrade(move |socket| session(state, socket, query, principal, slot)))
}

/// A message that is not a stored event: heartbeats and per-connection errors.
fn notice(kind: EventKind, debate_id: Option<&str>, data: Value) -> String {
    json!({
        "type": kind,
        "debate_id": debate_id,
        "seq": null,
        "round": null,
        "agent": null,
        "data": data,
        "timestamp": format_ms(now_ms()),
    })
    .to_string()
}

fn client_error(debate_id: Option<&str>, code: &str, message: String) -> String {
    notice(
        EventKind::Error,
        debate_id,
        json!({"code": code, "message": message}),
    )
}

/// A connection's sending half, shared by its session and its subscriptions: each
/// subscription writes its own events, so a live event costs a watcher one task wake-up and
/// one write, not a hop through a channel to the session's task as well.
#[derive(Clone)]
struct Outbox(Arc<Mutex<SplitSink<WebSocket, Message>>>);

impl Outbox {
    async fn send(&self, text: impl Into<Utf8Bytes>) -> Result<(), ()> {
        let mut sink = self.0.lock().await;
        sink.send(Message::Text(text.into())).await.map_err(|_| ())
    }
}

/// Decrements `aragora_websocket_connections` however the session ends.
struct ConnectionGauge(prometheus::IntGauge);

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Why `principal` may not watch debate `id`, as the connection's error event; counted.
fn refused_subscription(state: &AppState, principal: &Principal, id: &str) -> Option<String> {
    let err = principal.require_debate(id).err()?;
    if let Some(reason) = err.metric_reason() {
        state.metrics.auth_failure(reason);
    }
    tracing::warn!(route = "/ws", subject = %principal.subject, credential = principal.via.kind(), "subscription refused: not allowed");
    let message = match err {
        AuthError::Forbidden { .. } => format!(
            "this credential may not watch debate {id}; a share link watches only its own debate"
        ),
        other => other.public_code_and_message().1,
    };
    Some(client_error(Some(id), "forbidden", message))
}

/// The refusal of one more subscription on a connection that follows
/// `ARAGORA_WS_MAX_SUBSCRIPTIONS` debates, counted. Follows that ended (their debate did, or
/// it does not exist) are dropped first: they hold no place.
fn over_subscribed(
    state: &AppState,
    principal: &Principal,
    refusals: &mut ConnectionRefusals,
    subscriptions: &mut HashMap<String, JoinHandle<()>>,
    id: &str,
) -> Option<String> {
    subscriptions.retain(|id, task| {
        let done = task.is_finished();
        if done {
            state.hub.release(id);
        }
        !done
    });
    let max = state.config.ws_max_subscriptions;
    if subscriptions.contains_key(id) || subscriptions.len() < max {
        return None;
    }
    refusals.refuse(state, ClientLimit::Subscriptions, &principal.subject);
    Some(client_error(
        Some(id),
        limits::CODE,
        format!("this WebSocket already follows {max} debates, the most one connection may (ARAGORA_WS_MAX_SUBSCRIPTIONS); unsubscribe from one first"),
    ))
}

/// The close frame a failed read deserves, when the client caused it (RFC 6455 section 7.4.1);
/// `None` when the connection just went away.
fn close_for(err: axum::Error, max: usize) -> Option<CloseFrame> {
    use tungstenite::Error as WsError;
    let inner = err.into_inner();
    let (code, reason) = match inner.downcast_ref::<WsError>()? {
        WsError::Capacity(_) => (
            CLOSE_TOO_BIG,
            format!("message too big: the limit is {max} bytes (ARAGORA_WS_MAX_MESSAGE_SIZE)"),
        ),
        WsError::Utf8(_) => (CLOSE_INVALID_DATA, "text is not valid UTF-8".to_string()),
        WsError::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => {
            return None
        }
        WsError::Protocol(problem) => (CLOSE_PROTOCOL_ERROR, format!("protocol error: {problem}")),
        _ => return None,
    };
    tracing::info!(code, reason = %reason, "closing a WebSocket the client broke");
    Some(CloseFrame {
        code,
        reason: short_reason(reason).into(),
    })
}

/// After our close frame, reads (and drops) what the client still sends until its close, for
/// at most a second: a socket dropped with unread bytes is reset, and a reset can destroy the
/// close frame before the client reads it.
async fn linger(stream: &mut futures::stream::SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// `reason` cut to the 123 bytes a close frame has room for, on a character boundary.
fn short_reason(mut reason: String) -> String {
    const MAX: usize = 123;
    if reason.len() > MAX {
        let mut end = MAX;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

async fn session(
    state: AppState,
    socket: WebSocket,
    query: WsQuery,
    principal: Principal,
    // Held for the connection's life: its place under ARAGORA_WS_MAX_CONNECTIONS_PER_CLIENT,
    // and the client's message allowance.
    slot: ClientSlot,
) {
    state.metrics.websocket_connections.inc();
    let _gauge = ConnectionGauge(state.metrics.websocket_connections.clone());
    let Ok(core) = state.core() else { return };
    let store = core.store.clone();
    let (sink, mut stream) = socket.split();
    let out = Outbox(Arc::new(Mutex::new(sink)));
    let mut subscriptions: HashMap<String, JoinHandle<()>> = HashMap::new();
    let subscribe = |id: String, last_seq: i64, subs: &mut HashMap<String, JoinHandle<()>>| {
        if let Some(previous) = subs.remove(&id) {
            previous.abort();
        }
        let task = tokio::spawn(follow(
            store.clone(),
            state.hub.clone(),
            id.clone(),
            last_seq,
            out.clone(),
        ));
        subs.insert(id, task);
    };
    if let Some(id) = query.debate_id {
        subscribe(id, query.last_seq.unwrap_or(0), &mut subscriptions);
    }
    let period = Duration::from_secs(state.config.ws_heartbeat_secs);
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut closing = state.closing.clone();
    let mut refusals = ConnectionRefusals::default();
    let expiry = credential_expiry(&principal);
    tokio::pin!(expiry);
    loop {
        tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(_) | Message::Binary(_))) if !slot.take_message() => {
                    refusals.refuse(&state, ClientLimit::Messages, &principal.subject);
                    let rate = state.config.ws_max_messages_per_second;
                    let frame = CloseFrame {
                        code: CLOSE_POLICY,
                        reason: format!("over {rate} messages a second (ARAGORA_WS_MAX_MESSAGES_PER_SECOND); reconnect and send fewer").into(),
                    };
                    let _ = out.0.lock().await.send(Message::Close(Some(frame))).await;
                    linger(&mut stream).await;
                    break;
                }
                Some(Ok(Message::Text(text))) => {
                    match parse_client_message(&text) {
                        Ok(ClientMessage::Subscribe { debate_id, last_seq }) => {
                            let refusal = refused_subscription(&state, &principal, &debate_id)
                                .or_else(|| over_subscribed(&state, &principal, &mut refusals, &mut subscriptions, &debate_id));
                            match refusal {
                                Some(refusal) => {
                                    if out.send(refusal).await.is_err() {
                                        break;
                                    }
                                }
                                None => subscribe(debate_id, last_seq, &mut subscriptions),
                            }
                        }
                        Ok(ClientMessage::Unsubscribe { debate_id }) => {
                            if let Some(task) = subscriptions.remove(&debate_id) {
                                task.abort();
                            }
                            state.hub.release(&debate_id);
                        }
                        Ok(ClientMessage::Ping) => {
                            let pong = notice(EventKind::Heartbeat, None, json!({"pong": true}));
                            if out.send(pong).await.is_err() {
                                break;
                            }
                        }
                        Err(err) => {
                            let message = client_error(None, "invalid_message", format!(
                                "{err}; send {{\"type\":\"subscribe\",\"debate_id\":\"ID\",\"last_seq\":0}}"
                            ));
                            if out.send(message).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let message = client_error(None, "invalid_message", "binary messages are not supported; send JSON text".into());
                    if out.send(message).await.is_err() {
                        break;
                    }
                }
                Some(Err(err)) => {
                    if let Some(frame) = close_for(err, state.config.ws_max_message_size) {
                        let _ = out.0.lock().await.send(Message::Close(Some(frame))).await;
                    }
                    break;
                }
                Some(Ok(Message::Close(_))) => {
                    // Sends the reply tungstenite queued (the client's own code back) before
                    // the connection is dropped, as RFC 6455 asks.
                    let _ = out.0.lock().await.close().await;
                    break;
                }
                None => break,
                Some(Ok(_)) => {}
            },
            _ = &mut expiry => {
                let frame = CloseFrame {
                    code: CLOSE_POLICY,
                    reason: "the credential expired; reconnect with a fresh one and last_seq to resume".into(),
                };
                let _ = out.0.lock().await.send(Message::Close(Some(frame))).await;
                linger(&mut stream).await;
                break;
            }
            _ = heartbeat.tick() => {
                if let Some(id) = revoked_key(&state, &principal).await {
                    let frame = CloseFrame {
                        code: CLOSE_POLICY,
                        reason: format!("API key {id} was revoked; reconnect with another credential").into(),
                    };
                    let _ = out.0.lock().await.send(Message::Close(Some(frame))).await;
                    linger(&mut stream).await;
                    break;
                }
                let ids: Vec<&String> = subscriptions.keys().collect();
                let beat = notice(EventKind::Heartbeat, None, json!({"subscriptions": ids}));
                if out.send(beat).await.is_err() {
                    break;
                }
            }
            _ = async { closing.wait_for(|closing| *closing).await.map(|_| ()) } => {
                let frame = CloseFrame {
                    code: CLOSE_GOING_AWAY,
                    reason: "server shutting down; reconnect with last_seq to resume".into(),
                };
                let _ = out.0.lock().await.send(Message::Close(Some(frame))).await;
                break;
            }
        }
    }
    for (id, task) in subscriptions {
        task.abort();
        // The aborted task drops its receiver when it is next polled; release after that.
        let _ = task.await;
        state.hub.release(&id);
    }
}

/// Resolves when the connection's credential stops working (a JWT's `exp`, an API key's or a
/// loop token's expiry); never for one without an end. A WebSocket outliving its credential
/// would keep showing a debate to someone no longer allowed to read it.
async fn credential_expiry(principal: &Principal) {
    match principal.expires_at {
        Some(at) => {
            let left = (at - aragora_auth::unix_now()).max(0) as u64;
            tokio::time::sleep(Duration::from_secs(left)).await;
        }
        None => std::future::pending().await,
    }
}

/// The connection's API key id when that key has been revoked (or deleted) since the upgrade,
/// checked at each heartbeat through the authenticator (the key store, read at most once per
/// key and `ARAGORA_API_KEY_CACHE_SECONDS`), so a revocation on another replica counts too. A
/// key store that does not answer keeps the connection: the check runs again next beat.
async fn revoked_key(state: &AppState, principal: &Principal) -> Option<String> {
    let aragora_auth::Via::ApiKey { id, .. } = &principal.via else {
        return None;
    };
    match state.auth.key_still_stands(id).await {
        Ok(true) => None,
        Ok(false) => Some(id.clone()),
        Err(err) => {
            tracing::warn!(error = %err, "cannot check whether a WebSocket's API key was revoked; checking again at the next heartbeat");
            None
        }
    }
}

enum Replay {
    Ended,
    More,
}

/// Sends stored events after `*last` to the client; `Ended` once `debate_end` was sent.
async fn catch_up(
    store: &Arc<dyn DebateStore>,
    id: &str,
    last: &mut i64,
    out: &Outbox,
) -> Result<Replay, ()> {
    loop {
        let batch = store.events_after(id, *last, REPLAY_BATCH).await.map_err(
            |err| tracing::warn!(debate_id = %id, error = %err, "replay from store failed"),
        )?;
        let full = batch.len() as i64 == REPLAY_BATCH;
        for event in batch {
            if send(out, &event, last).await? {
                return Ok(Replay::Ended);
            }
        }
        if !full {
            return Ok(Replay::More);
        }
    }
}

/// Sends one event and advances `last`; true when it was the debate's end.
async fn send(out: &Outbox, event: &DebateEvent, last: &mut i64) -> Result<bool, ()> {
    let text = serde_json::to_string(event).map_err(|_| ())?;
    send_rendered(out, event, text.into(), last).await
}

/// [`send`] for a live event the hub already rendered.
async fn send_rendered(
    out: &Outbox,
    event: &DebateEvent,
    json: Utf8Bytes,
    last: &mut i64,
) -> Result<bool, ()> {
    out.send(json).await.map_err(|_| ())?;
    *last = event.seq;
    Ok(event.kind == EventKind::DebateEnd)
}

/// Streams one debate's events to the client from `last` on, until its end.
async fn follow(
    store: Arc<dyn DebateStore>,
    hub: EventHub,
    id: String,
    mut last: i64,
    out: Outbox,
) {
    let mut live = hub.subscribe(&id);
    let record = match store.debate(&id).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            let message = format!("no debate with id {id:?}; create one with POST /api/debates");
            let _ = out
                .send(client_error(Some(&id), "not_found", message))
                .await;
            return;
        }
        Err(err) => {
            let _ = out
                .send(client_error(
                    Some(&id),
                    "unavailable",
                    format!("cannot read the debate now: {err}; reconnect to retry"),
                ))
                .await;
            return;
        }
    };
    if last < 0 {
        last = 0;
    }
    match catch_up(&store, &id, &mut last, &out).await {
        Ok(Replay::Ended) | Err(()) => return,
        Ok(Replay::More) => {}
    }
    // A finished debate whose end the client already has: nothing more will come.
    if record.status.is_final() && last >= record.last_seq {
        return;
    }
    loop {
        match live.recv().await {
            Ok(HubMessage::Delta(text)) => {
                if out.send(text).await.is_err() {
                    return;
                }
            }
            Ok(HubMessage::Event(published)) => {
                let event = &published.event;
                if event.seq <= last {
                    continue;
                }
                if event.seq > last + 1 {
                    match catch_up(&store, &id, &mut last, &out).await {
                        Ok(Replay::Ended) | Err(()) => return,
                        Ok(Replay::More) if event.seq <= last => continue,
                        Ok(Replay::More) => {}
                    }
                }
                match send_rendered(&out, event, published.json.clone(), &mut last).await {
                    Ok(false) => {}
                    Ok(true) | Err(()) => return,
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                match catch_up(&store, &id, &mut last, &out).await {
                    Ok(Replay::Ended) | Err(()) => return,
                    Ok(Replay::More) => {}
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
