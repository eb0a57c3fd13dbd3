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

/// A backup manifest: read, then written (`Manifest::to_text`, what `write` writes), then read again,
/// gives the same manifest.
pub fn backup_manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(read) = manifest::parse(text) else {
        return;
    };
    let again: Manifest = manifest::parse(&read.to_text()).expect("a written manifest reads back");
    assert_eq!(again, read, "writing and reading changed the manifest");
}
