//! Helpers for end-to-end tests: the real `aragora` binary on ephemeral ports, a fresh
//! PostgreSQL database per test, and polling with a deadline instead of sleeping.
//!
//! Every process a test starts here is an authenticated one by default: engines, gateways,
//! `up` and fault proxies get the test's random admin token ([`test_token`]) as
//! `ARAGORA_API_TOKEN`, and the handles' clients and request helpers send it as
//! `Authorization: Bearer`, so tests say what they check and not how they log in. A test of
//! authentication itself removes or replaces it ([`EngineOptions::without_token`]) and builds
//! its own requests.

#![allow(dead_code)]

pub mod alertmanager;
pub mod compose;
pub mod deploy;
pub mod echo;
pub mod experiment;
pub mod exporters;
pub mod held;
pub mod hostile;
pub mod hosts;
pub mod mock_llm;
pub mod ocsp;
pub mod otlp;
pub mod process;
pub mod prom;
pub mod proxy;
pub mod redis_tls;
pub mod relay;
pub mod scraping;
pub mod settings;
pub mod transcript;

pub use process::{address, Process};

/// `Deref` and `DerefMut` of a process handle to the [`Process`] in its `process` field.
macro_rules! deref_to_process {
    ($handle:ty) => {
        impl std::ops::Deref for $handle {
            type Target = Process;
            fn deref(&self) -> &Process {
                &self.process
            }
        }

        impl std::ops::DerefMut for $handle {
            fn deref_mut(&mut self) -> &mut Process {
                &mut self.process
            }
        }
    };
}

use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_aragora");

/// The admin token of the processes the current test starts (`ARAGORA_API_TOKEN`): random, and
/// one per test (the test's own thread), so a gateway and the replicas behind it that one test
/// starts agree on it. Read it in the test body, not inside a spawned task (another thread, so
/// another token); the handles keep the token they were started with (`engine.token`).
pub fn test_token() -> String {
    thread_local! {
        static TOKEN: String = format!("e2e-admin-{}", uuid::Uuid::new_v4().simple());
    }
    TOKEN.with(Clone::clone)
}

thread_local! {
    static H1_ENGINE: std::cell::Cell<&'static str> = const { std::cell::Cell::new("lean") };
    /// Set only inside `on_both_engines!`: elsewhere a gateway serves HTTP/2 on the binary's
    /// default.
    static H2_ENGINE: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// Runs `test` with the gateways it starts serving HTTP/1.1 and HTTP/2 on `engine`
/// (`ARAGORA_GATEWAY_H1_ENGINE` and `ARAGORA_GATEWAY_H2_ENGINE`, unless the test's own env
/// names them): what `on_both_engines!` runs each gateway test under. Per thread, like
/// [`test_token`]: a gateway started inside a spawned task, or by a test outside
/// `on_both_engines!`, gets the binary's defaults (lean).
pub async fn with_h1_engine<F: Future<Output = ()>>(engine: &'static str, test: F) {
    H1_ENGINE.with(|current| current.set(engine));
    H2_ENGINE.with(|current| current.set(Some(engine)));
    test.await
}

/// The HTTP/1.1 engine gateways started on this thread use.
pub fn h1_engine() -> &'static str {
    H1_ENGINE.with(std::cell::Cell::get)
}

/// `builder` sending `Authorization: Bearer token` on every request that sets none itself
/// (reqwest adds default headers only where the request has none of that name).
pub fn with_bearer(builder: reqwest::ClientBuilder, token: Option<&str>) -> reqwest::ClientBuilder {
    let Some(token) = token else {
        return builder;
    };
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .expect("a token fit for a header");
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    builder.default_headers(headers)
}

/// A WebSocket handshake request for `url`, with `Authorization: Bearer token` when given.
pub fn ws_request(
    url: &str,
    token: Option<&str>,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().expect("a WebSocket URL");
    if let Some(token) = token {
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}")
                .parse()
                .expect("a token fit for a header"),
        );
    }
    request
}

/// The PostgreSQL server the tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("ARAGORA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Polls `check` until it returns `Some`, or panics with `what` after `patience`.
pub async fn eventually<T, F, Fut>(what: &str, patience: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + patience;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {patience:?} waiting for {what}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A database created for one test and dropped after it.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        use sqlx::Connection;
        let name = format!("aragora_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
            .await
            .expect("PostgreSQL reachable at ARAGORA_TEST_POSTGRES_URL (default 127.0.0.1:5432)");
        sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create test database");
        let base = postgres_admin_url();
        let url = match base.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => format!("{base}/{name}"),
        };
        Self { name, url }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside any runtime guarantee; use a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                use sqlx::Connection;
                let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
                    .await
                    .ok()?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                sqlx::Executor::execute(&mut admin, sql.as_str()).await.ok()
            })
        })
        .join();
    }
}

/// Which database an engine under test uses.
#[derive(Clone)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

/// A running `aragora serve` process: its [`Process`] (log, signals, exit; `engine.child`,
/// `engine.log`, `engine.signal(..)` reach it) and the addresses it announced.
pub struct Engine {
    pub process: Process,
    pub api: SocketAddr,
    pub ws: SocketAddr,
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    /// The credential its clients send: the admin token it was started with
    /// (`ARAGORA_API_TOKEN`) unless the options chose another ([`EngineOptions::bearer`]).
    pub token: Option<String>,
    /// A client that sends `token` on every request (see [`with_bearer`]).
    pub http: reqwest::Client,
}

/// How to start an engine. `ARAGORA_API_TOKEN` is the test's [`test_token`] unless the test
/// sets another with [`env`](Self::env) or removes it with [`without_token`](Self::without_token).
pub struct EngineOptions {
    pub backend: Backend,
    pub env: HashMap<String, String>,
    /// Reuse a data directory (a restart); a fresh temporary one otherwise.
    pub data_dir: Option<PathBuf>,
    /// The temporary directory behind `data_dir`, handed over from the engine being replaced.
    pub temp: Option<tempfile::TempDir>,
    /// What the engine's clients send instead of `ARAGORA_API_TOKEN` (a JWT, an API key).
    pub bearer: Option<String>,
}

impl EngineOptions {
    pub fn sqlite() -> Self {
        Self {
            backend: Backend::Sqlite,
            env: HashMap::from([("ARAGORA_API_TOKEN".to_string(), test_token())]),
            data_dir: None,
            temp: None,
            bearer: None,
        }
    }

    pub fn postgres(url: &str) -> Self {
        Self {
            backend: Backend::Postgres(url.to_string()),
            ..Self::sqlite()
        }
    }

    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.insert(key.to_string(), value.to_string());
        self
    }

    /// No `ARAGORA_API_TOKEN` (the engine's clients then send no credential).
    pub fn without_token(mut self) -> Self {
        self.env.remove("ARAGORA_API_TOKEN");
        self
    }

    /// Its clients send `credential` rather than the admin token.
    pub fn bearer(mut self, credential: &str) -> Self {
        self.bearer = Some(credential.to_string());
        self
    }

    /// The credential the engine's clients will send: [`bearer`](Self::bearer), else
    /// `ARAGORA_API_TOKEN` unless empty.
    pub fn token(&self) -> Option<String> {
        self.bearer.clone().or_else(|| {
            self.env
                .get("ARAGORA_API_TOKEN")
                .filter(|token| !token.is_empty())
                .cloned()
        })
    }

    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }
}

/// A command for the real binary with no inherited `ARAGORA_*` or database settings.
pub fn aragora_command() -> Command {
    let mut command = Command::new(BINARY);
    for (key, _) in std::env::vars() {
        if key.starts_with("ARAGORA_") || key == "DATABASE_URL" {
            command.env_remove(key);
        }
    }
    command.env("ARAGORA_LOG_LEVEL", "info");
    command
}

/// [`aragora_command`] on the database `options` names (SQLite in `data_dir`, or its PostgreSQL
/// database), with `options`' environment: a CLI command seeing what `Engine::spawn` would.
pub fn command_on(options: &EngineOptions, data_dir: &Path) -> Command {
    let mut command = aragora_command();
    command.env("ARAGORA_DATA_DIR", data_dir);
    if let Backend::Postgres(url) = &options.backend {
        command
            .env("ARAGORA_DB_BACKEND", "postgres")
            .env("DATABASE_URL", url);
    }
    command.envs(&options.env);
    command
}

/// What the engine prints once it has bound: `api=HOST:PORT ws=HOST:PORT` follows.
pub const ENGINE_LISTENING: &str = "aragora engine listening ";
/// What the gateway prints once it has bound: `https=.. http=.. admin=..` follows.
pub const GATEWAY_LISTENING: &str = "aragora gateway listening ";

impl Engine {
    /// Starts the binary on ephemeral ports and waits until it is ready.
    pub async fn start(options: EngineOptions) -> Self {
        let engine = Self::spawn(options);
        engine.wait_ready().await;
        engine
    }

    /// Starts the binary and returns once it listens (not necessarily ready).
    pub fn spawn(options: EngineOptions) -> Self {
        let token = options.token();
        let (temp, data_dir) = match options.data_dir {
            Some(dir) => (options.temp, dir),
            None => {
                let temp = tempfile::tempdir().expect("temp dir");
                let dir = temp.path().to_path_buf();
                (Some(temp), dir)
            }
        };
        let run = uuid::Uuid::new_v4().simple();
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let mut command = aragora_command();
        command
            .arg("serve")
            .env("ARAGORA_HOST", "127.0.0.1")
            .env("ARAGORA_PORT", "0")
            .env("ARAGORA_WS_PORT", "0")
            .env("ARAGORA_DATA_DIR", &data_dir)
            .env("ARAGORA_DRAIN_TIMEOUT", "5");
        if let Backend::Postgres(url) = &options.backend {
            // Small pools: many engines share one PostgreSQL (max_connections 100) in parallel.
            command
                .env("ARAGORA_DB_BACKEND", "postgres")
                .env("ARAGORA_DB_POOL_SIZE", "4")
                .env("DATABASE_URL", url);
        }
        command.envs(&options.env);
        let mut process = Process::spawn(
            &mut command,
            &data_dir.join(format!("engine-{run}.log")),
            &data_dir.join(format!("engine-{run}.out")),
        );
        let listening = process.announcement(ENGINE_LISTENING);
        Self {
            api: address(&listening, "api"),
            ws: address(&listening, "ws"),
            process,
            data_dir,
            _temp: temp,
            http: with_bearer(reqwest::Client::builder(), token.as_deref())
                .build()
                .unwrap(),
            token,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    /// Options for a successor on the same data directory, which takes over its clean-up.
    pub fn restart_options(&mut self, options: EngineOptions) -> EngineOptions {
        EngineOptions {
            data_dir: Some(self.data_dir.clone()),
            temp: self._temp.take(),
            ..options
        }
    }

    pub fn ws_url(&self, path_and_query: &str) -> String {
        format!("ws://{}{path_and_query}", self.api)
    }

    /// The handshake of a WebSocket to `path_and_query` on the API port, sending the token.
    pub fn ws_request(
        &self,
        path_and_query: &str,
    ) -> tokio_tungstenite::tungstenite::handshake::client::Request {
        ws_request(&self.ws_url(path_and_query), self.token.as_deref())
    }

    /// [`ws_request`](Self::ws_request) on the dedicated WebSocket port.
    pub fn ws_port_request(
        &self,
        path_and_query: &str,
    ) -> tokio_tungstenite::tungstenite::handshake::client::Request {
        ws_request(
            &format!("ws://{}{path_and_query}", self.ws),
            self.token.as_deref(),
        )
    }

    pub async fn wait_ready(&self) {
        let url = self.url("/readyz");
        eventually(
            "the engine to report ready on /readyz",
            Duration::from_secs(30),
            || async {
                let response = self.http.get(&url).send().await.ok()?;
                (response.status() == 200).then_some(())
            },
        )
        .await;
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        get_json(&self.http, &self.url(path)).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        post_json(&self.http, &self.url(path), body).await
    }

    /// Starts a debate and returns its id; panics unless the engine accepted it.
    pub async fn start_debate(&self, body: Value) -> String {
        let (status, reply) = self.post_json("/api/debates", &body).await;
        assert_eq!(status, 202, "debate not accepted: {reply}");
        reply["debate_id"].as_str().expect("debate_id").to_string()
    }

    /// Starts a debate and returns its record once it has ended (within a minute).
    pub async fn run_debate(&self, body: Value) -> Value {
        let id = self.start_debate(body).await;
        self.wait_final(&id, Duration::from_secs(60)).await
    }

    /// Runs a debate every agent fails (an injected `agent_failing` fault, cleared after it)
    /// and returns its record, `failed`.
    pub async fn run_failing_debate(&self, topic: &str) -> Value {
        let (status, fault) = self
            .post_json(
                "/api/system/faults",
                &json!({"kind": "agent_failing", "duration_seconds": 120}),
            )
            .await;
        assert_eq!(status, 201, "{fault}");
        let record = self.run_debate(json!({"topic": topic, "rounds": 1})).await;
        assert_eq!(record["status"], "failed", "{record}");
        let path = format!("/api/system/faults/{}", fault["id"].as_str().unwrap());
        let cleared = self.http.delete(self.url(&path)).send().await.unwrap();
        assert!(cleared.status().is_success(), "{}", cleared.status());
        record
    }

    /// Waits until the debate reaches a final state and returns its record.
    pub async fn wait_final(&self, id: &str, patience: Duration) -> Value {
        let path = format!("/api/debates/{id}");
        eventually(&format!("debate {id} to finish"), patience, || async {
            let (status, body) = self.get(&path).await;
            let state = body["status"].as_str().unwrap_or_default().to_string();
            (status == 200
                && ["completed", "failed", "cancelled", "timed_out"].contains(&state.as_str()))
            .then_some(body)
        })
        .await
    }

    /// The metric samples of /metrics as (name with labels, value).
    pub async fn metrics(&self) -> String {
        get_text(&self.http, &self.url("/metrics")).await
    }

    /// The metrics once `finished` debates have been counted in `aragora_debates_total` (any
    /// outcome): a debate's outcome is counted just after its end is stored, so a scrape right
    /// after the API shows it final may not hold it yet.
    pub async fn metrics_after_debates(&self, finished: f64) -> String {
        eventually(
            "the finished debates counted",
            Duration::from_secs(30),
            || async {
                let metrics = self.metrics().await;
                let counted: f64 = aragora_engine::model::Outcome::ALL
                    .iter()
                    .filter_map(|outcome| {
                        let series =
                            format!("aragora_debates_total{{outcome=\"{}\"}}", outcome.as_str());
                        sample(&metrics, &series)
                    })
                    .sum();
                (counted >= finished).then_some(metrics)
            },
        )
        .await
    }

    /// The faults active in the engine (`faults` of /api/system/faults, read with `token`).
    pub async fn active_faults(&self, token: &str) -> Value {
        let url = self.url("/api/system/faults");
        let listed = fetch_json(self.http.get(url).bearer_auth(token)).await;
        listed["faults"].clone()
    }
}

deref_to_process!(Engine);

/// GET `url`: the status and the JSON body (`Null` when the body is not JSON). Panics only
/// when no answer came at all.
pub async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err}"));
    status_and_json(response).await
}

/// POST `body` as JSON to `url`: the status and the JSON answer (`Null` when not JSON).
pub async fn post_json(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let response = client
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap_or_else(|err| panic!("POST {url}: {err}"));
    status_and_json(response).await
}

/// Sends `request` and its JSON answer; panics when no answer came or it is not JSON.
pub async fn fetch_json(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// [`fetch_json`] for polling: `None` when no answer came or it is not JSON.
pub async fn try_fetch_json(request: reqwest::RequestBuilder) -> Option<Value> {
    request.send().await.ok()?.json().await.ok()
}

async fn status_and_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// GET `url` and its body as text (a metrics page).
pub async fn get_text(client: &reqwest::Client, url: &str) -> String {
    client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err}"))
        .text()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: body: {err}"))
}

/// Asserts that `debate` ended as failed because no agent stated a position.
pub fn assert_every_agent_failed(debate: &Value) {
    assert_eq!(debate["status"], "failed", "{debate}");
    let error = debate["error"].as_str().unwrap_or_default();
    assert!(error.contains("every agent failed"), "{debate}");
}

/// The message of a finished debate's `index`th agent error.
pub fn agent_error(debate: &Value, index: usize) -> String {
    debate["agent_errors"][index]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The value of one sample line (`name{labels} value`) in a Prometheus text exposition: the
/// line with that name and those labels, in any order. The `component` label, which the
/// gateway's and the engine's registries put on every series, is matched only when named: a
/// test names the labels that vary, and each scrape comes from one component.
pub fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    let (name, mut wanted) = series_key(name_and_labels)?;
    let names_component = wanted.iter().any(|(label, _)| label == "component");
    wanted.sort();
    metrics.lines().find_map(|line| {
        if line.starts_with('#') {
            return None;
        }
        let (key, value) = line.rsplit_once(' ')?;
        let (line_name, mut labels) = series_key(key)?;
        if !names_component {
            labels.retain(|(label, _)| label != "component");
        }
        labels.sort();
        (line_name == name && labels == wanted)
            .then(|| value.parse().ok())
            .flatten()
    })
}

/// `name{a="1",b="2"}` as the name and its label pairs (values unescaped enough for tests:
/// `\"` and `\\`), or `None` when it is not a series.
pub fn series_key(text: &str) -> Option<(String, Vec<(String, String)>)> {
    let Some((name, rest)) = text.split_once('{') else {
        return Some((text.to_string(), Vec::new()));
    };
    let mut labels = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        let label: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let label = label.trim_start_matches(',').trim();
        if label == "}" || label.is_empty() {
            break;
        }
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => value.push(chars.next()?),
                '"' => break,
                c => value.push(c),
            }
        }
        labels.push((label.to_string(), value));
        if chars.peek() == Some(&'}') {
            break;
        }
    }
    Some((name.to_string(), labels))
}

/// A free TCP port on 127.0.0.1, never handed out twice in this test process. Only for
/// programs that cannot say what they bound (Prometheus, Alertmanager): the port is released
/// before the program binds it, so a parallel test's port-0 bind can take it meanwhile.
/// Everything of our own binds port 0 and announces its addresses instead.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(Mutex::default);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind an ephemeral port")
            .local_addr()
            .unwrap()
            .port();
        if given.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// A raw TLS client (tokio-rustls) that trusts the certificates of `cert_pem`.
pub fn tls_connector_trusting(cert_pem: &[u8]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &cert_pem[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

/// A running `aragora gateway` on ports it chose (port 0) with a self-signed certificate;
/// derefs to its [`Process`].
pub struct GatewayProcess {
    pub process: Process,
    pub http_port: u16,
    pub https_port: u16,
    pub admin_port: u16,
    pub cert_pem: Vec<u8>,
    pub dir: tempfile::TempDir,
    /// The admin token it was started with (`ARAGORA_API_TOKEN`; the test's [`test_token`]
    /// unless `env` named another, none when that is empty). `client()` sends it on through to
    /// the engines, `admin` to the admin listener.
    pub token: Option<String>,
    pub admin: reqwest::Client,
}

impl GatewayProcess {
    /// Starts a gateway in front of `upstreams` and waits until its admin listener answers.
    pub async fn start(upstreams: &[String], env: &[(&str, String)]) -> Self {
        Self::launch(upstreams, env, None, |command| command).await
    }

    /// Starts a gateway whose upstreams and certificate come from a TOML file (for reloads).
    pub async fn start_with_file(file: &Path, cert: &Path, env: &[(&str, String)]) -> Self {
        let mut gateway = Self::launch(&[], env, Some(file), |command| command).await;
        gateway.cert_pem = std::fs::read(cert).unwrap();
        gateway
    }

    /// Starts a gateway as [`GatewayProcess::start`] does, its command passed through `wrap`
    /// first (to run it under another program, such as `unshare`).
    pub async fn launch(
        upstreams: &[String],
        env: &[(&str, String)],
        file: Option<&Path>,
        wrap: impl FnOnce(Command) -> Command,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = aragora_gateway::tls::self_signed(&dir.path().join("tls")).unwrap();
        let token = match env.iter().find(|(key, _)| *key == "ARAGORA_API_TOKEN") {
            Some((_, token)) => Some(token.clone()).filter(|token| !token.is_empty()),
            None => Some(test_token()),
        };
        let mut command = aragora_command();
        command
            .arg("gateway")
            .args(["--http-port", "0", "--https-port", "0", "--admin-port", "0"])
            .env("ARAGORA_GATEWAY_HOST", "127.0.0.1")
            .env("ARAGORA_HEALTH_INTERVAL_MS", "200")
            .env("ARAGORA_SLOW_START_SECS", "0")
            .env("ARAGORA_GATEWAY_DRAIN_DELAY", "0")
            // Load tests come from one address; tests of the limit turn it back on.
            .env("ARAGORA_RATE_LIMIT", "0")
            .env("ARAGORA_GATEWAY_H1_ENGINE", h1_engine());
        if let Some(engine) = H2_ENGINE.with(std::cell::Cell::get) {
            command.env("ARAGORA_GATEWAY_H2_ENGINE", engine);
        }
        if let Some(token) = &token {
            command.env("ARAGORA_API_TOKEN", token);
        }
        match file {
            Some(file) => {
                command.arg("--config").arg(file);
            }
            None => {
                command
                    .arg("--tls-cert")
                    .arg(&cert)
                    .arg("--tls-key")
                    .arg(&key);
            }
        }
        for upstream in upstreams {
            command.args(["--upstream", upstream]);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let mut command = wrap(command);
        let mut process = Process::spawn(
            &mut command,
            &dir.path().join("gateway.log"),
            &dir.path().join("gateway.out"),
        );
        let listening = process.announcement(GATEWAY_LISTENING);
        let gateway = Self {
            process,
            http_port: address(&listening, "http").port(),
            https_port: address(&listening, "https").port(),
            admin_port: address(&listening, "admin").port(),
            cert_pem: std::fs::read(&cert).unwrap(),
            dir,
            admin: with_bearer(reqwest::Client::builder(), token.as_deref())
                .build()
                .unwrap(),
            token,
        };
        let url = gateway.admin_url("/healthz");
        eventually(
            "the gateway's admin listener",
            Duration::from_secs(30),
            || async { gateway.admin.get(&url).send().await.ok().map(|_| ()) },
        )
        .await;
        gateway
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub fn https_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.https_port)
    }

    /// An HTTPS client that trusts the gateway's certificate and sends its token (through
    /// the gateway to the engines behind it).
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().unwrap()
    }

    /// The builder of [`client`](Self::client).
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        with_bearer(self.anonymous_client_builder(), self.token.as_deref())
    }

    /// [`client_builder`](Self::client_builder) without any credential.
    pub fn anonymous_client_builder(&self) -> reqwest::ClientBuilder {
        let root = reqwest::Certificate::from_pem(&self.cert_pem).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(root)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
    }

    /// The handshake of a `wss://` WebSocket to `path_and_query` through the gateway, sending
    /// the token.
    pub fn wss_request(
        &self,
        path_and_query: &str,
    ) -> tokio_tungstenite::tungstenite::handshake::client::Request {
        ws_request(
            &format!("wss://127.0.0.1:{}{path_and_query}", self.https_port),
            self.token.as_deref(),
        )
    }

    /// A raw TLS client (tokio-rustls) that trusts the gateway's certificate, for tests that
    /// speak the wire themselves: stalled bodies, WebSockets.
    pub fn tls_connector(&self) -> tokio_rustls::TlsConnector {
        tls_connector_trusting(&self.cert_pem)
    }

    /// Waits until the admin listener reports `ready` replicas out of the configured ones.
    pub async fn wait_ready_count(&self, ready: usize, patience: Duration) -> Value {
        eventually(
            &format!("{ready} ready replica(s) at the gateway"),
            patience,
            || async {
                let body = self.try_admin_json("/api/system/upstreams").await?;
                (body["ready"] == ready).then_some(body)
            },
        )
        .await
    }

    /// The admin listener's /metrics text.
    pub async fn metrics(&self) -> String {
        get_text(&self.admin, &self.admin_url("/metrics")).await
    }

    /// GET `path` on the admin listener, as JSON; panics when no answer came or it is not JSON.
    pub async fn admin_json(&self, path: &str) -> Value {
        fetch_json(self.admin.get(self.admin_url(path))).await
    }

    /// POST (no body) to `path` on the admin listener; panics when no answer came.
    pub async fn admin_post(&self, path: &str) -> reqwest::Response {
        let url = self.admin_url(path);
        self.admin
            .post(&url)
            .send()
            .await
            .unwrap_or_else(|err| panic!("POST {url}: {err}"))
    }

    /// [`admin_json`](Self::admin_json) for polling: `None` when no JSON answer came.
    pub async fn try_admin_json(&self, path: &str) -> Option<Value> {
        try_fetch_json(self.admin.get(self.admin_url(path))).await
    }
}

deref_to_process!(GatewayProcess);

/// `aragora up` on ports it chose, ready to serve through its gateway; derefs to its
/// [`Process`].
pub struct UpProcess {
    pub process: Process,
    /// An HTTPS client that trusts the generated certificate and sends `token`.
    pub client: reqwest::Client,
    /// Its admin token (`ARAGORA_API_TOKEN`: the test's [`test_token`] unless `env` named
    /// another, none when that is empty).
    pub token: Option<String>,
    /// `https://127.0.0.1:PORT` of the gateway.
    pub base: String,
    pub https: u16,
    pub admin: u16,
    /// The engine's listeners, as announced (`up` binds them to 127.0.0.1 by default).
    pub api: u16,
    pub ws: u16,
    /// The data directory; `up.log` (stderr) and `up.out` (stdout) are in it.
    pub dir: tempfile::TempDir,
}

impl UpProcess {
    /// Starts a one-round debate through the gateway and returns it once completed.
    pub async fn run_debate(&self, topic: &str) -> Value {
        let (status, created) = post_json(
            &self.client,
            &format!("{}/api/debates", self.base),
            &serde_json::json!({"topic": topic, "rounds": 1}),
        )
        .await;
        assert_eq!(
            status, 202,
            "debate not accepted through the gateway: {created}"
        );
        let url = format!(
            "{}/api/debates/{}",
            self.base,
            created["debate_id"].as_str().unwrap()
        );
        eventually(
            "the debate to complete through the gateway",
            Duration::from_secs(60),
            || async {
                let debate: Value = self.client.get(&url).send().await.ok()?.json().await.ok()?;
                (debate["status"] == "completed").then_some(debate)
            },
        )
        .await
    }

    /// Starts `aragora up` with `env` (its engine on the default host: loopback), stderr to
    /// `up.log`.
    pub async fn start(env: &[(&str, &str)]) -> Self {
        Self::launch(env, false).await
    }

    /// [`start`](Self::start) with stderr on a pseudo-terminal (copied to `up.log`).
    pub async fn start_on_terminal(env: &[(&str, &str)]) -> Self {
        Self::launch(env, true).await
    }

    async fn launch(env: &[(&str, &str)], on_terminal: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut command = crate::support::aragora_command();
        command
            .arg("up")
            .args(["--api-port", "0", "--ws-port", "0"])
            .args(["--https-port", "0", "--http-port", "0", "--admin-port", "0"])
            .env("ARAGORA_DATA_DIR", dir.path())
            .env("ARAGORA_GATEWAY_HOST", "127.0.0.1")
            .env("ARAGORA_HEALTH_INTERVAL_MS", "200")
            .env("ARAGORA_RATE_LIMIT", "0");
        let token = match env.iter().find(|(key, _)| *key == "ARAGORA_API_TOKEN") {
            Some((_, token)) => Some(token.to_string()).filter(|token| !token.is_empty()),
            None => Some(test_token()),
        };
        if let Some(token) = &token {
            command.env("ARAGORA_API_TOKEN", token);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let (log, out) = (dir.path().join("up.log"), dir.path().join("up.out"));
        let mut process = if on_terminal {
            Process::spawn_on_terminal(&mut command, &log, &out)
        } else {
            Process::spawn(&mut command, &log, &out)
        };
        let engine = process.announcement(ENGINE_LISTENING);
        let (api, ws) = (
            address(&engine, "api").port(),
            address(&engine, "ws").port(),
        );
        let gateway = process.announcement(GATEWAY_LISTENING);
        let (https, admin) = (
            address(&gateway, "https").port(),
            address(&gateway, "admin").port(),
        );
        let cert = dir.path().join("tls").join("cert.pem");
        let cert_pem = std::fs::read(&cert).expect("the certificate `up` generated");
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&cert_pem).unwrap())
            .timeout(Duration::from_secs(5));
        let client = with_bearer(client, token.as_deref()).build().unwrap();
        let base = format!("https://127.0.0.1:{https}");
        eventually(
            "the gateway to route to the engine",
            Duration::from_secs(60),
            || async {
                let response = client.get(format!("{base}/readyz")).send().await.ok()?;
                (response.status() == 200).then_some(())
            },
        )
        .await;
        Self {
            process,
            client,
            token,
            base,
            https,
            admin,
            api,
            ws,
            dir,
        }
    }
}

deref_to_process!(UpProcess);

/// A new API key named `name` with `role`, created with the admin credential of `admin` at
/// `base` (`POST /api/auth/api-key`); panics unless it was created.
pub async fn create_key(admin: &reqwest::Client, base: &str, name: &str, role: &str) -> String {
    let (status, body) = post_json(
        admin,
        &format!("{base}/api/auth/api-key"),
        &serde_json::json!({"name": name, "role": role}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["key"].as_str().expect("the key").to_string()
}

/// What a finished command wrote, stdout then stderr, for asserting on either.
pub fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// [`output_text`], once the command is seen to have succeeded (`what` names it otherwise).
pub fn assert_succeeded(output: &std::process::Output, what: &str) -> String {
    let text = output_text(output);
    assert!(output.status.success(), "{what} failed:\n{text}");
    text
}

/// A finished command for an assertion message: its exit code, stdout and stderr.
pub fn describe_output(output: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
