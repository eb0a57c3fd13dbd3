//! The fault proxy: a TCP relay between two parts of the system (gateway and engine, engine and
//! PostgreSQL, gateway and Redis) that applies the link faults of
//! [`crate::link_faults`] while it runs.
//!
//! Each proxy keeps its faults in one list; a small supervisor folds the active ones into
//! [`Effects`] every [`TICK`] (so windows open and close on time) and publishes them on a watch
//! channel. Every connection's two pumps read the current effects per chunk and wake on a
//! change, so a fault added at run time reaches connections that are already open: a `reset`
//! cuts them at once, a `latency` delays their next chunk.

use crate::link_faults::{Effects, Flow, LinkFault, LinkFaultKind, LinkFaultSpec};
use aragora_telemetry::catalogue;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// How often fault windows are re-evaluated: the precision of `start_after_seconds` and friends.
const TICK: Duration = Duration::from_millis(50);

/// Time allowed to connect to the upstream before the client's connection is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const CHUNK_BYTES: usize = 16 * 1024;

/// One proxy to start: a name (for the API and metrics), where to listen, where to forward.
#[derive(Debug, Clone)]
pub struct ProxySpec {
    pub name: String,
    pub listen: SocketAddr,
    /// `host:port`, resolved at each connection (a DNS name may move).
    pub upstream: String,
}

impl ProxySpec {
    /// Reads `NAME=LISTEN=UPSTREAM`, as `aragora chaos proxy --proxy` takes it.
    pub fn parse(text: &str) -> Result<ProxySpec, String> {
        let parts: Vec<&str> = text.split('=').collect();
        let [name, listen, upstream] = parts[..] else {
            return Err(format!("{text:?}: write NAME=LISTEN=UPSTREAM, such as engine=127.0.0.1:18080=127.0.0.1:8080"));
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        {
            return Err(format!(
                "{text:?}: the name {name:?} must be letters, digits, - or _"
            ));
        }
        let listen = listen.parse().map_err(|_| {
            format!("{text:?}: {listen:?} is not an address to listen on, such as 127.0.0.1:18080")
        })?;
        if upstream
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            return Err(format!(
                "{text:?}: the upstream {upstream:?} must be host:port"
            ));
        }
        Ok(ProxySpec {
            name: name.into(),
            listen,
            upstream: upstream.into(),
        })
    }
}

/// What a proxy is doing, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyStatus {
    pub name: String,
    pub listen: SocketAddr,
    pub upstream: String,
    pub open_connections: u64,
    pub accepted_connections: u64,
    pub bytes_upstream: u64,
    pub bytes_downstream: u64,
    pub faults: Vec<LinkFaultView>,
}

/// A fault as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LinkFaultView {
    pub id: String,
    pub active: bool,
    pub age_seconds: f64,
    pub description: String,
    #[serde(flatten)]
    pub spec: LinkFaultSpec,
}

impl LinkFaultView {
    fn of(fault: &LinkFault, now: Instant) -> LinkFaultView {
        LinkFaultView {
            id: fault.id.clone(),
            active: fault.active_at(now),
            age_seconds: now.saturating_duration_since(fault.added).as_secs_f64(),
            description: fault.spec.describe(),
            spec: fault.spec.clone(),
        }
    }
}

/// Prometheus handles of one proxy, resolved once.
struct ProxyMetrics {
    connections: prometheus::IntGauge,
    bytes: [prometheus::IntCounter; 2],
    faults_active: prometheus::IntGaugeVec,
}

impl ProxyMetrics {
    fn new(registry: &prometheus::Registry, name: &str) -> ProxyMetrics {
        let connections = catalogue::CHAOS_PROXY_CONNECTIONS
            .gauge_vec(registry)
            .with_label_values(&[name]);
        let bytes = catalogue::CHAOS_PROXY_BYTES_TOTAL.counter(registry);
        ProxyMetrics {
            connections,
            bytes: [Flow::Upstream, Flow::Downstream]
                .map(|flow| bytes.with_label_values(&[name, flow.as_str()])),
            faults_active: catalogue::CHAOS_PROXY_FAULTS_ACTIVE.gauge_vec(registry),
        }
    }
}

struct Shared {
    spec: ProxySpec,
    bound: SocketAddr,
    faults: Mutex<Vec<LinkFault>>,
    changed: Notify,
    next_id: AtomicU64,
    open: AtomicU64,
    accepted: AtomicU64,
    bytes: [AtomicU64; 2],
    metrics: Option<ProxyMetrics>,
}

impl Shared {
    fn count_bytes(&self, flow: Flow, bytes: usize) {
        let index = flow as usize;
        self.bytes[index].fetch_add(bytes as u64, Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            metrics.bytes[index].inc_by(bytes as u64);
        }
    }

    fn connection_opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.accepted.fetch_add(1, Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            metrics.connections.inc();
        }
    }

    fn connection_closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            metrics.connections.dec();
        }
    }
}

/// A running fault proxy. Dropping it stops the listener and cuts its connections.
pub struct FaultProxy {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl FaultProxy {
    /// Binds the listener (port 0 picks one; see [`FaultProxy::address`]) and starts relaying.
    pub async fn start(
        spec: ProxySpec,
        registry: Option<&prometheus::Registry>,
    ) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(spec.listen).await.map_err(|err| {
            std::io::Error::new(
                err.kind(),
                format!(
                    "proxy {}: cannot listen on {}: {err}",
                    spec.name, spec.listen
                ),
            )
        })?;
        let bound = listener.local_addr()?;
        let metrics = registry.map(|registry| ProxyMetrics::new(registry, &spec.name));
        let shared = Arc::new(Shared {
            spec,
            bound,
            faults: Mutex::new(Vec::new()),
            changed: Notify::new(),
            next_id: AtomicU64::new(1),
            open: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            bytes: [AtomicU64::new(0), AtomicU64::new(0)],
            metrics,
        });
        let (effects_tx, effects_rx) = watch::channel(Arc::new(Effects::default()));
        let tasks = vec![
            tokio::spawn(supervise(shared.clone(), effects_tx)),
            tokio::spawn(accept(shared.clone(), listener, effects_rx)),
        ];
        tracing::info!(proxy = %shared.spec.name, listen = %bound, upstream = %shared.spec.upstream, "fault proxy listening");
        Ok(FaultProxy { shared, tasks })
    }

    pub fn name(&self) -> &str {
        &self.shared.spec.name
    }

    /// The address it listens on (the real port when it was started on port 0).
    pub fn address(&self) -> SocketAddr {
        self.shared.bound
    }

    /// Adds a fault; returns it, or every problem of the spec.
    pub fn add(&self, spec: LinkFaultSpec) -> Result<LinkFaultView, Vec<String>> {
        let problems = spec.problems();
        if !problems.is_empty() {
            return Err(problems);
        }
        let id = format!(
            "{}-{}",
            spec.kind.as_str(),
            self.shared.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let now = Instant::now();
        let fault = LinkFault::new(id, spec, now);
        let view = LinkFaultView::of(&fault, now);
        tracing::warn!(proxy = %self.shared.spec.name, fault = %view.id, what = %view.description, "fault injected");
        self.shared.faults.lock().unwrap().push(fault);
        self.shared.changed.notify_one();
        Ok(view)
    }

    /// Removes one fault; false when there is none with that id.
    pub fn remove(&self, id: &str) -> bool {
        let mut faults = self.shared.faults.lock().unwrap();
        let before = faults.len();
        faults.retain(|fault| fault.id != id);
        let removed = faults.len() < before;
        drop(faults);
        if removed {
            tracing::info!(proxy = %self.shared.spec.name, fault = %id, "fault removed");
            self.shared.changed.notify_one();
        }
        removed
    }

    /// Removes every fault; returns how many there were.
    pub fn clear(&self) -> usize {
        let removed = std::mem::take(&mut *self.shared.faults.lock().unwrap()).len();
        if removed > 0 {
            tracing::info!(proxy = %self.shared.spec.name, removed, "faults cleared");
            self.shared.changed.notify_one();
        }
        removed
    }

    pub fn status(&self) -> ProxyStatus {
        let now = Instant::now();
        let shared = &self.shared;
        ProxyStatus {
            name: shared.spec.name.clone(),
            listen: shared.bound,
            upstream: shared.spec.upstream.clone(),
            open_connections: shared.open.load(Ordering::Relaxed),
            accepted_connections: shared.accepted.load(Ordering::Relaxed),
            bytes_upstream: shared.bytes[Flow::Upstream as usize].load(Ordering::Relaxed),
            bytes_downstream: shared.bytes[Flow::Downstream as usize].load(Ordering::Relaxed),
            faults: shared
                .faults
                .lock()
                .unwrap()
                .iter()
                .map(|fault| LinkFaultView::of(fault, now))
                .collect(),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The supervisor owns the effects sender: aborting it closes the channel, which every
        // pump treats as "stop".
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Drops expired faults and publishes the effects of the active ones when they change.
async fn supervise(shared: Arc<Shared>, effects: watch::Sender<Arc<Effects>>) {
    loop {
        let now = Instant::now();
        let current = {
            let mut faults = shared.faults.lock().unwrap();
            faults.retain(|fault| {
                let expired = fault.expired_at(now);
                if expired {
                    tracing::info!(proxy = %shared.spec.name, fault = %fault.id, "fault expired");
                }
                !expired
            });
            if let Some(metrics) = &shared.metrics {
                for kind in LinkFaultKind::ALL {
                    let active = faults
                        .iter()
                        .filter(|f| f.spec.kind == kind && f.active_at(now))
                        .count();
                    metrics
                        .faults_active
                        .with_label_values(&[shared.spec.name.as_str(), kind.as_str()])
                        .set(active as i64);
                }
            }
            Effects::of(faults.iter(), now)
        };
        effects.send_if_modified(|published| {
            let changed = **published != current;
            if changed {
                *published = Arc::new(current);
            }
            changed
        });
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shared.changed.notified() => {}
        }
    }
}

/// Accepts connections, closing the listener while a `refuse` or `down` fault is active so
/// that clients see a real ECONNREFUSED, and reopening it on the same address after.
async fn accept(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut effects: watch::Receiver<Arc<Effects>>,
) {
    let mut listener = Some(listener);
    // Said once per failure streak, not every tick while the address stays taken.
    let mut rebind_failing = false;
    loop {
        let refuse = effects.borrow_and_update().refuse;
        if refuse {
            if listener.take().is_some() {
                tracing::warn!(proxy = %shared.spec.name, "refusing connections");
            }
            if effects.changed().await.is_err() {
                return;
            }
            continue;
        }
        let open = match listener.take() {
            Some(open) => open,
            None => match TcpListener::bind(shared.bound).await {
                Ok(open) => {
                    tracing::info!(proxy = %shared.spec.name, "accepting connections again");
                    rebind_failing = false;
                    open
                }
                Err(err) => {
                    if !rebind_failing {
                        tracing::error!(proxy = %shared.spec.name, address = %shared.bound, error = %err, "cannot listen again (another process took the port?); retrying every 50 ms");
                        rebind_failing = true;
                    }
                    tokio::time::sleep(TICK).await;
                    continue;
                }
            },
        };
        tokio::select! {
            accepted = open.accept() => {
                if let Ok((client, _)) = accepted {
                    tokio::spawn(relay(shared.clone(), client, effects.clone()));
                }
            }
            changed = effects.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        listener = Some(open);
    }
}

/// How one direction of a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The sender closed its side; the other direction may go on.
    Eof,
    /// Cut by a `reset` fault: both sides get a RST.
    Reset,
    /// A black hole's timeout, an I/O error, or the proxy stopping: both sides are closed.
    Closed,
}

async fn relay(shared: Arc<Shared>, client: TcpStream, effects: watch::Receiver<Arc<Effects>>) {
    if effects.borrow().reset {
        let _ = client.set_zero_linger();
        return;
    }
    let upstream = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect(shared.spec.upstream.as_str()),
    )
    .await
    {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(err)) => {
            tracing::warn!(proxy = %shared.spec.name, upstream = %shared.spec.upstream, error = %err, "cannot reach the upstream");
            let _ = client.set_zero_linger();
            return;
        }
        Err(_) => {
            tracing::warn!(proxy = %shared.spec.name, upstream = %shared.spec.upstream, "the upstream did not accept within 5 s");
            let _ = client.set_zero_linger();
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    shared.connection_opened();
    let (mut client, mut upstream) = (client, upstream);
    let ending = {
        let (mut client_read, mut client_write) = client.split();
        let (mut upstream_read, mut upstream_write) = upstream.split();
        let to_upstream = pump(
            &shared,
            &mut client_read,
            &mut upstream_write,
            Flow::Upstream,
            effects.clone(),
        );
        let to_client = pump(
            &shared,
            &mut upstream_read,
            &mut client_write,
            Flow::Downstream,
            effects,
        );
        tokio::pin!(to_upstream, to_client);
        tokio::select! {
            ending = &mut to_upstream => match ending {
                Ending::Eof => to_client.await,
                other => other,
            },
            ending = &mut to_client => match ending {
                Ending::Eof => to_upstream.await,
                other => other,
            },
        }
    };
    if ending == Ending::Reset {
        let _ = client.set_zero_linger();
        let _ = upstream.set_zero_linger();
    }
    shared.connection_closed();
}

/// Moves bytes one way, applying the faults of that direction to every chunk.
async fn pump<R, W>(
    shared: &Shared,
    reader: &mut R,
    writer: &mut W,
    flow: Flow,
    mut effects: watch::Receiver<Arc<Effects>>,
) -> Ending
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut blackholed_since: Option<Instant> = None;
    loop {
        let current = effects.borrow_and_update().clone();
        if current.reset {
            return Ending::Reset;
        }
        let faults = current.flow(flow);
        let blackhole_deadline = match faults.blackhole {
            None => {
                blackholed_since = None;
                None
            }
            Some(timeout) => {
                let since = *blackholed_since.get_or_insert_with(Instant::now);
                (!timeout.is_zero()).then(|| since + timeout)
            }
        };
        tokio::select! {
            changed = effects.changed() => {
                if changed.is_err() {
                    return Ending::Closed;
                }
            }
            _ = sleep_until(blackhole_deadline), if blackhole_deadline.is_some() => {
                return Ending::Closed;
            }
            read = reader.read(&mut buffer) => {
                let bytes = match read {
                    Ok(0) => {
                        let _ = writer.shutdown().await;
                        return Ending::Eof;
                    }
                    Ok(bytes) => bytes,
                    Err(_) => return Ending::Closed,
                };
                if faults.blackhole.is_some() {
                    continue;
                }
                let delay = faults.delay_for(bytes);
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                    if effects.borrow().reset {
                        return Ending::Reset;
                    }
                }
                if writer.write_all(&buffer[..bytes]).await.is_err() {
                    return Ending::Closed;
                }
                shared.count_bytes(flow, bytes);
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_specs_are_name_listen_upstream() {
        let spec = ProxySpec::parse("engine=127.0.0.1:18080=localhost:8080").unwrap();
        assert_eq!(spec.name, "engine");
        assert_eq!(spec.listen.port(), 18080);
        assert_eq!(spec.upstream, "localhost:8080");
        for bad in [
            "engine=127.0.0.1:18080",
            "en gine=127.0.0.1:1=a:1",
            "e=nowhere=a:1",
            "e=127.0.0.1:1=a",
        ] {
            assert!(ProxySpec::parse(bad).is_err(), "{bad}");
        }
    }
}
