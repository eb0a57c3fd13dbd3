//! The generated files: what promtool says of them, and that they match the committed ones.

use aragora_slo::generate::{self, GeneratedFile};
use aragora_slo::{SloSettings, SloSpec};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn default_spec() -> SloSpec {
    SloSettings::from_env(&HashMap::new())
        .unwrap()
        .default_spec()
}

fn default_files() -> Vec<GeneratedFile> {
    aragora_slo::generate(&default_spec(), &SloSettings::default()).unwrap()
}

#[test]
#[ignore = "writes the files; run by hand"]
fn dump() {
    generate::write(&repo_root().join("alerts"), &default_files()).unwrap();
}
