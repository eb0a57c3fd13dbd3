//! `aragora slo check` and `aragora slo generate`: exit codes, messages and files.

use crate::support::aragora_command;
use std::path::Path;
use std::process::Output;

fn slo(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = aragora_command();
    command
        .arg("slo")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("SLO_AVAILABILITY_TARGET")
        .env_remove("SLO_LATENCY_P99_TARGET_MS")
        .env_remove("SLO_DEBATE_SUCCESS_TARGET")
        .stdin(std::process::Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run aragora")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn check_accepts_every_shipped_spec() {
    for spec in [
        "slo/specs/aragora.yaml",
        "slo/specs/examples/sloth.yaml",
        "slo/specs/examples/openslo.yaml",
    ] {
        let output = slo(&["check", "--spec", spec], &[]);
        assert!(output.status.success(), "{spec}: {}", text(&output));
        assert!(text(&output).contains("availability, latency, debate-success"));
    }
}

#[test]
fn check_lists_every_problem_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("bad.yaml");
    std::fs::write(
        &spec,
        "version: aragora/v1\nservice: aragora\nslos:\n  - name: latency\n    objective: 100\n    sli:\n      latency: {metric: aragora_request_latency_seconds, threshold_ms: 450}\n",
    )
    .unwrap();
    let output = slo(&["check", "--spec", spec.to_str().unwrap()], &[]);
    let text = text(&output);
    assert_eq!(output.status.code(), Some(78), "{text}");
    assert!(text.contains("2 problem(s)"), "{text}");
    assert!(text.contains("objective 100 is outside (0, 100)"), "{text}");
    assert!(text.contains("use 300 ms or 500 ms"), "{text}");
}

#[test]
fn generate_applies_the_environment_to_the_default_slos() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let output = slo(
        &["generate", "--out", out],
        &[
            ("SLO_AVAILABILITY_TARGET", "99.5"),
            ("SLO_LATENCY_P99_TARGET_MS", "200"),
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    let rules = std::fs::read_to_string(Path::new(out).join("slo-rules.yaml")).unwrap();
    assert!(rules.contains("sloth_objective: '99.5'"), "{rules}");
    assert!(rules.contains("le=\"0.2\""), "{rules}");
    let refused = slo(
        &["generate", "--out", out],
        &[("SLO_LATENCY_P99_TARGET_MS", "450")],
    );
    assert_eq!(refused.status.code(), Some(78));
    assert!(text(&refused).contains("le=\"0.45\""), "{}", text(&refused));
}
