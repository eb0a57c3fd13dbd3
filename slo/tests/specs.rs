//! The three spec formats, and what `check` says of bad specs.

use aragora_slo::generate::SLO_RULES;
use aragora_slo::spec::parse;
use aragora_slo::{check, SloError, SloSettings, SloSpec};
use std::collections::HashMap;
use std::path::Path;

fn spec_file(relative: &str) -> SloSpec {
    aragora_slo::load_spec(&Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)).unwrap()
}

fn slo_rules(spec: &SloSpec) -> String {
    aragora_slo::generate(spec, &SloSettings::default())
        .unwrap()
        .into_iter()
        .find(|file| file.name == SLO_RULES)
        .unwrap()
        .text
}

#[test]
fn the_shipped_spec_is_the_default_slos() {
    let defaults = SloSettings::from_env(&HashMap::new())
        .unwrap()
        .default_spec();
    assert_eq!(spec_file("specs/aragora.yaml"), defaults);
    assert!(check(&defaults).is_empty(), "{:?}", check(&defaults));
}

#[test]
fn sloth_and_openslo_specs_of_the_same_slos_give_the_same_rules() {
    let own = slo_rules(&spec_file("specs/aragora.yaml"));
    assert!(own.contains("slo:sli_error:ratio_rate30d"));
    assert_eq!(slo_rules(&spec_file("specs/examples/sloth.yaml")), own);
    assert_eq!(slo_rules(&spec_file("specs/examples/openslo.yaml")), own);
}

/// The messages of every problem of a spec in the project's format.
fn problems(yaml: &str) -> Vec<String> {
    check(&parse(yaml).unwrap())
        .iter()
        .map(ToString::to_string)
        .collect()
}

const HEADER: &str = "version: aragora/v1\nservice: aragora\nslos:\n";

#[test]
fn check_reports_every_problem_at_once_with_its_fix() {
    let spec = format!(
        "{HEADER}  - name: availability
    objective: 100
    sli:
      requests: {{metric: aragora_http_requests_total, selector: 'component=\"gateway\"', error: 'status=~\"5..\"'}}
  - name: latency
    objective: 99
    period: 2d
    sli:
      latency: {{metric: aragora_request_latency_seconds, threshold_ms: 450}}
  - name: made-up
    objective: 99
    sli:
      events:
        error_query: sum(rate(aragora_requests_total[{{{{.window}}}}]))
        total_query: sum(rate(aragora_http_requests_total[5m]))
"
    );
    let problems = problems(&spec);
    let expect = [
        ("\"availability\"", "objective 100 is outside (0, 100)"),
        ("\"latency\"", "period 2d does not fit"),
        (
            "\"latency\"",
            "le=\"0.45\" (a latency threshold of 450 ms) is not a bucket boundary of aragora_request_latency_seconds",
        ),
        ("\"latency\"", "use 300 ms or 500 ms"),
        (
            "\"made-up\"",
            "names aragora_requests_total, which aragora does not export",
        ),
        ("\"made-up\"", "did you mean aragora_http_requests_total?"),
        ("\"made-up\"", "has a fixed range [5m]; use [{{.window}}]"),
    ];
    for (slo, message) in expect {
        assert!(
            problems
                .iter()
                .any(|problem| problem.contains(slo) && problem.contains(message)),
            "no problem of {slo} saying {message:?} in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), 6, "{problems:#?}");
}

#[test]
fn a_query_without_the_window_placeholder_is_refused() {
    let spec = format!(
        "{HEADER}  - name: raw\n    objective: 99\n    sli:\n      raw:\n        error_ratio_query: aragora_ready\n"
    );
    let problems = problems(&spec);
    assert!(
        problems[0].contains("no {{.window}} placeholder"),
        "{problems:?}"
    );
}

#[test]
fn generate_refuses_an_invalid_spec_with_its_problems() {
    let spec = parse(&format!(
        "{HEADER}  - name: Bad Name\n    objective: 0\n    sli:\n      requests: {{metric: aragora_debates_total, error: 'outcome=\"failed\"'}}\n"
    ))
    .unwrap();
    let err = aragora_slo::generate(&spec, &SloSettings::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, SloError::Invalid(ref p) if p.len() == 2),
        "{text}"
    );
    assert!(
        text.contains("lower-case letters") && text.contains("objective 0"),
        "{text}"
    );
}

#[test]
fn unreadable_specs_say_what_format_is_expected() {
    let unknown = parse("version: v9\nservice: x\n").unwrap_err().to_string();
    assert!(unknown.contains("version: aragora/v1"), "{unknown}");
    let own_only = parse(
        "version: prometheus/v1\nservice: x\nslos:\n  - name: a\n    objective: 99\n    sli:\n      latency: {metric: m, threshold_ms: 500}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(own_only.contains("use `version: aragora/v1`"), "{own_only}");
    let calendar = parse(
        "apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: a}\nspec:\n  service: x\n  indicatorRef: s\n  timeWindow: [{duration: 1M, isRolling: false}]\n  budgetingMethod: Occurrences\n  objectives: [{target: 0.99}]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(calendar.contains("isRolling: true"), "{calendar}");
    let typo = parse("version: aragora/v1\nservice: x\nslos: []\nlabel: {}\n")
        .unwrap_err()
        .to_string();
    assert!(typo.contains("unknown field `label`"), "{typo}");
}

#[test]
fn a_sloth_spec_of_another_service_passes_with_a_note_per_foreign_metric() {
    let spec = spec_file("specs/examples/sloth-other-service.yaml");
    let review = aragora_slo::check::review(&spec);
    assert!(review.problems.is_empty(), "{:#?}", review.problems);
    let notes: Vec<String> = review.notes.iter().map(ToString::to_string).collect();
    assert_eq!(
        notes.len(),
        2,
        "one note per metric, however many queries: {notes:#?}"
    );
    assert!(
        notes[0].starts_with("http_requests_total is not an aragora metric"),
        "{notes:#?}"
    );
    assert!(
        notes[1].starts_with("http_request_duration_seconds is not an aragora metric"),
        "{notes:#?}"
    );
    // Its latency bound is left for a Prometheus to check.
    assert_eq!(
        review.foreign_buckets.len(),
        1,
        "{:?}",
        review.foreign_buckets
    );
    assert_eq!(
        review.foreign_buckets[0].metric,
        "http_request_duration_seconds"
    );
    assert_eq!(review.foreign_buckets[0].bound, "0.25");
    let rules = slo_rules(&spec);
    assert!(rules.contains("sloth_service: myservice"), "{rules}");
    assert!(
        rules.contains("http_requests_total{job=\"myservice\",code=~\"(5..|429)\"}[5m]"),
        "{rules}"
    );
}

#[test]
fn an_exporter_metric_is_noted_as_that_exporters_not_as_a_problem() {
    let spec = parse(
        "version: prometheus/v1\nservice: db\nslos:\n  - name: connections\n    objective: 99\n    sli:\n      events:\n        error_query: sum(rate(pg_stat_database_xact_rollback[{{.window}}]))\n        total_query: sum(rate(pg_stat_database_xact_commit[{{.window}}]))\n    alerting: {name: DbRollbacks}\n",
    )
    .unwrap();
    let review = check::review(&spec);
    assert!(review.problems.is_empty(), "{:#?}", review.problems);
    let notes: Vec<String> = review.notes.iter().map(ToString::to_string).collect();
    assert_eq!(notes.len(), 2, "{notes:#?}");
    assert!(
        notes[0].starts_with("pg_stat_database_xact_rollback is not an aragora metric")
            && notes[0].contains("postgres_exporter (Debian package prometheus-postgres-exporter)")
            && !notes[0].contains("your service"),
        "{notes:#?}"
    );
}

#[test]
fn a_foreign_threshold_between_buckets_names_the_bounds_either_side() {
    let bucket = aragora_slo::check::ForeignBucket {
        slo: "requests-latency".into(),
        metric: "http_request_duration_seconds".into(),
        bound: "0.3".into(),
    };
    let bounds = [0.1, 0.25, 0.5, 1.0];
    let problem =
        aragora_slo::check::foreign_bucket_problem(&bucket, &bounds, "http://prom:9090").unwrap();
    let text = problem.to_string();
    assert!(
        text.contains("le=\"0.3\" (a latency threshold of 300 ms) is not a bucket boundary of http_request_duration_seconds"),
        "{text}"
    );
    assert!(text.contains("use 250 ms or 500 ms"), "{text}");
    assert!(text.contains("http://prom:9090"), "{text}");
    let on_a_bound = aragora_slo::check::ForeignBucket {
        bound: "0.25".into(),
        ..bucket
    };
    assert_eq!(
        aragora_slo::check::foreign_bucket_problem(&on_a_bound, &bounds, "http://prom:9090"),
        None
    );
}

#[test]
fn an_aragora_name_that_is_not_exported_is_refused_once_however_many_queries_name_it() {
    let spec = format!(
        "{HEADER}  - name: made-up
    objective: 99
    sli:
      events:
        error_query: sum(rate(aragora_requests_total{{status=~\"5..\"}}[{{{{.window}}}}]))
        total_query: sum(rate(aragora_requests_total[{{{{.window}}}}]))
"
    );
    let problems = problems(&spec);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].contains("names aragora_requests_total, which aragora does not export")
            && problems[0].contains("did you mean aragora_http_requests_total?"),
        "{problems:#?}"
    );
}
