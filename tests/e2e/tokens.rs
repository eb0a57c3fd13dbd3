//! `aragora token` against the real database (SQLite in a data directory, a PostgreSQL database
//! per test) and a real engine: a key the CLI creates authenticates, a revoked one stops, a loop
//! token it mints is an admin, and `--loop` without `ARAGORA_API_TOKEN` is refused with 78.

use crate::support::{command_on, Backend, Engine, EngineOptions};
use reqwest::StatusCode;
use serde_json::Value;
use std::path::Path;
use std::process::Output;

const API_TOKEN: &str = "token-cli-test-admin-token-0123456789";

/// Runs `aragora token ARGS` on the database `options` and `data_dir` name.
pub fn token_cli(options: &EngineOptions, data_dir: &Path, args: &[&str]) -> Output {
    command_on(options, data_dir)
        .arg("token")
        .args(args)
        .output()
        .expect("aragora token runs")
}

fn succeeded(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn json_of(output: &Output, what: &str) -> Value {
    serde_json::from_str(&succeeded(output, what)).unwrap()
}

async fn me(engine: &Engine, credential: &str) -> (StatusCode, Value) {
    let response = engine
        .http
        .get(engine.url("/api/auth/me"))
        .bearer_auth(credential)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn keys_the_cli_creates_authenticate_until_revoked(options: EngineOptions) {
    let dir = tempfile::tempdir().unwrap();
    let options = options
        .env("ARAGORA_API_TOKEN", API_TOKEN)
        // A revocation takes effect at once here, so the test can see it without waiting.
        .env("ARAGORA_API_KEY_CACHE_SECONDS", 0)
        .data_dir(dir.path());

    let text = succeeded(
        &token_cli(
            &options,
            dir.path(),
            &[
                "create", "--role", "operator", "--ttl", "30d", "--name", "ci",
            ],
        ),
        "token create",
    );
    let key = text
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("ara_") && !line.contains(' '))
        .unwrap_or_else(|| panic!("no key in: {text}"))
        .to_string();
    assert!(text.contains("will not be shown again"), "{text}");
    assert!(
        text.contains(&format!("curl -H \"Authorization: Bearer {key}\"")),
        "{text}"
    );

    let listed = json_of(
        &token_cli(&options, dir.path(), &["list", "--output", "json"]),
        "token list",
    );
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{listed}");
    let entry = &keys[0];
    assert!(
        key.starts_with(entry["prefix"].as_str().unwrap()),
        "{entry}"
    );
    assert_eq!(
        (
            &entry["name"],
            &entry["role"],
            &entry["created_by"],
            &entry["state"]
        ),
        (
            &"ci".into(),
            &"operator".into(),
            &"cli".into(),
            &"active".into()
        )
    );
    assert!(
        !listed.to_string().contains(&key[17..]),
        "the listing shows the secret"
    );
    let table = succeeded(&token_cli(&options, dir.path(), &["list"]), "token list");
    assert!(
        table.contains("PREFIX") && table.contains("operator"),
        "{table}"
    );

    let cli = same_database(&options);
    let engine = Engine::start(options).await;
    let (status, who) = me(&engine, &key).await;
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["role"], "operator", "{who}");

    let prefix = entry["prefix"].as_str().unwrap();
    let revoked = succeeded(
        &token_cli(&cli, dir.path(), &["revoke", prefix]),
        "token revoke",
    );
    assert!(
        revoked.contains("ARAGORA_API_KEY_CACHE_SECONDS"),
        "{revoked}"
    );
    let (status, body) = me(&engine, &key).await;
    assert_eq!(status, 401, "a revoked key still works: {body}");

    let listed = json_of(
        &token_cli(&cli, dir.path(), &["list", "--output", "json"]),
        "token list",
    );
    assert_eq!(listed["keys"][0]["state"], "revoked", "{listed}");
    drop(engine);
}

/// Options naming the same database and environment, for the CLI beside a started engine.
fn same_database(options: &EngineOptions) -> EngineOptions {
    let base = match &options.backend {
        Backend::Sqlite => EngineOptions::sqlite(),
        Backend::Postgres(url) => EngineOptions::postgres(url),
    };
    EngineOptions {
        env: options.env.clone(),
        ..base
    }
}

on_both_backends!(keys_the_cli_creates_authenticate_until_revoked);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_token_from_the_cli_is_an_admin_and_needs_the_api_token() {
    let dir = tempfile::tempdir().unwrap();
    let options = EngineOptions::sqlite()
        .env("ARAGORA_API_TOKEN", API_TOKEN)
        .data_dir(dir.path());
    let minted = json_of(
        &token_cli(
            &options,
            dir.path(),
            &[
                "create", "--loop", "admin", "--ttl", "1h", "--output", "json",
            ],
        ),
        "token create --loop",
    );
    let token = minted["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("admin:"), "{minted}");

    let engine = Engine::start(options).await;
    let (status, who) = me(&engine, &token).await;
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["role"], "admin", "{who}");

    let mut unset = EngineOptions::sqlite();
    unset.env.remove("ARAGORA_API_TOKEN");
    let refused = token_cli(
        &unset,
        dir.path(),
        &["create", "--loop", "admin", "--ttl", "1h"],
    );
    assert_eq!(refused.status.code(), Some(78), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("ARAGORA_API_TOKEN"),
        "{refused:?}"
    );
}

#[test]
fn bad_lifetimes_roles_and_ids_are_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let options = EngineOptions::sqlite();
    for args in [
        &[
            "create", "--role", "operator", "--ttl", "5x", "--name", "ci",
        ][..],
        &[
            "create", "--role", "operator", "--ttl", "400d", "--name", "ci",
        ],
        &["create", "--role", "root", "--name", "ci"],
        &["create", "--role", "reader"],
        &["revoke", "not-a-key"],
    ] {
        let output = token_cli(&options, dir.path(), args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(!output.stderr.is_empty(), "{args:?} said nothing");
    }
}

#[test]
fn a_jwt_needs_the_jwt_secret() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "create", "--jwt", "--role", "reader", "--sub", "alice", "--output", "json",
    ];
    let mut unset = EngineOptions::sqlite();
    unset.env.remove("ARAGORA_JWT_SECRET");
    let refused = token_cli(&unset, dir.path(), &args);
    assert_eq!(refused.status.code(), Some(78), "{refused:?}");
    let options = EngineOptions::sqlite().env("ARAGORA_JWT_SECRET", "j".repeat(40));
    let minted = json_of(
        &token_cli(&options, dir.path(), &args),
        "token create --jwt",
    );
    assert_eq!(minted["token"].as_str().unwrap().matches('.').count(), 2);
}
