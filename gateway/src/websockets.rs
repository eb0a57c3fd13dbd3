//! The WebSockets the gateway holds open, and the plain tunnel that relays each one after its
//! `101`: a byte copy both ways between the client's stream and the replica's, cut when it has
//! been silent both ways for the idle timeout, and closed with 1001 (Going Away) at the drain
//! timeout instead of having its TCP connections dropped.
//!
//! After the upgrade nothing on the connection is HTTP, so pingora hands over both raw streams
//! (the vendored `ProxyHttp::upgraded_tunnel`). The tunnel holds no buffer while idle: each
//! read goes into a scratch buffer on the stack and is written on at once; only bytes the
//! other side cannot take yet are kept, until it can. At the drain timeout every tunnel sees
//! the closing signal, finishes what it was passing to the client, and sends the close frame;
//! the client reconnects (to another gateway) and resumes from its last `seq`.
//!
//! Each client address (after trusted `X-Forwarded-For`, as the `client` module decides) may
//! hold `ARAGORA_GATEWAY_MAX_WEBSOCKETS_PER_CLIENT` of them at once: [`OpenWebSockets::take`]
//! counts one per upgrade request before it is passed on, and its [`ClientWebSocket`] gives it
//! back when the request ends, however it ends (refused by the replica, closed, idle timeout,
//! the drain's 1001). The count is this gateway's; the engine counts per credential on top.

use pingora::protocols::Stream;
use pingora::proxy::UpgradedTunnel;
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::io;
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

/// A server close frame (unmasked): code 1001, Going Away.
pub const GOING_AWAY: [u8; 4] = [0x88, 0x02, 0x03, 0xE9];

/// The most a tunnel reads at once, into a buffer on the stack: a TLS record's worth of a
/// large frame moves in one read, and nothing is held between reads.
const SCRATCH: usize = 16 * 1024;

/// Every upgraded connection open through the gateway, and the signal that closes them.
pub struct OpenWebSockets {
    open: AtomicUsize,
    closing: watch::Sender<bool>,
    /// Upgrades in progress or open, per client address; only addresses holding one are kept.
    per_client: std::sync::Mutex<HashMap<IpAddr, usize>>,
}

impl Default for OpenWebSockets {
    fn default() -> Self {
        Self {
            open: AtomicUsize::new(0),
            closing: watch::Sender::new(false),
            per_client: Default::default(),
        }
    }
}

/// One client's upgrade, counted against its address until dropped.
pub struct ClientWebSocket {
    owner: Arc<OpenWebSockets>,
    client: IpAddr,
}

impl Drop for ClientWebSocket {
    fn drop(&mut self) {
        let mut counts = self.owner.clients();
        if let Some(held) = counts.get_mut(&self.client) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

/// One open WebSocket: counted in `aragora_websocket_connections{upstream}` and known to the
/// drain until dropped (when pingora ends the request).
pub struct OpenWebSocket {
    owner: Arc<OpenWebSockets>,
    gauge: prometheus::IntGauge,
}

impl Drop for OpenWebSocket {
    fn drop(&mut self) {
        self.gauge.dec();
        self.owner.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl OpenWebSockets {
    /// Registers an upgraded connection.
    pub fn register(self: &Arc<Self>, gauge: prometheus::IntGauge) -> OpenWebSocket {
        gauge.inc();
        self.open.fetch_add(1, Ordering::AcqRel);
        OpenWebSocket {
            owner: self.clone(),
            gauge,
        }
    }

    pub fn count(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_client.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One more WebSocket for `client` when it holds fewer than `max`; None when it holds
    /// `max` already.
    pub fn take(self: &Arc<Self>, client: IpAddr, max: usize) -> Option<ClientWebSocket> {
        let mut counts = self.clients();
        let held = counts.entry(client).or_insert(0);
        if *held >= max {
            if *held == 0 {
                counts.remove(&client);
            }
            return None;
        }
        *held += 1;
        Some(ClientWebSocket {
            owner: self.clone(),
            client,
        })
    }

    /// What `client` holds now.
    pub fn held_by(&self, client: IpAddr) -> usize {
        self.clients().get(&client).copied().unwrap_or(0)
    }

    /// True once [`close_all`](Self::close_all) ran.
    pub fn closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// Tells every tunnel, open or still to come, to close its client with 1001; returns how
    /// many are open.
    pub fn close_all(&self) -> usize {
        self.closing.send_replace(true);
        self.count()
    }

    /// Relays `tunnel` until a side ends it, it has been silent both ways for `idle`, or the
    /// drain closes it.
    pub async fn relay(&self, tunnel: UpgradedTunnel, idle: Duration) -> Result<End, Broken> {
        let mut closing = self.closing.subscribe();
        let mut streams = Tunnel::new(tunnel);
        let end = {
            let relay = streams.relay(idle);
            tokio::pin!(relay);
            tokio::select! {
                biased;
                end = &mut relay => end?,
                _ = closing.wait_for(|closing| *closing) => End::Drained,
            }
        };
        if end == End::Drained {
            streams.going_away().await.map_err(Broken::Downstream)?;
        }
        Ok(end)
    }
}

/// How a tunnel ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides finished (each closed its sending side).
    Closed,
    /// Nothing moved either way for the idle timeout.
    Idle,
    /// The drain timeout: the client got 1001.
    Drained,
}

/// Which side of a tunnel failed.
#[derive(Debug, thiserror::Error)]
pub enum Broken {
    #[error("the client's side of the WebSocket broke: {0}")]
    Downstream(io::Error),
    #[error("the replica's side of the WebSocket broke: {0}")]
    Upstream(io::Error),
}

/// One side of a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Replica,
}

impl Side {
    fn broken(self, err: io::Error) -> Broken {
        match self {
            Side::Client => Broken::Downstream(err),
            Side::Replica => Broken::Upstream(err),
        }
    }

    fn other(self) -> Side {
        match self {
            Side::Client => Side::Replica,
            Side::Replica => Side::Client,
        }
    }
}

/// Bytes moving one way, from `source` to the other side: what was read but not yet taken.
struct Pump {
    source: Side,
    pending: Vec<u8>,
    written: usize,
    unflushed: bool,
    /// The source ended.
    eof: bool,
    /// ... and the end was passed on.
    done: bool,
}

impl Pump {
    fn new(source: Side, already_read: bytes::Bytes) -> Self {
        Self {
            source,
            pending: already_read.to_vec(),
            written: 0,
            unflushed: false,
            eof: false,
            done: false,
        }
    }

    /// Writes what is pending and flushes; ready once nothing is left to write.
    fn poll_drain(&mut self, cx: &mut Context<'_>, to: &mut Stream) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n = ready!(Pin::new(&mut *to).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
            self.unflushed = true;
        }
        if !self.pending.is_empty() {
            // Back to no allocation while idle.
            self.pending = Vec::new();
            self.written = 0;
        }
        if self.unflushed {
            ready!(Pin::new(&mut *to).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Moves bytes from `from` to `to` until `from` has nothing more right now (pending) or has
    /// ended and the end was passed on (ready). `moved` is set when any byte was read.
    fn poll_pump(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut Stream,
        to: &mut Stream,
        scratch: &mut [MaybeUninit<u8>],
        moved: &mut bool,
    ) -> Poll<Result<(), Broken>> {
        let sink = self.source.other();
        while !self.done {
            ready!(self.poll_drain(cx, to)).map_err(|err| sink.broken(err))?;
            if self.eof {
                ready!(Pin::new(&mut *to).poll_shutdown(cx)).map_err(|err| sink.broken(err))?;
                self.done = true;
                break;
            }
            let mut read = ReadBuf::uninit(scratch);
            ready!(Pin::new(&mut *from).poll_read(cx, &mut read))
                .map_err(|err| self.source.broken(err))?;
            let filled = read.filled();
            if filled.is_empty() {
                self.eof = true;
                continue;
            }
            *moved = true;
            // Straight on while the other side takes it; what it cannot take yet waits here.
            let mut at = 0;
            while at < filled.len() {
                match Pin::new(&mut *to).poll_write(cx, &filled[at..]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(sink.broken(io::ErrorKind::WriteZero.into())))
                    }
                    Poll::Ready(Ok(n)) => at += n,
                    Poll::Ready(Err(err)) => return Poll::Ready(Err(sink.broken(err))),
                    Poll::Pending => break,
                }
            }
            self.pending.extend_from_slice(&filled[at..]);
            self.unflushed = true;
        }
        Poll::Ready(Ok(()))
    }
}

/// The two streams of an upgraded connection and the bytes in flight each way.
struct Tunnel {
    client: Stream,
    replica: Stream,
    to_replica: Pump,
    to_client: Pump,
}

impl Tunnel {
    fn new(tunnel: UpgradedTunnel) -> Self {
        Self {
            client: tunnel.downstream,
            replica: tunnel.upstream,
            to_replica: Pump::new(Side::Client, tunnel.from_downstream),
            to_client: Pump::new(Side::Replica, tunnel.from_upstream),
        }
    }

    /// Both ways at once in one task, so neither direction waits on the other, until both
    /// sides have ended (each end passed on to the other) or nothing has moved for `idle`.
    /// Not at the first end, as pingora's own relay does: a client that half-closes right after
    /// its close frame would lose the replica's close frame and the events before it. The idle
    /// deadline is checked only when its timer fires: no timer is set per read.
    async fn relay(&mut self, idle: Duration) -> Result<End, Broken> {
        let mut last_moved = Instant::now();
        let timer = tokio::time::sleep(idle);
        tokio::pin!(timer);
        poll_fn(|cx| {
            // Not zeroed: a plain socket's read fills it without looking.
            let mut scratch = [const { MaybeUninit::<u8>::uninit() }; SCRATCH];
            let mut moved = false;
            let Tunnel {
                client,
                replica,
                to_replica,
                to_client,
            } = self;
            let up = to_replica.poll_pump(cx, client, replica, &mut scratch, &mut moved)?;
            let down = to_client.poll_pump(cx, replica, client, &mut scratch, &mut moved)?;
            if up.is_ready() && down.is_ready() {
                return Poll::Ready(Ok(End::Closed));
            }
            if moved {
                last_moved = Instant::now();
            }
            while timer.as_mut().poll(cx).is_ready() {
                let deadline = last_moved + idle;
                if deadline <= Instant::now() {
                    return Poll::Ready(Ok(End::Idle));
                }
                timer.as_mut().reset(deadline);
            }
            Poll::Pending
        })
        .await
    }

    /// Passes on what the replica had sent, then the close frame, then ends the client's side.
    async fn going_away(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.to_client.poll_drain(cx, &mut self.client)).await?;
        self.client.write_all(&GOING_AWAY).await?;
        self.client.flush().await?;
        self.client.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A connected pair of loopback sockets: the gateway's end as pingora's stream, and the
    /// far end (the client or the replica).
    async fn pair() -> (Stream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let far = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (near, _) = listener.accept().await.unwrap();
        (
            Box::new(pingora::protocols::l4::stream::Stream::from(near)),
            far,
        )
    }

    /// A tunnel whose sessions had already read `from_client` and `from_replica`; returns it
    /// with the client's and the replica's ends.
    async fn open_tunnel(
        from_client: &'static [u8],
        from_replica: &'static [u8],
    ) -> (UpgradedTunnel, TcpStream, TcpStream) {
        let (downstream, client) = pair().await;
        let (upstream, replica) = pair().await;
        let tunnel = UpgradedTunnel {
            downstream,
            from_downstream: bytes::Bytes::from_static(from_client),
            upstream,
            from_upstream: bytes::Bytes::from_static(from_replica),
        };
        (tunnel, client, replica)
    }

    fn relay(
        open: &Arc<OpenWebSockets>,
        tunnel: UpgradedTunnel,
        idle: Duration,
    ) -> tokio::task::JoinHandle<Result<End, Broken>> {
        let open = open.clone();
        tokio::spawn(async move { open.relay(tunnel, idle).await })
    }

    /// Writes `bytes`, then reads everything until the other end closes (and half-closes only
    /// then, when the writing half drops).
    async fn send_and_read_all(socket: TcpStream, bytes: Vec<u8>) -> Vec<u8> {
        let (mut read, mut write) = socket.into_split();
        let writer = tokio::spawn(async move {
            write.write_all(&bytes).await.unwrap();
            write
        });
        let mut received = Vec::new();
        read.read_to_end(&mut received).await.unwrap();
        drop(writer.await.unwrap());
        received
    }

    fn large(seed: u32) -> Vec<u8> {
        (0..4 * 1024 * 1024u32)
            .map(|i| (i.wrapping_mul(seed) % 251) as u8)
            .collect()
    }

    #[test]
    fn a_client_address_gets_up_to_its_limit_and_its_slots_back_as_they_drop() {
        let open = Arc::new(OpenWebSockets::default());
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let first = open.take(a, 2).expect("first");
        let second = open.take(a, 2).expect("second");
        assert!(open.take(a, 2).is_none(), "a third is refused");
        let other = open.take(b, 2).expect("another address is not");
        drop(first);
        assert_eq!(open.held_by(a), 1);
        let third = open.take(a, 2).expect("a slot given back");
        drop((second, third, other));
        assert_eq!((open.held_by(a), open.held_by(b)), (0, 0));
        assert!(open.clients().is_empty(), "no entry left behind");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bytes_cross_intact_both_ways_with_what_was_read_ahead_first() {
        let open = Arc::new(OpenWebSockets::default());
        let (tunnel, client, mut replica) = open_tunnel(b"client-early:", b"replica-early:").await;
        let relay = relay(&open, tunnel, Duration::from_secs(60));
        let (to_replica, to_client) = (large(7), large(13));
        let client_side = tokio::spawn(send_and_read_all(client, to_replica.clone()));
        // The replica reads the client's bytes (4 MiB, far more than any buffer on the way)
        // while sending its own, then closes.
        let mut expected = b"client-early:".to_vec();
        expected.extend_from_slice(&to_replica);
        let (mut replica_read, mut replica_write) = replica.split();
        let mut got = vec![0u8; expected.len()];
        let (read, written) = tokio::join!(replica_read.read_exact(&mut got), async {
            replica_write.write_all(&to_client).await?;
            replica_write.shutdown().await
        });
        read.unwrap();
        written.unwrap();
        assert!(got == expected, "the replica got the client's bytes intact");
        drop(replica);
        let mut expected = b"replica-early:".to_vec();
        expected.extend_from_slice(&to_client);
        let received = client_side.await.unwrap();
        assert_eq!(received.len(), expected.len());
        assert!(
            received == expected,
            "the client got the replica's bytes intact"
        );
        assert_eq!(relay.await.unwrap().unwrap(), End::Closed);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_half_closes_still_gets_what_the_replica_sends_after() {
        let open = Arc::new(OpenWebSockets::default());
        let (tunnel, client, mut replica) = open_tunnel(b"", b"").await;
        let relay = relay(&open, tunnel, Duration::from_secs(60));
        // The client sends its close frame and half-closes at once, as some clients do.
        let client_side = tokio::spawn(async move {
            let mut client = client;
            client.write_all(b"\x88\x02\x03\xe8").await.unwrap();
            client.shutdown().await.unwrap();
            let mut received = Vec::new();
            client.read_to_end(&mut received).await.unwrap();
            received
        });
        let mut got = Vec::new();
        replica.read_to_end(&mut got).await.unwrap();
        assert_eq!(
            got, b"\x88\x02\x03\xe8",
            "the replica got the close and the end"
        );
        // Only then does the replica answer: a last event and its own close frame.
        replica
            .write_all(b"\x81\x04last\x88\x02\x03\xe8")
            .await
            .unwrap();
        replica.shutdown().await.unwrap();
        assert_eq!(
            client_side.await.unwrap(),
            b"\x81\x04last\x88\x02\x03\xe8",
            "the client got the replica's answer after its own end"
        );
        assert_eq!(relay.await.unwrap().unwrap(), End::Closed);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tunnel_silent_both_ways_ends_at_the_idle_timeout_and_a_busy_one_does_not() {
        let idle = Duration::from_millis(400);
        let open = Arc::new(OpenWebSockets::default());
        let (tunnel, mut client, mut replica) = open_tunnel(b"", b"").await;
        let started = Instant::now();
        let relay = relay(&open, tunnel, idle);
        // Busy for three idle timeouts: a byte each way every half timeout.
        let mut byte = [0u8; 1];
        let mut quiet_since = Instant::now();
        while started.elapsed() < idle * 3 {
            client.write_all(b"c").await.unwrap();
            replica.read_exact(&mut byte).await.unwrap();
            replica.write_all(b"r").await.unwrap();
            client.read_exact(&mut byte).await.unwrap();
            quiet_since = Instant::now();
            assert!(!relay.is_finished(), "cut while busy");
            tokio::time::sleep(idle / 2).await;
        }
        assert_eq!(relay.await.unwrap().unwrap(), End::Idle);
        let quiet = quiet_since.elapsed();
        assert!(
            quiet >= idle && quiet < idle * 3,
            "cut {quiet:?} after the last byte, idle timeout {idle:?}"
        );
        // Both far ends see their connection end.
        assert_eq!(client.read(&mut byte).await.unwrap(), 0);
        assert_eq!(replica.read(&mut byte).await.unwrap(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_drain_closes_the_client_with_1001_after_what_the_replica_sent() {
        let open = Arc::new(OpenWebSockets::default());
        let gauge = prometheus::IntGauge::new("g", "g").unwrap();
        let registered = open.register(gauge.clone());
        let (tunnel, mut client, mut replica) = open_tunnel(b"", b"").await;
        let relay = relay(&open, tunnel, Duration::from_secs(60));
        replica.write_all(b"\x81\x05event").await.unwrap();
        let mut event = [0u8; 7];
        client.read_exact(&mut event).await.unwrap();
        assert_eq!(&event, b"\x81\x05event");
        assert!(!open.closing());
        assert_eq!(open.close_all(), 1);
        assert!(open.closing());
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, GOING_AWAY, "the close frame, then the end");
        assert_eq!(relay.await.unwrap().unwrap(), End::Drained);
        assert_eq!((open.count(), gauge.get()), (1, 1));
        drop(registered);
        assert_eq!((open.count(), gauge.get()), (0, 0));
        // A tunnel that starts after the signal closes at once.
        let (tunnel, mut client, _replica) = open_tunnel(b"", b"").await;
        assert_eq!(
            open.relay(tunnel, Duration::from_secs(60)).await.unwrap(),
            End::Drained
        );
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, GOING_AWAY);
    }
}
