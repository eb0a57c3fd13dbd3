//! Files an operator is handed: chaos experiments and backup manifests.

use aragora_chaos::experiment;
use aragora_chaos::manifest::{self, Manifest};
use std::collections::BTreeMap;

/// A chaos experiment's YAML, `${VAR}` substitution included (one variable given, as
/// `--var` would). A loaded experiment has no problems left.
pub fn chaos_experiment(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let vars = BTreeMap::from([("TARGET".to_string(), "127.0.0.1:9".to_string())]);
    match experiment::parse(text, &vars) {
        Ok(experiment) => assert!(experiment.problems().is_empty()),
        Err(err) => assert!(!err.to_string().is_empty()),
    }
}

/// A backup manifest: read, then written (`Manifest::to_text`, what `write` writes), then read
/// again, gives the same manifest.
pub fn backup_manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(read) = manifest::parse(text) else {
        return;
    };
    let mut again: Manifest =
        manifest::parse(&read.to_text()).expect("a written manifest reads back");
    // serde_json without its `float_roundtrip` feature reads a 17-digit float to within one
    // ULP of what it wrote (found by fuzzing: `duration_seconds`); everything else is exact.
    let ulps = again
        .duration_seconds
        .to_bits()
        .abs_diff(read.duration_seconds.to_bits());
    assert!(ulps <= 1, "duration_seconds moved {ulps} ULPs");
    again.duration_seconds = read.duration_seconds;
    assert_eq!(again, read, "writing and reading changed the manifest");
}
