//! OCSP stapling at the edge, against a real responder (`openssl ocsp` over a CA of the test's
//! own) and read back with `openssl s_client -status`: a good answer stapled, a revocation
//! ending the staple at the next refresh, a responder that never answers blocking neither the
//! start nor a handshake, a response file stapled as is and re-read on SIGHUP, a chain without
//! its issuer served unstapled under `auto`, and bad settings refused at start by name.

use super::*;
use crate::support::ocsp::{produced_at, response_text, s_client_status, stapled_status, OcspPki};

/// A gateway serving `pki`'s leaf (with its CA after it) in front of one ready echo replica,
/// trusting the CA; `env` on top.
pub(super) async fn gateway_for(
    pki: &OcspPki,
    env: &[(&str, String)],
) -> (EchoUpstream, GatewayProcess) {
    gateway_serving(pki, &pki.chain, env).await
}

/// A gateway serving the certificate file `cert` (of `pki`'s key) as [`gateway_for`] does.
async fn gateway_serving(
    pki: &OcspPki,
    cert: &std::path::Path,
    env: &[(&str, String)],
) -> (EchoUpstream, GatewayProcess) {
    let upstream = EchoUpstream::start(true).await;
    let file = pki.dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        format!(
            "upstreams = [\"{}\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            upstream.addr,
            cert.display(),
            pki.key.display()
        ),
    )
    .unwrap();
    let gateway = GatewayProcess::start_with_file(&file, &pki.ca, env).await;
    gateway.wait_ready_count(1, PATIENCE).await;
    (upstream, gateway)
}

async fn stapled_eventually(gateway: &GatewayProcess, wanted: Option<&str>) {
    let port = gateway.https_port;
    eventually(
        &format!("the gateway's staple to be {wanted:?}"),
        PATIENCE,
        || async move { (stapled_status(port).as_deref() == wanted).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_answer_of_the_responder_is_stapled_and_a_revocation_ends_it() {
    let mut pki = OcspPki::start();
    let (_upstream, gateway) =
        gateway_for(&pki, &[("ARAGORA_TLS_OCSP_REFRESH_SECS", "1".into())]).await;
    stapled_eventually(&gateway, Some("good")).await;
    let metrics = gateway.metrics().await;
    assert_eq!(sample(&metrics, "aragora_tls_ocsp_stapled"), Some(1.0));
    let age = sample(&metrics, "aragora_tls_ocsp_staple_age_seconds").unwrap();
    assert!((0.0..120.0).contains(&age), "a fresh staple: {age} s old");
    assert!(gateway.log_text().contains("OCSP response stapled"));
    let answer = gateway
        .client()
        .get(gateway.https_url("/api/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "clients trusting the CA are served");

    pki.revoke();
    stapled_eventually(&gateway, None).await;
    let metrics = eventually("the revocation to be counted", PATIENCE, || async {
        let metrics = gateway.metrics().await;
        (sample(
            &metrics,
            "aragora_tls_ocsp_refresh_failures_total{reason=\"revoked\"}",
        ) >= Some(1.0))
        .then_some(metrics)
    })
    .await;
    assert_eq!(sample(&metrics, "aragora_tls_ocsp_stapled"), Some(0.0));
    assert_eq!(
        sample(&metrics, "aragora_tls_ocsp_staple_age_seconds"),
        Some(0.0)
    );
    let log = gateway.log_text();
    let line = log
        .lines()
        .find(|line| line.contains("OCSP refresh failed") && line.contains("revoked"))
        .unwrap_or_else(|| panic!("no revocation line in {log}"));
    assert!(
        line.contains("replace ARAGORA_TLS_CERT and ARAGORA_TLS_KEY"),
        "says what to do: {line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_auto_a_certificate_without_its_issuer_is_served_unstapled_with_a_warning() {
    let pki = OcspPki::start();
    let (_upstream, gateway) = gateway_serving(&pki, &pki.leaf, &[]).await;
    let answer = gateway
        .client()
        .get(gateway.https_url("/api/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status(),
        200,
        "the leaf-only certificate still serves"
    );
    assert_eq!(
        stapled_status(gateway.https_port),
        None,
        "nothing to staple"
    );
    let log = gateway.log_text();
    assert!(
        log.lines().any(
            |line| line.contains("OCSP stapling is off for this certificate")
                && line.contains("holds no certificate of its issuer")
        ),
        "the warning says why: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responder_that_never_answers_blocks_neither_the_start_nor_a_handshake() {
    // Accepts connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/", silent.local_addr().unwrap().port());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            counted.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    let pki = OcspPki::naming(&url);
    let (_upstream, gateway) = gateway_for(&pki, &[]).await;
    eventually("the gateway to ask the responder", PATIENCE, || async {
        (accepted.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    // The question hangs (for up to 10 s); a handshake meanwhile is not held up by it.
    let started = Instant::now();
    assert_eq!(
        stapled_status(gateway.https_port),
        None,
        "nothing to staple yet"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the handshake took {:?}",
        started.elapsed()
    );
    let answer = gateway
        .client()
        .get(gateway.https_url("/api/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    eventually("the timeout to be counted", PATIENCE, || async {
        (sample(
            &gateway.metrics().await,
            "aragora_tls_ocsp_refresh_failures_total{reason=\"unreachable\"}",
        ) >= Some(1.0))
        .then_some(())
    })
    .await;
    let log = gateway.log_text();
    let line = log
        .lines()
        .find(|line| line.contains("OCSP refresh failed"))
        .unwrap();
    assert!(line.contains(&url), "names the responder: {line}");
    assert!(
        line.contains("check that the gateway can reach the responder")
            && line.contains("no staple is served"),
        "says what to do and what clients get: {line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_file_is_stapled_as_is_and_re_read_on_reload() {
    // The responder the leaf names is never asked: the file is stapled instead.
    let pki = OcspPki::naming("http://127.0.0.1:9/");
    let file = pki.response_file("staple.der", 60);
    let (_upstream, gateway) = gateway_for(
        &pki,
        &[("ARAGORA_TLS_OCSP_RESPONSE_FILE", file.display().to_string())],
    )
    .await;
    let next_update = |text: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix("Next Update: "))
            .map(str::to_string)
    };
    let stored = response_text(&file);
    let served = s_client_status(gateway.https_port);
    assert_eq!(stapled_status(gateway.https_port).as_deref(), Some("good"));
    assert_eq!(produced_at(&served), produced_at(&stored), "{served}");
    assert_eq!(next_update(&served), next_update(&stored));

    // A garbled file is refused on reload; the staple in force stays.
    std::fs::write(&file, b"not an OCSP response").unwrap();
    gateway.signal(libc::SIGHUP);
    eventually("the refusal to be logged", PATIENCE, || async {
        gateway.log_text().contains("reload refused").then_some(())
    })
    .await;
    let log = gateway.log_text();
    assert!(
        log.contains("ARAGORA_TLS_OCSP_RESPONSE_FILE") && log.contains("not a DER OCSP response"),
        "{log}"
    );
    assert_eq!(
        next_update(&s_client_status(gateway.https_port)),
        next_update(&stored)
    );

    // A fresh response (valid longer) is stapled after the next reload.
    let fresh = pki.response_file("staple.der", 120);
    let fresh_next = next_update(&response_text(&fresh));
    assert_ne!(fresh_next, next_update(&stored));
    gateway.signal(libc::SIGHUP);
    let port = gateway.https_port;
    eventually("the new file to be stapled", PATIENCE, || async {
        (next_update(&s_client_status(port)) == fresh_next).then_some(())
    })
    .await;
}

/// `aragora gateway` with `cert`, `key` and `env`: its exit code and stderr.
fn refusal(
    cert: &std::path::Path,
    key: &std::path::Path,
    env: &[(&str, &str)],
) -> (Option<i32>, String) {
    let mut command = crate::support::aragora_command();
    command
        .args(["gateway", "--upstream", "127.0.0.1:9"])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .args(["--https-port", "0", "--http-port", "0", "--admin-port", "0"])
        .stdin(std::process::Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// One bad start: what it is, the certificate, the environment, the setting the refusal names
/// and what it says.
type Case<'a> = (
    &'a str,
    &'a std::path::Path,
    Vec<(&'a str, String)>,
    &'a str,
    &'a str,
);

#[test]
fn bad_ocsp_settings_are_refused_at_start_by_name() {
    let pki = OcspPki::naming("http://127.0.0.1:9/");
    let dir = tempfile::tempdir().unwrap();
    let (plain_cert, plain_key) = aragora_gateway::tls::self_signed(dir.path()).unwrap();
    let garbage = dir.path().join("garbage.der");
    std::fs::write(&garbage, b"\x30\x03\x0a\x01\x00garbage").unwrap();
    let missing = dir.path().join("missing.der");
    pki.write_index(true);
    let revoked = pki.response_file("revoked.der", 60);
    let file = |path: &std::path::Path| path.display().to_string();
    let cases: Vec<Case> = vec![
        (
            "unreadable file",
            &pki.chain,
            vec![("ARAGORA_TLS_OCSP_RESPONSE_FILE", file(&missing))],
            "ARAGORA_TLS_OCSP_RESPONSE_FILE",
            "cannot be read",
        ),
        (
            "garbage DER",
            &pki.chain,
            vec![("ARAGORA_TLS_OCSP_RESPONSE_FILE", file(&garbage))],
            "ARAGORA_TLS_OCSP_RESPONSE_FILE",
            "is not a DER OCSP response",
        ),
        (
            "a revoked response",
            &pki.chain,
            vec![("ARAGORA_TLS_OCSP_RESPONSE_FILE", file(&revoked))],
            "ARAGORA_TLS_OCSP_RESPONSE_FILE",
            "revoked",
        ),
        (
            "a file with stapling off",
            &pki.chain,
            vec![
                ("ARAGORA_TLS_OCSP_RESPONSE_FILE", file(&revoked)),
                ("ARAGORA_TLS_OCSP_STAPLING", "off".into()),
            ],
            "ARAGORA_TLS_OCSP_RESPONSE_FILE",
            "leave the mode at auto",
        ),
        (
            "on without a responder",
            &plain_cert,
            vec![("ARAGORA_TLS_OCSP_STAPLING", "on".into())],
            "ARAGORA_TLS_OCSP_STAPLING",
            "names no http OCSP responder",
        ),
        (
            "stapling on and a chain without the issuer",
            &pki.leaf,
            vec![("ARAGORA_TLS_OCSP_STAPLING", "on".into())],
            "ARAGORA_TLS_OCSP_STAPLING",
            "holds no certificate of its issuer",
        ),
        (
            "an unknown mode",
            &pki.chain,
            vec![("ARAGORA_TLS_OCSP_STAPLING", "sometimes".into())],
            "ARAGORA_TLS_OCSP_STAPLING",
            "use auto, on or off",
        ),
        (
            "no refresh",
            &pki.chain,
            vec![("ARAGORA_TLS_OCSP_REFRESH_SECS", "0".into())],
            "ARAGORA_TLS_OCSP_REFRESH_SECS",
            "use 1 to 86400",
        ),
    ];
    for (case, cert, env, setting, message) in cases {
        let key: &std::path::Path = if cert == plain_cert.as_path() {
            &plain_key
        } else {
            &pki.key
        };
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (code, said) = refusal(cert, key, &env);
        assert_eq!(code, Some(78), "{case}: {said}");
        let line = said
            .lines()
            .find(|line| line.contains(setting) && line.contains(message))
            .unwrap_or_else(|| {
                panic!("{case}: no line naming {setting} with {message:?} in {said}")
            });
        assert!(!line.contains("panicked"), "{case}: {line}");
    }
}
