//! Bad configuration is refused before anything starts, with every problem of every part listed
//! at once; `validate-env` is that start minus the binding, as a checklist.

use crate::support::{aragora_command, TestDatabase};
use std::net::TcpListener;
use std::process::Output;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    run_in(dir.path(), args, env)
}

/// [`run`] on a data directory the caller keeps.
fn run_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = aragora_command();
    command
        .args(args)
        .env("ARAGORA_DATA_DIR", dir)
        .env("ARAGORA_HOST", "127.0.0.1")
        .env("ARAGORA_PORT", "0")
        .env("ARAGORA_WS_PORT", "0")
        .stdin(std::process::Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run aragora")
}

const BAD: &[(&str, &str)] = &[
    ("ARAGORA_JWT_SECRET", "too-short"),
    ("ARAGORA_ALLOWED_ORIGINS", "https://app.example.com,*"),
    ("ARAGORA_DEFAULT_ROUNDS", "99"),
    ("ARAGORA_MAX_CONCURRENT_DEBATES", "lots"),
];

fn assert_lists_every_problem(output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(78),
        "exit code for bad config; stderr:\n{stderr}"
    );
    assert!(stderr.contains("4 problem(s)"), "{stderr}");
    for (setting, _) in BAD {
        assert!(
            stderr.contains(setting),
            "{setting} not reported:\n{stderr}"
        );
    }
    assert!(
        stderr.contains("at least 32"),
        "says how long the secret must be:\n{stderr}"
    );
    assert!(stderr.contains("wildcard"), "{stderr}");
}

#[test]
fn serve_refuses_to_start_on_bad_config_and_says_everything_wrong() {
    let output = run(&["serve"], BAD);
    assert_lists_every_problem(&output);
    assert!(String::from_utf8_lossy(&output.stderr).contains("refusing to start"));
    assert!(output.stdout.is_empty(), "nothing was bound or announced");
}

#[test]
fn validate_env_reports_the_same_problems() {
    assert_lists_every_problem(&run(&["validate-env"], BAD));
}

#[test]
fn validate_env_accepts_good_config_and_checks_postgres_is_reachable() {
    let good = run(
        &["validate-env"],
        &[("ARAGORA_JWT_SECRET", &"s".repeat(40))],
    );
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(String::from_utf8_lossy(&good.stdout).contains("valid"));

    let unreachable = run(
        &["validate-env"],
        &[
            ("ARAGORA_DB_BACKEND", "postgres"),
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none"),
        ],
    );
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert_eq!(unreachable.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("DATABASE_URL") && stderr.contains("unreachable"),
        "{stderr}"
    );

    let reachable = run(
        &["validate-env"],
        &[
            ("ARAGORA_DB_BACKEND", "postgres"),
            ("DATABASE_URL", &crate::support::postgres_admin_url()),
        ],
    );
    assert!(
        reachable.status.success(),
        "{}",
        String::from_utf8_lossy(&reachable.stderr)
    );
}

#[test]
fn a_config_file_with_a_typo_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("aragora.toml");
    std::fs::write(&file, "api_port = 9000\ndefault_round = 2\n").unwrap();
    let output = run(&["serve", "--config", file.to_str().unwrap()], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("default_round"),
        "names the unknown key: {stderr}"
    );
}

#[test]
fn a_port_in_use_is_named_with_what_to_do() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = run(&["serve", "--api-port", &port], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("REST API"),
        "{stderr}"
    );
    assert!(
        stderr.contains("ARAGORA_PORT"),
        "says which setting moves it: {stderr}"
    );
}

#[test]
fn the_readme_documents_every_setting() {
    let readme = include_str!("../../README.md");
    for setting in crate::support::settings::all_settings() {
        assert!(
            readme.contains(&format!("| `{}` |", setting.key)),
            "README lacks key {}",
            setting.key
        );
        for env in setting.env {
            assert!(readme.contains(&format!("`{env}`")), "README lacks {env}");
        }
    }
}

#[test]
fn the_readme_says_which_gateway_settings_need_a_restart() {
    let readme = include_str!("../../README.md");
    for setting in aragora_gateway::SETTINGS {
        let row = format!("| `{}` | `{}`", setting.key, setting.name());
        let line = readme
            .lines()
            .find(|line| line.starts_with(&row))
            .unwrap_or_else(|| panic!("README has no row {row}"));
        assert_eq!(
            line.contains("Restart to change."),
            setting.restart,
            "the README and the `restart` marker disagree on {}",
            setting.key
        );
    }
}

#[test]
fn bad_backup_and_drill_settings_are_refused_by_every_command() {
    let bad = [
        ("ARAGORA_BACKUP_SCHEDULE", "every five minutes"),
        ("ARAGORA_BACKUP_KEEP_COUNT", "0"),
    ];
    for args in [
        &["validate-env"][..],
        &["serve"],
        &["backup", "create"],
        &["drill", "run"],
    ] {
        let output = run(args, &bad);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(78), "{args:?}: {stderr}");
        assert!(
            stderr.contains("ARAGORA_BACKUP_SCHEDULE") && stderr.contains("sec min hour"),
            "{args:?} says how to write a schedule: {stderr}"
        );
        assert!(
            stderr.contains("ARAGORA_BACKUP_KEEP_COUNT"),
            "{args:?}: {stderr}"
        );
    }
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn validate_env_reports_a_gateway_an_slo_and_an_engine_problem_together() {
    let output = run(
        &["validate-env"],
        &[
            ("ARAGORA_GATEWAY_THREADS", "0"),
            ("SLO_AVAILABILITY_TARGET", "most"),
            ("ARAGORA_DEFAULT_ROUNDS", "99"),
        ],
    );
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(78), "{stdout}{stderr}");
    assert!(stderr.contains("3 problem(s)"), "{stderr}");
    for setting in [
        "ARAGORA_GATEWAY_THREADS",
        "SLO_AVAILABILITY_TARGET",
        "ARAGORA_DEFAULT_ROUNDS",
    ] {
        assert!(
            stderr.contains(setting),
            "{setting} not reported:\n{stderr}"
        );
    }
    assert!(stdout.contains("✗ Configuration: 3 problem(s)"), "{stdout}");
    assert!(
        stdout.lines().last().unwrap_or("").starts_with('✗'),
        "{stdout}"
    );

    // `up` refuses on the same three, in one run, before binding anything.
    let up = run(
        &["up"],
        &[
            ("ARAGORA_GATEWAY_THREADS", "0"),
            ("SLO_AVAILABILITY_TARGET", "most"),
            ("ARAGORA_DEFAULT_ROUNDS", "99"),
        ],
    );
    let (stdout, stderr) = text(&up);
    assert_eq!(up.status.code(), Some(78), "{stdout}{stderr}");
    assert!(stderr.contains("3 problem(s)"), "{stderr}");
    assert!(
        stdout.is_empty(),
        "nothing was bound or announced: {stdout}"
    );
}

/// A configuration that touches everything validate-env can check: a fresh PostgreSQL
/// database, the real Redis, a provider key, a certificate and a signing key.
fn everything(db: &TestDatabase, tls: &std::path::Path) -> Vec<(&'static str, String)> {
    let (cert, key) = aragora_gateway::tls::self_signed(tls).expect("a self-signed pair");
    vec![
        ("ARAGORA_DB_BACKEND", "postgres".into()),
        ("DATABASE_URL", db.url.clone()),
        ("ARAGORA_REDIS_URL", "redis://127.0.0.1:6379/0".into()),
        ("ANTHROPIC_API_KEY", SECRET_KEY.into()),
        ("ARAGORA_RECEIPT_SIGNING_KEY", SECRET_SIGNING_KEY.into()),
        ("ARAGORA_JWT_SECRET", SECRET_JWT.into()),
        ("ARAGORA_TLS_CERT", cert.display().to_string()),
        ("ARAGORA_TLS_KEY", key.display().to_string()),
    ]
}

const SECRET_KEY: &str = "sk-ant-test-never-printed-0123456789";
const SECRET_SIGNING_KEY: &str = "signing-key-never-printed-0123456789abcdef";
const SECRET_JWT: &str = "jwt-secret-never-printed-0123456789abcdef";

fn assert_no_secret(output: &Output) {
    let (stdout, stderr) = text(output);
    for secret in [SECRET_KEY, SECRET_SIGNING_KEY, SECRET_JWT] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "a secret reached the output:\n{stdout}{stderr}"
        );
    }
}

#[tokio::test]
async fn validate_env_prints_a_line_per_check_against_the_real_postgres_and_redis() {
    let db = TestDatabase::create().await;
    let tls = tempfile::tempdir().unwrap();
    let env = everything(&db, tls.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let output = run(&["validate-env"], &env);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?}:\n{stdout}"))
            .to_string()
    };
    assert_eq!(line("✓ Environment"), "✓ Environment: development");
    assert!(line("✓ Configuration:").contains("valid"), "{stdout}");
    let database = line("✓ Database: PostgreSQL ");
    assert!(
        database.contains(&db.name) && database.ends_with(" ms)"),
        "backend, server version, latency: {database}"
    );
    assert!(
        !database.contains("postgres@"),
        "no credentials: {database}"
    );
    assert!(line("✓ Redis: connected").contains("(version "), "{stdout}");
    assert!(
        line("✓ AI provider: anthropic configured").contains("ANTHROPIC_API_KEY set"),
        "{stdout}"
    );
    assert!(
        line("✓ TLS certificate: ").contains("days to expiry"),
        "{stdout}"
    );
    assert_eq!(
        line("✓ Receipt signing key"),
        format!(
            "✓ Receipt signing key: configured ({} characters)",
            SECRET_SIGNING_KEY.len()
        )
    );
    assert_eq!(
        stdout.lines().last(),
        Some("✓ Configuration is valid: every part would start"),
        "one verdict, last: {stdout}"
    );
    assert!(
        stdout.lines().all(|line| line.starts_with('✓')),
        "every check passed: {stdout}"
    );
    assert_no_secret(&output);
}

#[tokio::test]
async fn validate_env_speaks_json_for_scripts() {
    let db = TestDatabase::create().await;
    let tls = tempfile::tempdir().unwrap();
    let env = everything(&db, tls.path());
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let output = run(&["validate-env", "--output", "json"], &env);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(report["verdict"], "valid", "{report:#}");
    assert_eq!(report["problems"], serde_json::json!([]), "{report:#}");
    let checks = report["checks"].as_array().unwrap();
    for name in [
        "Environment",
        "Configuration",
        "Database",
        "Redis",
        "AI provider",
        "TLS certificate",
    ] {
        let check = checks
            .iter()
            .find(|check| check["name"] == name)
            .unwrap_or_else(|| panic!("no {name} check: {report:#}"));
        assert_eq!(check["ok"], true, "{check}");
        assert!(check["detail"].is_string(), "{check}");
    }
    assert_no_secret(&output);

    // A problem of each kind: one the settings say, one the database says.
    env.retain(|(key, _)| *key != "DATABASE_URL");
    env.push((
        "DATABASE_URL",
        "postgres://postgres:hunter2-never-printed@127.0.0.1:1/none",
    ));
    env.push(("ARAGORA_GATEWAY_THREADS", "0"));
    let output = run(&["validate-env", "--output", "json"], &env);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(78), "{stdout}{stderr}");
    assert!(!stdout.contains("hunter2-never-printed"), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(report["verdict"], "invalid");
    let settings: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|problem| problem["setting"].as_str().unwrap())
        .collect();
    assert_eq!(
        settings,
        ["ARAGORA_GATEWAY_THREADS", "DATABASE_URL"],
        "{report:#}"
    );
    let database = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == "Database")
        .unwrap();
    assert_eq!(database["ok"], false, "{database}");
    assert_no_secret(&output);
}

/// validate-env reads the schema a start would find, writing nothing: pending migrations are
/// said with what applies them (the start, or `migrate up` first without ARAGORA_AUTO_MIGRATE),
/// up to date after `migrate up`, and a schema newer than the binary is refused as `serve` would.
#[test]
fn validate_env_reports_the_schema_a_start_would_find() {
    let dir = tempfile::tempdir().unwrap();
    let schema = |env: &[(&str, &str)]| {
        let output = run_in(dir.path(), &["validate-env", "--output", "json"], env);
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
                panic!(
                    "not JSON ({err}): {}",
                    String::from_utf8_lossy(&output.stdout)
                )
            });
        let check = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "Schema")
            .cloned()
            .unwrap_or_else(|| panic!("no Schema line: {report}"));
        (output.status.code(), check, report)
    };
    let latest =
        aragora_engine::store::SqlStore::latest_schema_version(aragora_engine::DbBackend::Sqlite);

    let (code, fresh, report) = schema(&[]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(fresh["ok"], true, "{fresh}");
    let detail = fresh["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("{latest} pending")), "{detail}");
    assert!(
        !dir.path().join("aragora.db").exists(),
        "validate-env created the database"
    );

    // Without auto-migration the start would refuse pending migrations: said, with the step
    // that applies them, but a deployment's state, not a configuration problem.
    let (code, pending, report) = schema(&[("ARAGORA_AUTO_MIGRATE", "false")]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(pending["ok"], true, "{pending}");
    let detail = pending["detail"].as_str().unwrap();
    assert!(
        detail.contains("ARAGORA_AUTO_MIGRATE is false") && detail.contains("aragora migrate up"),
        "{detail}"
    );

    let up = run_in(dir.path(), &["migrate", "up"], &[]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let (code, current, report) = schema(&[("ARAGORA_AUTO_MIGRATE", "false")]);
    assert_eq!(code, Some(0), "{report}");
    let detail = current["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("at version {latest}, up to date")),
        "{detail}"
    );

    // A newer release migrated this database: a start would refuse it, so validate-env does.
    let db = dir.path().join("aragora.db");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from the future', 1, x'00', 1)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    });
    let (code, newer, report) = schema(&[]);
    assert_eq!(code, Some(78), "{report}");
    assert_eq!(newer["ok"], false, "{newer}");
    assert!(
        newer["detail"]
            .as_str()
            .unwrap()
            .contains("newer than this binary"),
        "{newer}"
    );
}
