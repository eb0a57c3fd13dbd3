//! Connections on the HTTPS listener: how many are open, the limit on them, and TLS handshakes
//! that completed or failed.
//!
//! Pingora does the TLS handshake itself. What it offers around it is used here: a connection
//! filter, asked before each handshake (count, and refuse beyond `max_connections`), and a
//! post-handshake callback whose return value lives as long as the connection (a guard that
//! keeps the open-connection gauge right however the connection ends). A failed handshake is
//! only logged by pingora; the log line is counted (see `install_handshake_failure_counter`).
//! Before the handshake, [`FirstByte`] gives a connection the client read timeout to start it:
//! pingora-core's own handshake timeout is a fixed 60 s, so a client that connects and sends
//! nothing held its connection (and its place under `max_connections`) that long.

use crate::state::Shared;
use async_trait::async_trait;
use pingora::listeners::{ConnectionFilter, PreTlsProcess, TlsAccept};
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::tls::TlsRef;
use pingora::protocols::Peek;
use std::any::Any;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Refuses connections beyond `ARAGORA_GATEWAY_MAX_CONNECTIONS`; one per proxy runtime,
/// counting what that runtime accepted (`RunningGateway::accepted_per_runtime`).
#[derive(Clone)]
pub struct ConnectionGate {
    pub shared: Arc<Shared>,
    pub accepted: Arc<AtomicU64>,
}

impl std::fmt::Debug for ConnectionGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionGate")
    }
}

#[async_trait]
impl ConnectionFilter for ConnectionGate {
    async fn should_accept(&self, addr: Option<&SocketAddr>) -> bool {
        let metrics = &self.shared.metrics;
        let limit = self.shared.config().max_connections;
        if metrics.connections.get() >= limit as i64 {
            metrics.connections_refused.inc();
            tracing::warn!(client = ?addr, limit, "connection refused: ARAGORA_GATEWAY_MAX_CONNECTIONS are open");
            return false;
        }
        self.accepted.fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// Waits, before the TLS handshake, for the client's first byte for at most
/// `ARAGORA_CLIENT_READ_TIMEOUT`; a client that sends nothing in that time is dropped (as nginx
/// and HAProxy drop it at their client timeouts). The byte is read and put back (pingora's
/// peek), so the handshake sees the stream whole.
pub struct FirstByte {
    pub shared: Arc<Shared>,
}

#[async_trait]
impl PreTlsProcess for FirstByte {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        let patience =
            std::time::Duration::from_secs(self.shared.config().client_read_timeout_secs);
        let mut first = [0u8; 1];
        match tokio::time::timeout(patience, stream.try_peek(&mut first)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => pingora::Error::e_because(
                pingora::ErrorType::ReadError,
                "before the TLS handshake",
                err,
            ),
            Err(_) => pingora::Error::e_explain(
                pingora::ErrorType::ReadTimedout,
                format!(
                    "no TLS handshake started within {patience:?} (ARAGORA_CLIENT_READ_TIMEOUT)"
                ),
            ),
        }
    }
}

/// Counts completed handshakes by protocol version and holds the open-connection gauge.
pub struct HandshakeObserver {
    pub shared: Arc<Shared>,
}

/// Lives in the connection's TLS digest; gives the gauge back when the connection closes.
struct OpenConnection(prometheus::IntGauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[async_trait]
impl TlsAccept for HandshakeObserver {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let metrics = &self.shared.metrics;
        // rustls names versions after its enum variants (`TLSv1_3`); label them as people write them.
        let version = match tls.version() {
            Some("TLSv1_3") => "TLSv1.3",
            Some("TLSv1_2") => "TLSv1.2",
            _ => "other",
        };
        metrics.tls_handshakes.with_label_values(&[version]).inc();
        metrics.connections.inc();
        Some(Arc::new(OpenConnection(metrics.connections.clone())))
    }
}

/// Pingora logs `Downstream handshake error ...` / `Downstream handshake timeout` and carries
/// on; those lines become `aragora_tls_handshake_failures_total`.
pub fn install_handshake_failure_counter(counter: prometheus::IntCounter) {
    aragora_telemetry::count_log_events(
        "pingora_core::services::listening",
        "Downstream handshake",
        counter,
    );
}
