//! A certificate authority of the test's own (the `openssl` CLI) with an OCSP responder:
//! `openssl ocsp` answering from the CA's index on a port it chose (it announces it), and a
//! leaf for localhost whose Authority Information Access names that responder. Also what the
//! tests read back: `openssl s_client -status` through a gateway.

use super::process::Process;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The CA, its responder (while running) and one leaf it issued.
pub struct OcspPki {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    /// The leaf followed by the CA: what the gateway serves.
    pub chain: PathBuf,
    /// The leaf alone (a chain without its issuer).
    pub leaf: PathBuf,
    pub key: PathBuf,
    /// The leaf's serial number (hex).
    pub serial: String,
    /// The port the responder listens on (the leaf names it).
    pub port: u16,
    responder: Option<Process>,
}

/// Runs `openssl` with `args` in `dir`; panics with its stderr when it fails.
fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

impl OcspPki {
    /// A CA, its responder running, and a leaf naming it.
    pub fn start() -> Self {
        let mut pki = Self::without_responder();
        pki.run_responder(0);
        pki.issue_leaf(&format!("http://127.0.0.1:{}", pki.port));
        pki
    }

    /// A CA and a leaf naming the responder `url`, with no responder of ours running.
    pub fn naming(url: &str) -> Self {
        let pki = Self::without_responder();
        pki.issue_leaf(url);
        pki
    }

    fn without_responder() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        openssl(
            path,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "30",
                "-subj",
                "/CN=aragora test OCSP CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        // Known before the leaf exists: the responder's index names it.
        // Positive, its first byte 0x40 to 0x7f, so openssl writes it as these digits.
        let serial = format!(
            "{:016X}",
            (uuid::Uuid::new_v4().as_u64_pair().0 >> 2) | (1 << 62)
        );
        let pki = Self {
            ca: path.join("ca.pem"),
            chain: path.join("chain.pem"),
            leaf: path.join("leaf.pem"),
            key: path.join("leaf.key"),
            serial,
            port: 0,
            responder: None,
            dir,
        };
        pki.write_index(false);
        pki
    }

    fn issue_leaf(&self, url: &str) {
        let path = self.dir.path();
        std::fs::write(
            path.join("leaf.ext"),
            format!(
                "subjectAltName=DNS:localhost,IP:127.0.0.1\nauthorityInfoAccess=OCSP;URI:{url}\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .unwrap();
        openssl(
            path,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "leaf.key",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=localhost",
            ],
        );
        openssl(
            path,
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &format!("0x{}", self.serial),
                "-days",
                "10",
                "-out",
                "leaf.pem",
                "-extfile",
                "leaf.ext",
            ],
        );
        let mut chain = std::fs::read(&self.leaf).unwrap();
        chain.extend(std::fs::read(&self.ca).unwrap());
        std::fs::write(&self.chain, chain).unwrap();
    }

    /// Writes the CA's index: the leaf valid, or revoked.
    pub fn write_index(&self, revoked: bool) {
        let line = if revoked {
            format!(
                "R\t491231235959Z\t260101000000Z\t{}\tunknown\t/CN=localhost\n",
                self.serial
            )
        } else {
            format!(
                "V\t491231235959Z\t\t{}\tunknown\t/CN=localhost\n",
                self.serial
            )
        };
        std::fs::write(self.dir.path().join("index.txt"), line).unwrap();
    }

    /// (Re)starts the responder on `port` (0: one it chooses), its answers valid a minute.
    pub fn run_responder(&mut self, port: u16) {
        self.responder = None;
        let path = self.dir.path();
        let mut command = Command::new("openssl");
        command
            .args(["ocsp", "-index", "index.txt", "-port", &port.to_string()])
            .args([
                "-rsigner", "ca.pem", "-rkey", "ca.key", "-CA", "ca.pem", "-nmin", "1",
            ])
            .current_dir(path);
        let mut process =
            Process::spawn(&mut command, &path.join("ocsp.log"), &path.join("ocsp.out"));
        // "ACCEPT [::]:PORT PID=N" once it listens (what follows the prefix).
        let accept = process.announcement("ACCEPT");
        self.port = accept
            .split_whitespace()
            .next()
            .and_then(|addr| addr.rsplit(':').next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("openssl ocsp said {accept:?}"));
        self.responder = Some(process);
    }

    /// Revokes the leaf: the index says so and the responder is restarted on its port.
    pub fn revoke(&mut self) {
        self.write_index(true);
        let port = self.port;
        self.run_responder(port);
    }

    /// A DER response for the leaf signed by the CA, made offline, valid `minutes`.
    pub fn response_file(&self, name: &str, minutes: u32) -> PathBuf {
        let path = self.dir.path();
        openssl(
            path,
            &[
                "ocsp",
                "-issuer",
                "ca.pem",
                "-cert",
                "leaf.pem",
                "-no_nonce",
                "-reqout",
                "request.der",
            ],
        );
        openssl(
            path,
            &[
                "ocsp",
                "-index",
                "index.txt",
                "-rsigner",
                "ca.pem",
                "-rkey",
                "ca.key",
                "-CA",
                "ca.pem",
                "-reqin",
                "request.der",
                "-respout",
                name,
                "-nmin",
                &minutes.to_string(),
            ],
        );
        path.join(name)
    }
}

/// What `openssl s_client -status` printed of a handshake with 127.0.0.1:`port` (its stdout).
pub fn s_client_status(port: u16) -> String {
    let output = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "localhost", "-status"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The stapled response's certificate status (`good`, `revoked`), or `None` when the handshake
/// carried no staple ("no response sent"). Panics when the handshake did not happen.
pub fn stapled_status(port: u16) -> Option<String> {
    let said = s_client_status(port);
    assert!(
        said.contains("BEGIN CERTIFICATE") || said.contains("Server certificate"),
        "no handshake: {said}"
    );
    if said.contains("OCSP response: no response sent") {
        return None;
    }
    said.lines()
        .find_map(|line| line.trim().strip_prefix("Cert Status: "))
        .map(str::to_string)
        .or_else(|| panic!("a staple without a status: {said}"))
}

/// The "Produced At" of a stapled or stored response, as openssl shows it.
pub fn produced_at(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.trim().strip_prefix("Produced At: "))
        .map(str::to_string)
}

/// The text of a DER response file, as `openssl ocsp -respin -resp_text` shows it.
pub fn response_text(file: &Path) -> String {
    let output = Command::new("openssl")
        .arg("ocsp")
        .arg("-respin")
        .arg(file)
        .args(["-resp_text", "-noverify"])
        .output()
        .expect("openssl ocsp");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
