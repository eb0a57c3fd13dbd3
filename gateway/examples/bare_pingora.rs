//! The smallest TLS reverse proxy pingora makes: one fixed upstream, no gateway features. The
//! gateway benchmark runs it beside nginx, HAProxy and the gateway, so the table shows what
//! pingora itself costs and what the gateway's features add on top.
//!
//! `cargo run --release -p aragora-gateway --example bare_pingora -- LISTEN UPSTREAM CERT KEY THREADS`

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
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
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream, cert, key, threads] = args.as_slice() else {
        eprintln!("usage: bare_pingora LISTEN UPSTREAM CERT KEY THREADS");
        std::process::exit(2);
    };
    let conf = ServerConf {
        threads: threads.parse().expect("THREADS is a number"),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let mut proxy = http_proxy_service(
        &server.configuration,
        Bare {
            upstream: upstream.parse().expect("UPSTREAM is host:port"),
        },
    );
    let mut tls = TlsSettings::intermediate(cert, key).expect("certificate and key load");
    tls.enable_h2();
    proxy.add_tls_with_settings(listen, None, tls);
    server.add_service(proxy);
    server.run_forever();
}
