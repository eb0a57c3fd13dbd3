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
use super::ws_wire::{close_frame, text_frame, Duplex, Wire};
use super::{AppState, Phase};
use crate::error::ApiError;
use crate::events::{EventHub, HubMessage};
use crate::model::{format_ms, now_ms, DebateEvent, EventKind};
use crate::store::DebateStore;
use aragora_auth::{AuthError, Principal};
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_tungstenite_server::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite_server::tungstenite::Message;
use tokio_tungstenite_server::WebSocketStream;

/// A `/ws` connection as the session reads it: tungstenite over the upgraded connection's
/// reading half, writing (pongs, close replies) through the connection's [`Wire`].
type Socket = WebSocketStream<Duplex<tokio::io::ReadHalf<TokioIo<hyper::upgrade::Upgraded>>>>;

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
    mut request: Request,
) -> Result<Response, ApiError> {
    const ROUTE: &str = "/ws";
    // The connection itself, for the session (axum's WebSocket would keep it to itself); what
    // the request must be to upgrade is still axum's to say, read from a copy of its head.
    let on_upgrade = hyper::upgrade::on(&mut request);
    let (mut parts, _) = request.into_parts();
    let ws = {
        let mut head = Request::new(()).into_parts().0;
        head.method = parts.method.clone();
        head.version = parts.version;
        head.uri = parts.uri.clone();
        head.headers = parts.headers.clone();
        head.extensions.insert(hyper::upgrade::on(Request::new(())));
        if let Some(protocol) = parts.extensions.get::<hyper::ext::Protocol>() {
            head.extensions.insert(protocol.clone());
        }
        WebSocketUpgrade::from_request_parts(&mut head, &state).await
    };
    let headers = std::mem::take(&mut parts.headers);
    let uri = parts.uri;
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
    // Checked after the credential: a caller without one learns nothing, not even that the
    // request was not an upgrade.
    let _checked = ws.map_err(|rejection| {
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
    let protocol = match (offered.contains(&PROTOCOL), bearer_protocol) {
        (true, _) => Some(PROTOCOL.to_string()),
        (false, bearer) => bearer,
    };
    // The frame bound as well: a frame is read whole before its message is measured, so
    // without it one 16 MiB frame (tungstenite's default) would be buffered before the 1009.
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        .read_buffer_size(WS_READ_BUFFER);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let (read, write) = tokio::io::split(TokioIo::new(upgraded));
        let wire = Wire::new(write);
        let socket = WebSocketStream::from_raw_socket(
            Duplex::new(read, wire.clone()),
            Role::Server,
            Some(config),
        )
        .await;
        session(state, socket, wire, query, principal, slot).await;
    });
    let mut response = match headers.get(header::SEC_WEBSOCKET_KEY) {
        // HTTP/1.1 (a key is how axum's check passed): 101 with the key's answer.
        Some(key) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let answer = response.headers_mut();
            answer.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            answer.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            answer.insert(header::SEC_WEBSOCKET_ACCEPT, accept_key(key.as_bytes()));
            response
        }
        // HTTP/2 (RFC 8441): a 200 opens the stream.
        None => Response::new(Body::empty()),
    };
    if let Some(protocol) = protocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        response
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    Ok(response)
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key` (RFC 6455 section 4.2.2).
fn accept_key(key: &[u8]) -> HeaderValue {
    use base64::Engine as _;
    use sha1::Digest as _;
    let mut sha1 = sha1::Sha1::default();
    sha1.update(key);
    sha1.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let encoded = base64::engine::general_purpose::STANDARD.encode(sha1.finalize());
    HeaderValue::from_str(&encoded).expect("base64 is a valid header value")
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

/// A connection's sending side, shared by its session and its subscriptions: each
/// subscription writes its own events, so a live event costs a watcher one task wake-up and
/// one write of the frame every watcher is sent ([`ws_wire`](super::ws_wire)).
#[derive(Clone)]
struct Outbox(Arc<Wire>);

/// How long the session waits for one of its own writes (a heartbeat, a reply, a close) to
/// go out. A client that stops reading (a zero TCP window) would otherwise hold the session in
/// that write for good: it would no longer close the connection when its credential expires
/// or is revoked, or at shutdown. A live event's write has no such bound: a watcher that falls
/// behind catches up from the store.
const STALLED_WRITE: Duration = Duration::from_secs(10);

impl Outbox {
    /// A message rendered for this connection alone (a notice, a reply); an error when it did
    /// not go out within [`STALLED_WRITE`].
    async fn send(&self, text: impl AsRef<str>) -> Result<(), ()> {
        tokio::time::timeout(STALLED_WRITE, self.send_frame(text_frame(text.as_ref())))
            .await
            .unwrap_or(Err(()))
    }

    /// A frame already encoded (a live event's, shared by every watcher).
    async fn send_frame(&self, frame: Bytes) -> Result<(), ()> {
        self.0.send(frame).await.map_err(|_| ())
    }

    /// The close frame; nothing is sent after it.
    async fn close(&self, code: u16, reason: String) {
        let frame = close_frame(code, &short_reason(reason));
        let _ = tokio::time::timeout(STALLED_WRITE, self.0.close(frame)).await;
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
fn close_for(err: &tungstenite::Error, max: usize) -> Option<(u16, String)> {
    use tungstenite::Error as WsError;
    let (code, reason) = match err {
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
    Some((code, reason))
}

/// After our close frame, reads (and drops) what the client still sends until its close, for
/// at most a second: a socket dropped with unread bytes is reset, and a reset can destroy the
/// close frame before the client reads it.
async fn linger(stream: &mut Socket) {
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
    mut stream: Socket,
    wire: Arc<Wire>,
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
    let out = Outbox(wire);
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
                    out.close(CLOSE_POLICY, format!("over {rate} messages a second (ARAGORA_WS_MAX_MESSAGES_PER_SECOND); reconnect and send fewer")).await;
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
                    if let Some((code, reason)) = close_for(&err, state.config.ws_max_message_size) {
                        out.close(code, reason).await;
                    }
                    break;
                }
                Some(Ok(Message::Close(_))) => {
                    // Sends the reply tungstenite queued (the client's own code back) before
                    // the connection is dropped, as RFC 6455 asks.
                    // The sink's close (not `WebSocketStream::close`, a send, which tungstenite
                    // refuses once the client closed) flushes that reply.
                    let _ = futures::SinkExt::close(&mut stream).await;
                    let _ = out.0.flush().await;
                    break;
                }
                None => break,
                Some(Ok(_)) => {}
            },
            _ = &mut expiry => {
                out.close(CLOSE_POLICY, "the credential expired; reconnect with a fresh one and last_seq to resume".into()).await;
                linger(&mut stream).await;
                break;
            }
            _ = heartbeat.tick() => {
                if let Some(id) = revoked_key(&state, &principal).await {
                    out.close(CLOSE_POLICY, format!("API key {id} was revoked; reconnect with another credential")).await;
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
                out.close(CLOSE_GOING_AWAY, "server shutting down; reconnect with last_seq to resume".into()).await;
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
    send_rendered(out, event, text_frame(&text), last).await
}

/// [`send`] for a live event the hub already rendered and framed.
async fn send_rendered(
    out: &Outbox,
    event: &DebateEvent,
    frame: Bytes,
    last: &mut i64,
) -> Result<bool, ()> {
    out.send_frame(frame).await?;
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
                if out.send_frame(text.frame).await.is_err() {
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
                match send_rendered(&out, event, published.frame.clone(), &mut last).await {
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
