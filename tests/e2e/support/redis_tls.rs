//! A real `redis-server` speaking only TLS on a free port, with a certificate for 127.0.0.1
//! generated for the test (it is its own CA: point `ARAGORA_REDIS_CA_FILE` at [`TlsRedis::ca`]).
//! Stopped when dropped; [`stop`](TlsRedis::stop) and [`restart`](TlsRedis::restart) take it
//! away and bring it back on the same port, for tests of what happens meanwhile.

use super::{eventually, free_port, tls_connector_trusting};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PATIENCE: Duration = Duration::from_secs(30);

pub struct TlsRedis {
    child: Option<Child>,
    pub port: u16,
    /// The server's certificate (self-signed, so also the CA that clients must trust).
    pub ca: PathBuf,
    key: PathBuf,
    dir: tempfile::TempDir,
}

impl TlsRedis {
    /// Starts the server and waits until it answers PING over TLS.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (ca, key) = aragora_gateway::tls::self_signed(&dir.path().join("tls")).unwrap();
        let mut redis = Self {
            child: None,
            port: free_port(),
            ca,
            key,
            dir,
        };
        redis.restart().await;
        redis
    }

    /// `rediss://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server (again) on its port and waits until it answers PING over TLS.
    pub async fn restart(&mut self) {
        self.stop();
        let log = std::fs::File::create(self.dir.path().join("redis.log")).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &self.port.to_string()])
            .arg("--tls-cert-file")
            .arg(&self.ca)
            .arg("--tls-key-file")
            .arg(&self.key)
            .arg("--tls-ca-cert-file")
            .arg(&self.ca)
            .args(["--tls-auth-clients", "no", "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("redis-server: {err} (apt-get install redis-server; scripts/setup.sh does)")
            });
        self.child = Some(child);
        let connector = tls_connector_trusting(&std::fs::read(&self.ca).unwrap());
        let port = self.port;
        eventually("redis-server to answer PING over TLS", PATIENCE, || {
            let connector = connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()?;
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").ok()?;
                let mut tls = connector.connect(name, tcp).await.ok()?;
                tls.write_all(b"PING\r\n").await.ok()?;
                let mut reply = [0u8; 7];
                tls.read_exact(&mut reply).await.ok()?;
                (&reply == b"+PONG\r\n").then_some(())
            }
        })
        .await;
    }

    /// Kills the server (SIGKILL, as a lost node) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
