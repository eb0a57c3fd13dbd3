//! A stand-in engine replica whose answers the test holds: `GET /hold` waits until the test
//! releases it, so a request is provably in flight at the gateway for as long as the test
//! wants, with no timing involved. `GET /readyz` always answers 200 (the gateway's health
//! check) and every other path answers at once with the address the replica listens on, so a
//! test can tell which replica served a request. Binds any loopback address (127.0.0.2 as well
//! as 127.0.0.1), so two replicas can share a port under different addresses.

use axum::routing::get;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone)]
pub struct HeldUpstream {
    pub addr: SocketAddr,
    holding: Arc<AtomicUsize>,
    released: watch::Sender<bool>,
}

impl HeldUpstream {
    /// Listens on `addr` (port 0 for any free one).
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let (released, _) = watch::channel(false);
        let upstream = Self {
            addr: listener.local_addr()?,
            holding: Arc::default(),
            released,
        };
        let hold = {
            let upstream = upstream.clone();
            move || {
                let upstream = upstream.clone();
                async move {
                    upstream.holding.fetch_add(1, Ordering::SeqCst);
                    let mut released = upstream.released.subscribe();
                    let _ = released.wait_for(|released| *released).await;
                    upstream.holding.fetch_sub(1, Ordering::SeqCst);
                    axum::Json(json!({"held": true}))
                }
            }
        };
        let me = upstream.addr.to_string();
        let app = axum::Router::new()
            .route(
                "/readyz",
                get(|| async { axum::Json(json!({"status": "ready"})) }),
            )
            .route("/hold", get(hold))
            .fallback(move || {
                let me = me.clone();
                async move { axum::Json(json!({"upstream": me})) }
            });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(upstream)
    }

    /// Requests to `/hold` waiting for [`release`](Self::release) right now.
    pub fn holding(&self) -> usize {
        self.holding.load(Ordering::SeqCst)
    }

    /// Lets every held request (and every later one) answer.
    pub fn release(&self) {
        self.released.send_replace(true);
    }
}
