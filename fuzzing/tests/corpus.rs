//! Every committed fuzz input, replayed through its target under plain `cargo test`: the seed
//! corpora (`fuzz/corpus/TARGET/`) and the inputs that once crashed (`fuzz/regressions/TARGET/`),
//! so a fixed crash stays fixed without cargo-fuzz or a nightly toolchain.

use aragora_fuzzing::TARGETS;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every file of `kind` (`corpus` or `regressions`) through its target; all failures
/// are reported together, each with the command that reproduces it.
fn replay(kind: &str) -> usize {
    let mut failed = Vec::new();
    let mut count = 0;
    for (name, target) in TARGETS {
        for file in files(&fuzz_dir().join(kind).join(name)) {
            let data = std::fs::read(&file).expect("a readable input");
            count += 1;
            if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
                failed.push(format!(
                    "{name}: {} (reproduce: cd fuzz && cargo +nightly fuzz run --sanitizer none --codegen-units 16 {name} {})",
                    file.display(),
                    file.strip_prefix(fuzz_dir()).unwrap_or(&file).display()
                ));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "inputs that fail:\n{}",
        failed.join("\n")
    );
    count
}

#[test]
fn every_seed_of_every_corpus_passes_its_target() {
    let count = replay("corpus");
    assert!(
        count >= TARGETS.len(),
        "only {count} seeds for {} targets",
        TARGETS.len()
    );
}

#[test]
fn every_input_that_once_crashed_passes_its_target_now() {
    replay("regressions");
}

/// Each target has its cargo-fuzz binary and a seed corpus; a target added to one place only
/// would go unfuzzed or unreplayed.
#[test]
fn every_target_has_a_fuzz_binary_and_seeds() {
    for (name, _) in TARGETS {
        let binary = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&binary)
            .unwrap_or_else(|err| panic!("{}: {err}", binary.display()));
        assert!(
            text.contains(&format!("aragora_fuzzing::{name}(")),
            "{} does not call aragora_fuzzing::{name}",
            binary.display()
        );
        assert!(
            !files(&fuzz_dir().join("corpus").join(name)).is_empty(),
            "no seeds in fuzz/corpus/{name}"
        );
    }
    let binaries = files(&fuzz_dir().join("fuzz_targets")).len();
    assert_eq!(binaries, TARGETS.len(), "fuzz_targets/ and TARGETS differ");
}
