//! The WebSockets the gateway holds open, so that a drain can close them with 1001 (Going Away)
//! at its timeout instead of dropping their TCP connections.
//!
//! After the upgrade pingora relays the bytes both ways and offers no way to write to the
//! client on our own. What it does offer is the end of the upstream side, passed through
//! `response_body_filter`. So at the drain timeout the gateway shuts down the read half of each
//! upgraded upstream socket; pingora sees the upstream end, and the proxy's
//! `response_body_filter` turns that end into a close frame with code 1001 for the client, who
//! reconnects (to another gateway) and resumes from its last `seq`.
//!
//! Sockets are known by their file descriptor, taken in `connected_to_upstream`. Before shutting
//! one down the gateway checks that the descriptor still names the same connection (local and
//! peer address), since a descriptor number is reused once its connection is closed.

use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A server close frame (unmasked): code 1001, Going Away.
pub const GOING_AWAY: [u8; 4] = [0x88, 0x02, 0x03, 0xE9];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UpstreamSocket {
    fd: RawFd,
    local: SocketAddr,
    peer: SocketAddr,
}

impl UpstreamSocket {
    /// The connection behind `fd` now, if it is a connected socket.
    fn of(fd: RawFd) -> Option<UpstreamSocket> {
        // SAFETY: the descriptor is only borrowed for the two address lookups below; it stays
        // owned by pingora's connection, and a stale number fails or names another socket,
        // which the address comparison catches.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&borrowed);
        Some(UpstreamSocket {
            fd,
            local: socket.local_addr().ok()?.as_socket()?,
            peer: socket.peer_addr().ok()?.as_socket()?,
        })
    }
}

/// Every upgraded connection open through the gateway.
#[derive(Default)]
pub struct OpenWebSockets {
    sockets: Mutex<HashMap<u64, Option<UpstreamSocket>>>,
    next_id: AtomicU64,
    closing: AtomicBool,
}

/// One open WebSocket: counted in `aragora_websocket_connections{upstream}` and known to the
/// drain until dropped (when pingora ends the request).
pub struct OpenWebSocket {
    id: u64,
    owner: Arc<OpenWebSockets>,
    gauge: prometheus::IntGauge,
}

impl Drop for OpenWebSocket {
    fn drop(&mut self) {
        self.gauge.dec();
        if let Ok(mut sockets) = self.owner.sockets.lock() {
            sockets.remove(&self.id);
        }
    }
}

impl OpenWebSockets {
    /// Registers an upgraded connection whose upstream socket is `fd` (when pingora gave one).
    pub fn register(
        self: &Arc<Self>,
        fd: Option<RawFd>,
        gauge: prometheus::IntGauge,
    ) -> OpenWebSocket {
        gauge.inc();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let socket = fd.and_then(UpstreamSocket::of);
        if let Ok(mut sockets) = self.sockets.lock() {
            sockets.insert(id, socket);
        }
        OpenWebSocket {
            id,
            owner: self.clone(),
            gauge,
        }
    }

    pub fn count(&self) -> usize {
        self.sockets.lock().map_or(0, |s| s.len())
    }

    /// True once [`close_all`](Self::close_all) ran: an upstream end is then the gateway's
    /// doing, and the client gets 1001.
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Ends every open WebSocket's upstream side; returns how many were ended.
    pub fn close_all(&self) -> usize {
        self.closing.store(true, Ordering::Release);
        let sockets: Vec<UpstreamSocket> = self
            .sockets
            .lock()
            .map(|s| s.values().flatten().copied().collect())
            .unwrap_or_default();
        sockets
            .into_iter()
            .filter(|socket| {
                // The same descriptor still names the same connection: safe to end it.
                if UpstreamSocket::of(socket.fd) != Some(*socket) {
                    return false;
                }
                // SAFETY: as in `UpstreamSocket::of`; shutdown(2) does not close the descriptor.
                let borrowed = unsafe { BorrowedFd::borrow_raw(socket.fd) };
                socket2::SockRef::from(&borrowed)
                    .shutdown(std::net::Shutdown::Read)
                    .is_ok()
            })
            .count()
    }
}

/// What the client gets when the upstream side of a WebSocket ends: the gateway's close frame
/// when the gateway ended it (drain timeout), the upstream's own bytes otherwise.
pub fn on_upstream_end(body: &mut Option<Bytes>, closing: bool) {
    if !closing {
        return;
    }
    *body = Some(match body.take() {
        Some(data) if !data.is_empty() => {
            let mut joined = data.to_vec();
            joined.extend_from_slice(&GOING_AWAY);
            Bytes::from(joined)
        }
        _ => Bytes::from_static(&GOING_AWAY),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    #[test]
    fn closing_ends_the_upstream_read_side_of_registered_sockets_only() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let upstream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_engine_side, _) = listener.accept().unwrap();
        let open = Arc::new(OpenWebSockets::default());
        let gauge = prometheus::IntGauge::new("g", "g").unwrap();
        let registered = open.register(Some(upstream.as_raw_fd()), gauge.clone());
        assert_eq!((open.count(), gauge.get()), (1, 1));
        assert!(!open.closing());
        assert_eq!(open.close_all(), 1);
        assert!(open.closing());
        // The read side is shut: a read returns end of stream at once.
        let mut buffer = [0u8; 8];
        assert_eq!((&upstream).read(&mut buffer).unwrap(), 0);
        drop(registered);
        assert_eq!((open.count(), gauge.get()), (0, 0));
    }

    #[test]
    fn a_reused_descriptor_is_left_alone() {
        let open = Arc::new(OpenWebSockets::default());
        let gauge = prometheus::IntGauge::new("g", "g").unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let first = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let fd = first.as_raw_fd();
        let _registered = open.register(Some(fd), gauge);
        drop(first);
        // Another connection may now get the same number; it is not the registered one.
        let second = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert_eq!(open.close_all(), 0);
        let mut buffer = [0u8; 1];
        second.set_nonblocking(true).unwrap();
        assert!(
            (&second).read(&mut buffer).is_err(),
            "still open, nothing to read"
        );
    }

    #[test]
    fn the_gateways_end_becomes_a_going_away_frame() {
        let mut body = None;
        on_upstream_end(&mut body, false);
        assert_eq!(body, None);
        on_upstream_end(&mut body, true);
        assert_eq!(body.as_deref(), Some(&GOING_AWAY[..]));
        let mut body = Some(Bytes::from_static(b"\x81\x01x"));
        on_upstream_end(&mut body, true);
        assert_eq!(body.as_deref(), Some(&b"\x81\x01x\x88\x02\x03\xe9"[..]));
    }
}
