//! The listening sockets, bound here before pingora runs and handed to it through its fd table:
//! one socket per listener, except HTTPS, which gets one socket per proxy runtime on the same
//! address (`SO_REUSEPORT`), so that the kernel spreads new connections over the runtimes.
//!
//! Why bind here at all: a port of 0 becomes a real port the caller can report (pingora 0.9.1
//! does not say what it bound), and a taken port is a typed error before anything runs. Why one
//! socket per runtime: pingora shares one fd between services that listen on the same address
//! string, so their accept loops would race on one queue, and whichever runtime wins more
//! races takes more of the load. Each runtime's socket is put in the fd table under its own key
//! ([`fd_key`]); pingora looks a listener's address string up there and binds only when it is
//! absent, so a key that is not an address is never parsed, only logged ("Shutting down ...").

use async_trait::async_trait;
use pingora::server::ListenFds;
use pingora::server::ShutdownWatch;
use pingora::services::Service as PingoraService;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::IntoRawFd;

/// Binds one listener. `what` and `setting` name it in the error ("HTTPS",
/// "ARAGORA_HTTPS_PORT / --https-port").
pub fn bind(
    addr: &str,
    what: &'static str,
    setting: &'static str,
) -> Result<(TcpListener, SocketAddr), aragora_config::BindError> {
    let bind_error = bind_error(addr, what, setting);
    let listener = TcpListener::bind(addr).map_err(&bind_error)?;
    // Pingora's tokio listener takes the socket as it is: it must not block.
    listener.set_nonblocking(true).map_err(&bind_error)?;
    let bound = listener.local_addr().map_err(&bind_error)?;
    Ok((listener, bound))
}

/// Binds `count` sockets to one address with `SO_REUSEPORT`, one per runtime; a port of 0 is
/// settled by the first bind and shared by the others.
///
/// The address is first bound once without `SO_REUSEPORT` and let go: a socket without the
/// option cannot join an existing reuse-port group, so a port that anything holds, another
/// gateway of this user included (which would otherwise silently share the traffic), is the
/// same "in use" error as with one socket. The window between letting go and binding again is
/// a few system calls; losing it is an error too, never a shared port.
///
/// `share` (`ARAGORA_GATEWAY_SHARE_HTTPS_PORT`) skips that probe: every socket joins the
/// reuse-port group of whatever gateway process of this user already listens there, and the
/// kernel spreads new connections over all of their sockets.
pub fn bind_per_runtime(
    addr: &str,
    count: usize,
    share: bool,
    what: &'static str,
    setting: &'static str,
) -> Result<(Vec<TcpListener>, SocketAddr), aragora_config::BindError> {
    let bind_error = bind_error(addr, what, setting);
    if share {
        let wanted: SocketAddr = addr.parse().map_err(|_| {
            bind_error(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not an IP address and port",
            ))
        })?;
        let first = reuse_port_listener(wanted).map_err(&bind_error)?;
        let bound = first.local_addr().map_err(&bind_error)?;
        let mut sockets = vec![first];
        for _ in 1..count.max(1) {
            sockets.push(reuse_port_listener(bound).map_err(&bind_error)?);
        }
        return Ok((sockets, bound));
    }
    let (probe, bound) = bind(addr, what, setting)?;
    if count <= 1 {
        return Ok((vec![probe], bound));
    }
    drop(probe);
    let sockets = (0..count)
        .map(|_| reuse_port_listener(bound).map_err(&bind_error))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((sockets, bound))
}

/// How a failed bind of `addr` is reported.
fn bind_error<'a>(
    addr: &'a str,
    what: &'static str,
    setting: &'static str,
) -> impl Fn(std::io::Error) -> aragora_config::BindError + 'a {
    move |source| aragora_config::BindError {
        addr: addr.to_string(),
        what,
        setting,
        source,
    }
}

fn reuse_port_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // What std's `TcpListener::bind` sets, so a restart does not wait out TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SockAddr::from(addr))?;
    // Pingora listens again with its own backlog (65535).
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The fd-table key of runtime `index`'s socket for `addr`: the address itself for the first
/// (as with one runtime), `addr#index` for the others.
pub fn fd_key(addr: &str, index: usize) -> String {
    if index == 0 {
        addr.to_string()
    } else {
        format!("{addr}#{index}")
    }
}

/// A pingora service whose listening sockets were bound before pingora ran: they are put in
/// the fd table, under the keys the service listens on, just before it builds its listeners.
pub struct PreBound<S> {
    pub service: S,
    pub sockets: Vec<(String, TcpListener)>,
}

#[async_trait]
impl<S: PingoraService> PingoraService for PreBound<S> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        if let Some(fds) = &fds {
            let mut table = fds.lock();
            for (addr, socket) in self.sockets.drain(..) {
                table.add(addr, socket.into_raw_fd());
            }
        }
        self.service
            .start_service(fds, shutdown, listeners_per_fd)
            .await
    }

    fn name(&self) -> &str {
        self.service.name()
    }

    fn threads(&self) -> Option<usize> {
        self.service.threads()
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.service.listen_addresses()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 64 connections to `bound`: each of `sockets` (non-blocking, one port) accepts some.
    /// Connections hash over the sockets by their 4-tuple: 64 of them all on one socket would
    /// happen once in 2^63 runs.
    fn every_socket_accepts(bound: std::net::SocketAddr, sockets: &[&std::net::TcpListener]) {
        let clients: Vec<_> = (0..64)
            .map(|_| std::net::TcpStream::connect(bound).unwrap())
            .collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut accepted = vec![0usize; sockets.len()];
        while accepted.iter().sum::<usize>() < clients.len() {
            assert!(
                std::time::Instant::now() < deadline,
                "accepted {accepted:?}"
            );
            for (index, socket) in sockets.iter().enumerate() {
                while socket.accept().is_ok() {
                    accepted[index] += 1;
                }
            }
            std::thread::yield_now();
        }
        assert!(accepted.iter().all(|&n| n > 0), "accepted {accepted:?}");
    }

    #[test]
    fn runtimes_get_distinct_sockets_on_one_port_and_the_kernel_spreads_connections() {
        let (sockets, bound) = bind_per_runtime("127.0.0.1:0", 2, false, "HTTPS", "test").unwrap();
        assert_eq!(sockets.len(), 2);
        assert_ne!(bound.port(), 0);
        for socket in &sockets {
            assert_eq!(socket.local_addr().unwrap(), bound);
        }
        every_socket_accepts(bound, &sockets.iter().collect::<Vec<_>>());
    }

    #[test]
    fn a_port_held_by_anyone_is_in_use_even_for_a_reuse_port_group() {
        let (group, bound) = bind_per_runtime("127.0.0.1:0", 2, false, "HTTPS", "test").unwrap();
        let err = bind_per_runtime(&bound.to_string(), 2, false, "HTTPS", "ARAGORA_HTTPS_PORT")
            .expect_err("a second gateway must not join the first one's port");
        assert_eq!(err.source.kind(), std::io::ErrorKind::AddrInUse);
        drop(group);
    }

    #[test]
    fn a_gateway_told_to_share_joins_another_ones_port_and_both_get_connections() {
        let (first, bound) = bind_per_runtime("127.0.0.1:0", 1, true, "HTTPS", "test").unwrap();
        let (second, again) =
            bind_per_runtime(&bound.to_string(), 1, true, "HTTPS", "test").unwrap();
        assert_eq!(again, bound);
        let sockets = [&first[0], &second[0]];
        every_socket_accepts(bound, &sockets);
        // A gateway not told to share still finds the port in use.
        let err =
            bind_per_runtime(&bound.to_string(), 1, false, "HTTPS", "test").expect_err("in use");
        assert_eq!(err.source.kind(), std::io::ErrorKind::AddrInUse);
    }
}
