//! A gateway that resolves names through a hosts file of the test's own. The gateway resolves
//! upstream names with the system resolver (getaddrinfo, which reads /etc/hosts at every
//! lookup); editing the machine's /etc/hosts would race every test running in parallel, so the
//! gateway runs in a mount namespace of its own (`unshare --mount`, the tests run as root)
//! where the test's file is bind-mounted over /etc/hosts. Rewriting that file in place (same
//! inode) changes what the gateway's next lookup answers, and nothing else on the machine.

use super::{aragora_command, eventually, free_port, GatewayProcess, BINARY};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// The hosts file a [`start`]ed gateway sees as /etc/hosts.
pub struct HostsFile {
    pub path: PathBuf,
}

impl HostsFile {
    /// Replaces the file's content in place (the bind mount follows the inode, not the name).
    pub fn set(&self, lines: &str) {
        std::fs::write(&self.path, lines).expect("rewrite the test's hosts file");
    }
}

/// Starts `aragora gateway` in front of `upstreams` (names allowed) in its own mount namespace,
/// with the same test settings as [`GatewayProcess::start`], and the hosts file it resolves
/// through, initially holding `hosts`.
pub async fn start(
    upstreams: &[String],
    hosts: &str,
    env: &[(&str, String)],
) -> (GatewayProcess, HostsFile) {
    let dir = tempfile::tempdir().unwrap();
    let hosts_file = HostsFile {
        path: dir.path().join("hosts"),
    };
    hosts_file.set(hosts);
    let (cert, key) = aragora_gateway::tls::self_signed(&dir.path().join("tls")).unwrap();
    let (http_port, https_port, admin_port) = (free_port(), free_port(), free_port());
    let log = dir.path().join("gateway.log");
    // The binary's environment and arguments as the support gives them, run through unshare.
    let template = aragora_command();
    let mut command = std::process::Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
        .arg(&hosts_file.path)
        .arg(BINARY)
        .arg("gateway")
        .args(["--http-port", &http_port.to_string()])
        .args(["--https-port", &https_port.to_string()])
        .args(["--admin-port", &admin_port.to_string()])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env("ARAGORA_GATEWAY_HOST", "127.0.0.1")
        .env("ARAGORA_HEALTH_INTERVAL_MS", "200")
        .env("ARAGORA_SLOW_START_SECS", "0")
        .env("ARAGORA_GATEWAY_DRAIN_DELAY", "0")
        .env("ARAGORA_RATE_LIMIT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (key, value) in template.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    for upstream in upstreams {
        command.args(["--upstream", upstream]);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command
        .spawn()
        .expect("unshare (util-linux) runs the gateway");
    let gateway = GatewayProcess {
        child,
        http_port,
        https_port,
        admin_port,
        log,
        cert_pem: std::fs::read(&cert).unwrap(),
        dir,
        admin: reqwest::Client::new(),
    };
    let url = gateway.admin_url("/healthz");
    eventually(
        "the namespaced gateway's admin listener",
        Duration::from_secs(30),
        || async {
            let log = std::fs::read_to_string(&gateway.log).unwrap_or_default();
            assert!(
                !log.contains("unshare:") && !log.contains("mount:"),
                "the gateway's own mount namespace could not be set up: {log}"
            );
            gateway.admin.get(&url).send().await.ok().map(|_| ())
        },
    )
    .await;
    (gateway, hosts_file)
}
