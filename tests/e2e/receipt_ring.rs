//! The receipt signing key ring through the real binary: after several rotations, receipts
//! signed under every earlier key (and under a key the engine generated before one was
//! configured) still verify, by `POST /api/receipts/verify` and by `aragora receipt verify`,
//! each answer naming the key that signed; a receipt signed outside the ring is refused; no key
//! value appears in anything the processes wrote.

use crate::support::{aragora_command, Engine, EngineOptions};
use aragora_engine::receipts::{Receipt, ReceiptKeys};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const KEY_A: &str = "ring-key-a-7f3c9e21-ring-key-a-7f3c9e21";
const KEY_B: &str = "ring-key-b-51d0aa84-ring-key-b-51d0aa84";
const KEY_C: &str = "ring-key-c-c2e6b17f-ring-key-c-c2e6b17f";
/// Never given to an engine: what a forger or a foreign deployment signs with.
const KEY_OUTSIDE: &str = "ring-key-x-0b9d44e3-ring-key-x-0b9d44e3";
const SIGNING_KEY: &str = "ARAGORA_RECEIPT_SIGNING_KEY";
const PREVIOUS: &str = "ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS";

/// Runs a one-round debate and returns its receipt.
async fn debate_receipt(engine: &Engine, topic: &str) -> Value {
    let debate = engine
        .run_debate(json!({"topic": topic, "rounds": 1}))
        .await;
    assert_eq!(debate["status"], "completed", "{debate}");
    let id = debate["debate_id"].as_str().expect("debate_id");
    let (status, receipt) = engine.get(&format!("/api/debates/{id}/receipt")).await;
    assert_eq!(status, 200, "{receipt}");
    receipt
}

/// Stops `engine` with SIGTERM and waits for it to exit cleanly.
pub(crate) async fn stop(engine: &mut Engine) {
    engine.signal(libc::SIGTERM);
    let status = engine.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}\n{}", engine.log_text());
}

/// `aragora receipt verify FILE` with `key` and the `previous` keys (comma-separated, empty
/// for none): success and everything printed.
pub(crate) fn verify_cli(
    file: &Path,
    data_dir: &Path,
    key: &str,
    previous: &str,
) -> (bool, String) {
    let output = aragora_command()
        .args(["receipt", "verify"])
        .arg(file)
        .arg("--data-dir")
        .arg(data_dir)
        .env(SIGNING_KEY, key)
        .env(PREVIOUS, previous)
        .output()
        .expect("run aragora receipt verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_from_every_earlier_key_verify_after_rotations_and_strangers_do_not() {
    // Start 0: no key configured, so the engine generates one into the data directory.
    let mut engine = Engine::start(EngineOptions::sqlite()).await;
    let generated = debate_receipt(&engine, "Signed by the generated key").await;
    stop(&mut engine).await;
    // Start 1: key A configured; start 2: rotated to B; start 3: rotated again to C.
    let rotations = [
        ("A", KEY_A, None),
        ("B", KEY_B, Some(KEY_A.to_string())),
        ("C", KEY_C, Some(format!("{KEY_B},{KEY_A}"))),
    ];
    let mut receipts = Vec::new();
    for (name, key, previous) in rotations {
        let mut options = EngineOptions::sqlite().env(SIGNING_KEY, key);
        if let Some(previous) = previous {
            options = options.env(PREVIOUS, previous);
        }
        let next = Engine::start(engine.restart_options(options)).await;
        drop(engine);
        engine = next;
        receipts.push(debate_receipt(&engine, &format!("Signed with key {name}")).await);
        if receipts.len() < 3 {
            stop(&mut engine).await;
        }
    }
    let [from_a, from_b, from_c] = <[Value; 3]>::try_from(receipts).unwrap();
    let ids: Vec<&str> = [&generated, &from_a, &from_b, &from_c]
        .iter()
        .map(|r| r["key_id"].as_str().unwrap())
        .collect();
    let unique: std::collections::BTreeSet<&&str> = ids.iter().collect();
    assert_eq!(
        unique.len(),
        4,
        "each start signed with its own key: {ids:?}"
    );

    // The API: each receipt verifies under the key its key_id names, and says which.
    let mut said = String::new();
    for (receipt, current, source) in [
        (&from_a, false, "ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS key 2"),
        (&from_b, false, "ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS key 1"),
        (&from_c, true, "ARAGORA_RECEIPT_SIGNING_KEY"),
        (
            &generated,
            false,
            "the generated key file receipt-signing.key",
        ),
    ] {
        let (status, verdict) = engine.post_json("/api/receipts/verify", receipt).await;
        said.push_str(&verdict.to_string());
        assert_eq!(status, 200, "{verdict}");
        assert_eq!(
            (
                &verdict["valid"],
                &verdict["signed_with"],
                &verdict["current"],
                &verdict["key_id"],
                &verdict["key_source"],
                &verdict["debate_id"],
            ),
            (
                &json!(true),
                &json!(if current { "current" } else { "previous" }),
                &json!(current),
                &receipt["key_id"],
                &json!(source),
                &receipt["debate_id"],
            ),
            "{verdict}"
        );
    }

    // A receipt signed with a key outside the ring, and one changed after signing: refused.
    let parsed: Receipt = serde_json::from_value(from_a.clone()).unwrap();
    let outside = serde_json::to_value(ReceiptKeys::new(KEY_OUTSIDE, &[]).sign(parsed)).unwrap();
    let (status, verdict) = engine.post_json("/api/receipts/verify", &outside).await;
    said.push_str(&verdict.to_string());
    assert_eq!(
        (status, &verdict["valid"]),
        (200, &json!(false)),
        "{verdict}"
    );
    let reason = verdict["reason"].as_str().unwrap();
    assert!(
        reason.contains("not in the key ring")
            && reason.contains(outside["key_id"].as_str().unwrap()),
        "{verdict}"
    );
    let mut tampered = from_a.clone();
    tampered["rounds"] = json!(7);
    let (_, verdict) = engine.post_json("/api/receipts/verify", &tampered).await;
    said.push_str(&verdict.to_string());
    assert_eq!(verdict["valid"], false, "{verdict}");
    assert!(
        verdict["reason"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{verdict}"
    );

    // Offline, with the same ring: the receipt from two rotations ago verifies, naming its key.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("receipt.json");
    std::fs::write(&file, serde_json::to_string_pretty(&from_a).unwrap()).unwrap();
    let (ok, text) = verify_cli(&file, &engine.data_dir, KEY_C, &format!("{KEY_B},{KEY_A}"));
    said.push_str(&text);
    assert!(ok, "{text}");
    assert!(
        text.contains("previous")
            && text.contains(from_a["key_id"].as_str().unwrap())
            && text.contains("ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS key 2"),
        "{text}"
    );
    std::fs::write(&file, generated.to_string()).unwrap();
    let (ok, text) = verify_cli(&file, &engine.data_dir, KEY_C, &format!("{KEY_B},{KEY_A}"));
    said.push_str(&text);
    assert!(ok && text.contains("generated key file"), "{text}");
    std::fs::write(&file, outside.to_string()).unwrap();
    let (ok, text) = verify_cli(&file, &engine.data_dir, KEY_C, &format!("{KEY_B},{KEY_A}"));
    said.push_str(&text);
    assert!(
        !ok && text.contains("INVALID") && text.contains("not in the key ring"),
        "{text}"
    );
    stop(&mut engine).await;

    // Nothing any process wrote, nor any answer, holds a key (the generated one included).
    let generated_key = std::fs::read_to_string(engine.data_dir.join("receipt-signing.key"))
        .unwrap()
        .trim()
        .to_string();
    let mut written = said;
    for entry in std::fs::read_dir(&engine.data_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log" || e == "out") {
            written.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    assert!(
        written.contains("receipts are signed with this key"),
        "the engines' logs were read: {written}"
    );
    for key in [KEY_A, KEY_B, KEY_C, KEY_OUTSIDE, generated_key.as_str()] {
        assert!(
            !written.contains(key),
            "a receipt key appears in the output"
        );
    }
}
