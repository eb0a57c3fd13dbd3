//! SLO specs in each format the slo crate reads (`aragora/v1`, Sloth `prometheus/v1`, OpenSLO
//! v1), checked and, when they pass, turned into rules as `aragora slo generate` does.

use aragora_slo::model::SliShape;
use aragora_slo::spec::{parse, render_own};
use aragora_slo::{check, generate, SloSettings, SloSpec};

fn has_nan(spec: &SloSpec) -> bool {
    spec.slos.iter().any(|slo| {
        slo.objective.is_nan()
            || matches!(slo.shape, Some(SliShape::Latency { threshold_seconds, .. }) if threshold_seconds.is_nan())
    })
}

/// Parse, render in the project's format, parse again: the same spec. Then the checks, and
/// for a spec without problems the generated files.
pub fn slo_spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = parse(text) else {
        return;
    };
    let rendered = render_own(&spec);
    let again = parse(&rendered)
        .unwrap_or_else(|err| panic!("a rendered spec does not read back: {err}\n{rendered}"));
    assert_eq!(render_own(&again), rendered, "rendering is not stable");
    // NaN is not equal to itself; the texts above, which print it alike, covered those.
    if !has_nan(&spec) {
        assert_eq!(
            again, spec,
            "rendering and reading changed the spec:\n{rendered}"
        );
    }
    if check(&spec).is_empty() {
        generate(&spec, &SloSettings::default()).expect("a spec without problems generates");
    }
}
