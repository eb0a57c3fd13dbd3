//! A gateway that resolves names through a hosts file of the test's own. The gateway resolves
//! upstream names with the system resolver (getaddrinfo, which reads /etc/hosts at every
//! lookup); editing the machine's /etc/hosts would race every test running in parallel, so the
//! gateway runs in a mount namespace of its own (`unshare --mount`, the tests run as root)
//! where the test's file is bind-mounted over /etc/hosts. Rewriting that file in place (same
//! inode) changes what the gateway's next lookup answers, and nothing else on the machine.

use super::GatewayProcess;
use std::path::PathBuf;
use std::process::Command;

/// The hosts file a [`start`]ed gateway sees as /etc/hosts.
pub struct HostsFile {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
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
        _dir: dir,
    };
    hosts_file.set(hosts);
    let mounted = hosts_file.path.clone();
    let gateway = GatewayProcess::launch(upstreams, env, None, move |binary| {
        // The same program, arguments and environment, run through unshare.
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
            .arg(&mounted)
            .arg(binary.get_program())
            .args(binary.get_args());
        for (key, value) in binary.get_envs() {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command
    })
    .await;
    let log = gateway.log_text();
    assert!(
        !log.contains("unshare:") && !log.contains("mount:"),
        "the gateway's own mount namespace could not be set up: {log}"
    );
    (gateway, hosts_file)
}
