//! The smallest TLS reverse proxy pingora makes: one fixed upstream, no gateway features. The
//! gateway benchmark runs it beside nginx, HAProxy and the gateway, so the table shows what
//! pingora itself costs and what the gateway's features add on top.
//!
//! `cargo run --release -p aragora-gateway --example bare_pingora -- LISTEN UPSTREAM CERT KEY THREADS [MODE]`
//!
//! MODE (or `BARE_PINGORA_MODE`) is `stealing` (the default: pingora's defaults, one service of
//! THREADS work-stealing threads sharing one upstream pool) or `percore`, the gateway's model:
//! THREADS services of one thread each, no work stealing, each with its own upstream pool and
//! its own `SO_REUSEPORT` socket of LISTEN (through the gateway's own `listeners`), and without
//! pingora's default downstream modules (a disabled compression module), as the gateway does.
//! (The bare prototype of lever 6's lean HTTP/1.1 path that was a third mode here is now the
//! gateway's own engine, `ARAGORA_GATEWAY_H1_ENGINE=lean`, measured with the gateway's features
//! by `scripts/bench-lean-h1.sh` through `examples/gateway_env.rs`.)

use aragora_gateway::listeners::{bind_per_runtime, fd_key, PreBound};
use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::modules::http::compression::ResponseCompressionBuilder;
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::proxy::{http_proxy_service, ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;

// The same allocator as the `aragora` binary, so the comparison is of the proxies, not of
// glibc's malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare {
    upstream: SocketAddr,
    /// Without pingora's default downstream modules (the gateway's choice).
    lean: bool,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    fn init_downstream_modules(&self, modules: &mut HttpModules) {
        if !self.lean {
            // pingora's default
            modules.add_module(ResponseCompressionBuilder::enable(0));
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: bare_pingora LISTEN UPSTREAM CERT KEY THREADS [stealing|percore]";
    let (listen, upstream, cert, key, threads, mode) = match args.as_slice() {
        [listen, upstream, cert, key, threads] => (
            listen,
            upstream,
            cert,
            key,
            threads,
            std::env::var("BARE_PINGORA_MODE").unwrap_or_else(|_| "stealing".into()),
        ),
        [listen, upstream, cert, key, threads, mode] => {
            (listen, upstream, cert, key, threads, mode.clone())
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let threads: usize = threads.parse().expect("THREADS is a number");
    let upstream: SocketAddr = upstream.parse().expect("UPSTREAM is host:port");
    let per_core = match mode.as_str() {
        "stealing" => false,
        "percore" => true,
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let tls = || {
        let mut tls = TlsSettings::intermediate(cert, key).expect("certificate and key load");
        tls.enable_h2();
        tls
    };
    let conf = ServerConf {
        threads: if per_core { 1 } else { threads },
        work_stealing: !per_core,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    if per_core {
        let (sockets, _) =
            bind_per_runtime(listen, threads, false, "LISTEN", "LISTEN").expect("LISTEN binds");
        for (index, socket) in sockets.into_iter().enumerate() {
            let key = fd_key(listen, index);
            let bare = Bare {
                upstream,
                lean: true,
            };
            let mut proxy = http_proxy_service(&server.configuration, bare);
            proxy.add_tls_with_settings(&key, None, tls());
            server.add_service(PreBound {
                service: proxy,
                sockets: vec![(key, socket)],
            });
        }
    } else {
        let mut proxy = http_proxy_service(
            &server.configuration,
            Bare {
                upstream,
                lean: false,
            },
        );
        proxy.add_tls_with_settings(listen, None, tls());
        server.add_service(proxy);
    }
    server.run_forever();
}
