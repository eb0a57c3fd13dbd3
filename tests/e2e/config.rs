//! Bad configuration is refused before anything starts, with every problem listed at once.

use crate::support::aragora_command;
use std::net::TcpListener;
use std::process::Output;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut command = aragora_command();
    command
        .args(args)
        .env("ARAGORA_DATA_DIR", dir.path())
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
    for setting in aragora_engine::config::SETTINGS
        .iter()
        .chain(aragora_gateway::SETTINGS)
        .chain(aragora_chaos::SETTINGS)
        .chain(aragora_chaos::experiment::scheduled::SETTINGS)
    {
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
