//! No secret in anything the processes write: a whole scenario (engine and gateway start, LLM
//! debates through a mock provider, requests with wrong credentials, `validate-env` and a
//! refused start with bad values beside the secrets, a backup and a drill, health and metrics
//! read, shutdown) runs with known, unique secret values, and everything the processes wrote
//! (stdout, stderr, every file in the data directory, every answer) is searched for them.
//!
//! To cover a new kind of request (authenticated ones, once there are credentials to present),
//! add its secret to [`Secrets`] (and [`Secrets::all`]), do the request in the scenario and
//! [`Captured::add`] what it answered: the final [`assert_no_secret`] covers the rest.

use crate::support::mock_llm::MockLlm;
use crate::support::{aragora_command, eventually, fetch_json, get_json, TestDatabase, UpProcess};
use futures::StreamExt;
use serde_json::Value;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

/// One secret value and what it is, to say which one leaked.
#[derive(Clone, Debug)]
pub struct Secret {
    pub name: &'static str,
    pub value: String,
}

/// Every secret of the scenario, each unique to this run (so a hit is a leak, never chance).
pub struct Secrets {
    pub anthropic_key: String,
    pub openai_key: String,
    pub jwt_secret: String,
    pub api_token: String,
    pub receipt_key: String,
    pub receipt_key_previous: String,
    pub postgres_password: String,
    pub redis_user: String,
    pub redis_password: String,
    /// Credentials a client presents (wrong ones here): a bearer token, a share link's
    /// `?token=`, an `?api_key=`, a cookie.
    pub wrong_bearer: String,
    pub share_token: String,
    pub query_api_key: String,
    pub cookie: String,
}

impl Secrets {
    fn new() -> Self {
        let unique = |what: &str| format!("{what}-{}", uuid::Uuid::new_v4().simple());
        Self {
            anthropic_key: unique("sk-ant"),
            openai_key: unique("sk-oai"),
            jwt_secret: unique("jwt-secret"),
            api_token: unique("api-token"),
            receipt_key: unique("receipt-key"),
            receipt_key_previous: unique("receipt-key-previous"),
            postgres_password: unique("pgpass"),
            redis_user: format!("aragora_secrets_{}", uuid::Uuid::new_v4().simple()),
            redis_password: unique("redispass"),
            wrong_bearer: unique("wrong-bearer"),
            share_token: unique("share-token"),
            query_api_key: unique("query-api-key"),
            cookie: unique("cookie"),
        }
    }

    /// What must appear nowhere.
    pub fn all(&self) -> Vec<Secret> {
        let secret = |name, value: &String| Secret {
            name,
            value: value.clone(),
        };
        vec![
            secret("ANTHROPIC_API_KEY", &self.anthropic_key),
            secret("OPENAI_API_KEY", &self.openai_key),
            secret("ARAGORA_JWT_SECRET", &self.jwt_secret),
            secret("ARAGORA_API_TOKEN", &self.api_token),
            secret("ARAGORA_RECEIPT_SIGNING_KEY", &self.receipt_key),
            secret(
                "ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS",
                &self.receipt_key_previous,
            ),
            secret("the password in DATABASE_URL", &self.postgres_password),
            secret("the password in ARAGORA_REDIS_URL", &self.redis_password),
            secret("a presented bearer token", &self.wrong_bearer),
            secret("a ?token= query value", &self.share_token),
            secret("an ?api_key= query value", &self.query_api_key),
            secret("a cookie", &self.cookie),
        ]
    }

    fn redis_url(&self) -> String {
        format!(
            "redis://{}:{}@127.0.0.1:6379/0",
            self.redis_user, self.redis_password
        )
    }
}

/// Panics naming every secret found in `haystack`, with where it was (the nearest `=== source`
/// heading of [`Captured`]) and the text around it.
pub fn assert_no_secret(haystack: &str, secrets: &[Secret]) {
    let mut leaks = Vec::new();
    for secret in secrets {
        for (at, _) in haystack.match_indices(secret.value.as_str()) {
            let source = haystack[..at]
                .rfind("\n=== ")
                .map(|start| {
                    let heading = &haystack[start + 5..];
                    heading[..heading.find('\n').unwrap_or(heading.len())].to_string()
                })
                .unwrap_or_else(|| "(start)".into());
            let from = haystack[..at.saturating_sub(120)].len();
            let from = (from..=at)
                .find(|i| haystack.is_char_boundary(*i))
                .unwrap_or(at);
            let to = (at + secret.value.len() + 120).min(haystack.len());
            let to = (to..=haystack.len())
                .find(|i| haystack.is_char_boundary(*i))
                .unwrap_or(haystack.len());
            leaks.push(format!(
                "{} in {source}: …{}…",
                secret.name,
                &haystack[from..to]
            ));
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}

/// Everything the scenario saw, each part under a `=== source` heading.
#[derive(Default)]
struct Captured {
    text: String,
}

impl Captured {
    fn add(&mut self, source: impl std::fmt::Display, text: impl AsRef<str>) {
        self.text
            .push_str(&format!("\n=== {source}\n{}\n", text.as_ref()));
    }

    fn output(&mut self, source: &str, output: &Output) {
        self.add(
            format!("{source} (stdout)"),
            String::from_utf8_lossy(&output.stdout),
        );
        self.add(
            format!("{source} (stderr)"),
            String::from_utf8_lossy(&output.stderr),
        );
    }

    /// Every file under `dir`, as text (bytes that are not UTF-8 are replaced, so a secret
    /// written into a binary file is still found).
    fn files(&mut self, dir: &Path) {
        let mut pending = vec![dir.to_path_buf()];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else if let Ok(bytes) = std::fs::read(&path) {
                    self.add(path.display(), String::from_utf8_lossy(&bytes));
                }
            }
        }
    }
}

/// A Redis ACL user with a password for this test, deleted when dropped.
struct RedisUser {
    name: String,
}

fn redis_cli(args: &[&str]) -> String {
    let output = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", "6379"])
        .args(args)
        .output()
        .expect("redis-cli (Redis runs at 127.0.0.1:6379 for the tests)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl RedisUser {
    fn create(name: &str, password: &str) -> Self {
        let password = format!(">{password}");
        let answer = redis_cli(&["ACL", "SETUSER", name, "on", &password, "~*", "&*", "+@all"]);
        assert_eq!(answer.trim(), "OK", "ACL SETUSER {name}: {answer}");
        Self { name: name.into() }
    }

    /// Connections open as this user.
    fn connections(&self) -> usize {
        let user = format!(" user={} ", self.name);
        redis_cli(&["CLIENT", "LIST"])
            .lines()
            .filter(|line| line.contains(&user))
            .count()
    }
}

impl Drop for RedisUser {
    fn drop(&mut self) {
        redis_cli(&["ACL", "DELUSER", &self.name]);
    }
}

/// `aragora ARGS` with `env`, as a CLI user would run it beside the running system.
async fn aragora(args: &[&str], env: &[(String, String)]) -> Output {
    let mut command = aragora_command();
    command.args(args).envs(env.iter().map(|(k, v)| (k, v)));
    tokio::task::spawn_blocking(move || command.output().expect("run aragora"))
        .await
        .unwrap()
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "not JSON ({err}): {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// `env` with `key` set to `value` (replacing it).
fn with(env: &[(String, String)], key: &str, value: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = env.iter().filter(|(k, _)| k != key).cloned().collect();
    env.push((key.into(), value.into()));
    env
}

#[test]
fn assert_no_secret_finds_a_planted_secret_and_says_where() {
    let secrets = [Secret {
        name: "ARAGORA_API_TOKEN",
        value: "tok-123".into(),
    }];
    assert_no_secret("\n=== log\nnothing here", &secrets);
    let planted = std::panic::catch_unwind(|| {
        assert_no_secret("\n=== up.log\nBearer tok-123 refused", &secrets)
    });
    let message = *planted.unwrap_err().downcast::<String>().unwrap();
    assert!(message.contains("ARAGORA_API_TOKEN in up.log"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_an_answer_a_report_or_a_file() {
    let secrets = Secrets::new();
    let redis = RedisUser::create(&secrets.redis_user, &secrets.redis_password);
    let database = TestDatabase::create().await;
    // PostgreSQL trusts the tests' connections, so any password connects: the one in the URL is
    // sent and must be hidden like a real one.
    let database_url = database.url.replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{}@", secrets.postgres_password),
        1,
    );
    assert!(
        database_url.contains(&secrets.postgres_password),
        "{}",
        database.url
    );
    let mock = MockLlm::start().await;
    let prefix = format!("aragora:secrets:{}:", uuid::Uuid::new_v4().simple());
    let env: Vec<(String, String)> = [
        ("ARAGORA_LOG_LEVEL", "debug".to_string()),
        ("ARAGORA_DB_BACKEND", "postgres".into()),
        ("ARAGORA_DB_POOL_SIZE", "4".into()),
        ("DATABASE_URL", database_url.clone()),
        ("ARAGORA_REDIS_URL", secrets.redis_url()),
        ("ARAGORA_RATE_LIMIT", "100000".into()),
        ("ARAGORA_RATE_LIMIT_KEY_PREFIX", prefix),
        ("ANTHROPIC_API_KEY", secrets.anthropic_key.clone()),
        ("ARAGORA_ANTHROPIC_BASE_URL", mock.base_url("v1")),
        ("OPENAI_API_KEY", secrets.openai_key.clone()),
        ("ARAGORA_OPENAI_BASE_URL", mock.base_url("v1")),
        ("ARAGORA_JWT_SECRET", secrets.jwt_secret.clone()),
        ("ARAGORA_API_TOKEN", secrets.api_token.clone()),
        ("ARAGORA_RECEIPT_SIGNING_KEY", secrets.receipt_key.clone()),
        (
            "ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS",
            secrets.receipt_key_previous.clone(),
        ),
        // An idle WebSocket through the gateway is cut after a second: pingora's error line
        // about it names the request (with its `?token=`).
        ("ARAGORA_WS_IDLE_TIMEOUT", "1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut captured = Captured::default();

    // Start: engine and gateway (`up`), on PostgreSQL and Redis with passwords.
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut up = UpProcess::start(&env_refs).await;
    let cli_env = with(
        &env,
        "ARAGORA_DATA_DIR",
        &up.dir.path().display().to_string(),
    );
    eventually(
        "the engine and the gateway connected to Redis as the test's user",
        Duration::from_secs(30),
        || async { (redis.connections() >= 2).then_some(()) },
    )
    .await;

    // Debates by the LLM agents, through the mock provider.
    let mut debate_ids = Vec::new();
    for topic in ["Secrets: tabs or spaces?", "Secrets: vim or emacs?"] {
        let debate = up.run_debate(topic).await;
        let id = debate["id"].as_str().or(debate["debate_id"].as_str());
        debate_ids.push(id.unwrap_or_default().to_string());
        captured.add(format!("debate {topic}"), debate.to_string());
    }
    assert!(
        mock.request_count() >= 4,
        "the LLM agents were called: {}",
        mock.request_count()
    );
    assert!(
        mock.requests()
            .iter()
            .any(|r| r.header("x-api-key") == Some(secrets.anthropic_key.as_str())),
        "the Anthropic key was really sent to the provider"
    );
    let id = debate_ids[0].clone();
    assert!(!id.is_empty(), "{}", captured.text);

    // Wrong credentials, and credentials in query strings and cookies, through the gateway and
    // straight at the engine.
    let engine = format!("http://127.0.0.1:{}", up.api);
    let plain = reqwest::Client::new();
    for (client, base) in [(&up.client, up.base.as_str()), (&plain, engine.as_str())] {
        let response = client
            .get(format!("{base}/api/system/faults"))
            .bearer_auth(&secrets.wrong_bearer)
            .header("cookie", format!("session={}", secrets.cookie))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "a wrong admin token at {base}");
        let headers = format!("{:?}", response.headers());
        captured.add(
            format!("401 from {base}"),
            format!("{headers}\n{}", response.text().await.unwrap()),
        );
        let share = format!(
            "{base}/api/debates/{id}?token={}&api_key={}",
            secrets.share_token, secrets.query_api_key
        );
        let response = client
            .get(&share)
            .header("cookie", format!("session={}", secrets.cookie))
            .send()
            .await
            .unwrap();
        captured.add(
            format!("share link at {base}"),
            format!("{} {}", response.status(), response.text().await.unwrap()),
        );
        let (status, body) = get_json(
            client,
            &format!("{base}/api/nowhere?token={}", secrets.share_token),
        )
        .await;
        assert_eq!(status, 404);
        captured.add(format!("404 at {base}"), body.to_string());
    }
    // Real credentials: an API key made through the API, a JWT minted with it, both used
    // through the gateway, the key revoked and refused; neither may appear anywhere after.
    let admin = |request: reqwest::RequestBuilder| request.bearer_auth(&secrets.api_token);
    let created = fetch_json(
        admin(up.client.post(format!("{}/api/auth/api-key", up.base)))
            .json(&serde_json::json!({"name": "secrets-scenario", "role": "operator"})),
    )
    .await;
    let api_key = created["key"]
        .as_str()
        .expect("the key, shown once")
        .to_string();
    let key_id = created["id"].as_str().unwrap().to_string();
    let me = fetch_json(
        up.client
            .get(format!("{}/api/auth/me", up.base))
            .bearer_auth(&api_key),
    )
    .await;
    assert_eq!(me["role"], "operator", "{me}");
    captured.add("GET /api/auth/me with the API key", me.to_string());
    let minted = fetch_json(
        up.client
            .post(format!("{}/api/auth/token", up.base))
            .bearer_auth(&api_key)
            .json(&serde_json::json!({"role": "reader"})),
    )
    .await;
    let jwt = minted["token"].as_str().expect("a JWT").to_string();
    let (status, listed) = {
        let response = up
            .client
            .get(format!("{}/api/debates?limit=5", up.base))
            .bearer_auth(&jwt)
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    };
    assert_eq!(status, 200, "the minted JWT reads debates: {listed}");
    captured.add("debates listed with the JWT", listed);
    let keys = admin(up.client.get(format!("{}/api/auth/api-keys", up.base)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    captured.add("GET /api/auth/api-keys", keys);
    let revoked = admin(
        up.client
            .delete(format!("{}/api/auth/api-key/{key_id}", up.base)),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(revoked.status(), 200);
    captured.add("the revocation", revoked.text().await.unwrap());
    let refused = up
        .client
        .get(format!("{}/api/auth/me", up.base))
        .bearer_auth(&api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "the revoked key is refused");
    captured.add("the revoked key's 401", refused.text().await.unwrap());
    let issued = [
        Secret {
            name: "an API key",
            value: api_key,
        },
        Secret {
            name: "a minted JWT",
            value: jwt,
        },
    ];

    // A browser's WebSocket with its token in the query, left idle until the gateway cuts it.
    let cert = std::fs::read(up.dir.path().join("tls").join("cert.pem")).unwrap();
    let connector = crate::support::tls_connector_trusting(&cert);
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", up.https))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let ws_url = format!(
        "wss://127.0.0.1:{}/ws?debate_id={id}&token={}",
        up.https, secrets.share_token
    );
    match tokio_tungstenite::client_async(ws_url, tls).await {
        Ok((mut socket, _)) => {
            let mut frames = Vec::new();
            let ended = tokio::time::timeout(Duration::from_secs(20), async {
                while let Some(Ok(frame)) = socket.next().await {
                    frames.push(frame.to_string());
                }
            })
            .await;
            assert!(
                ended.is_ok(),
                "the idle WebSocket was not cut (ARAGORA_WS_IDLE_TIMEOUT=1)"
            );
            captured.add("WebSocket frames", frames.join("\n"));
        }
        // An engine that does not take `token` yet refuses the upgrade (400, naming the
        // parameter, not its value); the gateway saw the request line with it all the same.
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            captured.add(
                "WebSocket refusal",
                format!("{} {}", response.status(), String::from_utf8_lossy(&body)),
            );
        }
        Err(err) => panic!("a WebSocket through the gateway: {err}"),
    }

    // What operators and scrapers read.
    for url in [
        format!("{}/api/health", up.base),
        format!("{}/api/health/db", up.base),
        format!("{}/api/drills", up.base),
        format!("{}/api/slo", up.base),
        format!("{}/api/agents", up.base),
        format!("{engine}/metrics"),
        format!("http://127.0.0.1:{}/metrics", up.admin),
        format!("http://127.0.0.1:{}/api/system/upstreams", up.admin),
    ] {
        let response = plain_or_tls(&up, &plain, &url).await;
        captured.add(&url, response);
    }

    // A bad value beside the secrets: validate-env (text and JSON) names it and says nothing
    // of the secrets, yet really connected with them.
    let bad_rounds = with(&cli_env, "ARAGORA_DEFAULT_ROUNDS", "99");
    let checked = aragora(&["validate-env"], &bad_rounds).await;
    captured.output("validate-env (bad rounds)", &checked);
    assert_eq!(checked.status.code(), Some(78));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(text.contains("ARAGORA_DEFAULT_ROUNDS"), "{text}");
    assert!(text.contains("✓ Database: PostgreSQL"), "{text}");
    assert!(text.contains("✓ Redis: connected"), "{text}");
    // A Redis URL of the wrong scheme, its password inside: refused by validate-env and by a
    // start, both quoting the URL without it.
    let bad_redis = with(
        &cli_env,
        "ARAGORA_REDIS_URL",
        &format!(
            "http://{}:{}@127.0.0.1:6379",
            secrets.redis_user, secrets.redis_password
        ),
    );
    let checked = aragora(&["validate-env", "--output", "json"], &bad_redis).await;
    captured.output("validate-env --output json (bad Redis URL)", &checked);
    assert_eq!(checked.status.code(), Some(78));
    let report = json_of(&checked);
    assert!(
        report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["setting"] == "ARAGORA_REDIS_URL"
                && p["message"].as_str().unwrap().contains(":***@")),
        "{report:#}"
    );
    let refused = aragora(&["serve", "--api-port", "0", "--ws-port", "0"], &bad_redis).await;
    captured.output("serve (bad Redis URL)", &refused);
    assert_eq!(refused.status.code(), Some(78));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("ARAGORA_REDIS_URL"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // A backup and a drill of the live PostgreSQL database.
    let backup = aragora(&["backup", "create", "--output", "json"], &cli_env).await;
    captured.output("backup create", &backup);
    assert!(backup.status.success(), "{}", captured.text);
    assert!(json_of(&backup)["backup"]["id"].is_string());
    let drill = aragora(&["drill", "run", "--output", "json"], &cli_env).await;
    captured.output("drill run", &drill);
    let report = json_of(&drill);
    assert_eq!(report["status"], "passed", "{report:#}");
    assert_eq!(report["receipts_verified"], 2, "{report:#}");
    let history = aragora(&["drill", "history", "--output", "json"], &cli_env).await;
    captured.output("drill history", &history);

    // Shutdown, then everything the processes left.
    up.signal(libc::SIGTERM);
    let status = up.wait_exit(Duration::from_secs(60)).await;
    assert!(status.success(), "{}", up.log_text());
    let log = up.log_text();
    assert!(
        log.contains("listening") && log.contains("stopped"),
        "the whole life is in the log: {log}"
    );
    captured.files(up.dir.path());
    assert!(
        captured.text.contains("up.log") && captured.text.contains("backups"),
        "the data directory's files were read"
    );
    let mut all = secrets.all();
    all.extend(issued);
    assert_no_secret(&captured.text, &all);
}

/// The body of a GET, through the gateway's TLS client for its URLs, plain HTTP otherwise.
async fn plain_or_tls(up: &UpProcess, plain: &reqwest::Client, url: &str) -> String {
    let client = if url.starts_with("https://") {
        &up.client
    } else {
        plain
    };
    let response = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err}"));
    format!("{} {}", response.status(), response.text().await.unwrap())
}
