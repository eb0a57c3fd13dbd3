//! Backups encrypted at rest with `ARAGORA_ENCRYPTION_KEY`, through the real binary: encrypted
//! backups restore and drill on SQLite and PostgreSQL, hold none of the database's text on
//! disk, and are refused (with nothing restored) under the wrong key, no key, or after being
//! changed or cut short; no key value ever appears in what the processes print.

use super::{
    debates, empty_target, postgres_url, visible_state, with_a_scheduled_backup, Site, Target,
    KEY as RECEIPT_KEY,
};
use crate::support::{describe_output, Engine, EngineOptions};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The key the backups are made with (hex form) and another one (URL-safe base64, unpadded).
const KEY: &str = "5f1d7a9c3b2e4f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";
const OTHER_KEY: &str = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJ-_8";
const SECRET_VALUES: [&str; 2] = [KEY, OTHER_KEY];

/// Every debate of these tests has this in its topic: what must not be readable on disk.
const TOPIC: &str = "encrypted-backup-probe-7f3a";

on_both_backends!(
    an_encrypted_backup_restores_and_holds_no_plaintext,
    a_wrong_or_missing_key_is_refused_and_nothing_is_restored,
    a_changed_or_cut_short_encrypted_backup_is_refused,
);

/// Everything the processes of a test printed, to check that no key appears in it.
#[derive(Default)]
struct Printed(Vec<String>);

impl Printed {
    fn keep(&mut self, output: &Output) -> String {
        let text = describe_output(output);
        self.0.push(text.clone());
        text
    }

    fn assert_no_key(&self, engine: &Engine) {
        let everything = format!("{}\n{}", self.0.join("\n"), engine.log_text());
        for secret in SECRET_VALUES {
            assert!(
                !everything.contains(secret),
                "a key value was printed:\n{everything}"
            );
        }
    }
}

/// The first 16 hex characters of the SHA-256 of `KEY`'s bytes, computed by `sha256sum`.
fn key_id_of_key() -> String {
    let bytes: Vec<u8> = (0..KEY.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&KEY[i..i + 2], 16).unwrap())
        .collect();
    sha256_hex(&bytes)[..16].to_string()
}

fn other_key_id() -> String {
    aragora_chaos::encryption::BackupKey::parse(OTHER_KEY)
        .unwrap()
        .id()
        .to_string()
}

fn sha256_hex(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils)");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let output = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&output.stdout)[..64].to_string()
}

fn artifact(site: &Site, backup: &Value) -> PathBuf {
    site.backup_dir().join(backup["artifact"].as_str().unwrap())
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// What the backend's own tool reads out of an artifact (zstd for SQLite, `pg_restore` for
/// PostgreSQL), or `None` when the tool cannot read it.
fn readable_content(path: &Path, postgres: bool) -> Option<Vec<u8>> {
    if postgres {
        let output = Command::new("pg_restore")
            .arg("--file=-")
            .arg(path)
            .output()
            .expect("pg_restore");
        output.status.success().then_some(output.stdout)
    } else {
        zstd::stream::decode_all(std::fs::File::open(path).unwrap()).ok()
    }
}

/// Rewrites a backup's manifest size and sha256 to fit its artifact as it now is: the damage
/// then gets past the checksum and only the encryption's authentication can catch it.
fn reseal_manifest(site: &Site, backup: &Value) {
    let bytes = std::fs::read(artifact(site, backup)).unwrap();
    let path = site
        .backup_dir()
        .join(format!("{}.manifest.json", backup["id"].as_str().unwrap()));
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    manifest["artifact_bytes"] = json!(bytes.len());
    manifest["sha256"] = json!(sha256_hex(&bytes));
    std::fs::write(&path, manifest.to_string()).unwrap();
}

/// Panics unless the target is as it was made: an empty directory, or a database without tables.
async fn assert_untouched(target: &Target, why: &str) {
    target.assert_nothing_written(why).await;
    let left: Vec<_> = std::fs::read_dir(target.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{why}: files left in the target: {left:?}");
}

/// Restores the latest backup into a fresh target: the output and the target.
async fn restore_into_fresh(site: &Site, postgres: bool) -> (Output, Target) {
    let target = empty_target(postgres).await;
    let output = site
        .run(&["backup", "restore", "--into", &target.into])
        .await;
    (output, target)
}

async fn an_encrypted_backup_restores_and_holds_no_plaintext(options: EngineOptions) {
    let url = postgres_url(&options);
    let postgres = url.is_some();
    let engine = Engine::start(
        options
            .env("ARAGORA_ENCRYPTION_KEY", KEY)
            .env("ARAGORA_RECEIPT_SIGNING_KEY", RECEIPT_KEY),
    )
    .await;
    let plain_site = Site::of(&engine, url).env("ARAGORA_RECEIPT_SIGNING_KEY", RECEIPT_KEY);
    let site = plain_site.clone().env("ARAGORA_ENCRYPTION_KEY", KEY);
    let mut printed = Printed::default();
    let mut ids = Vec::new();
    for round in 1..=2 {
        let id = engine
            .start_debate(json!({"topic": format!("{TOPIC}: tabs or spaces?"), "rounds": round}))
            .await;
        let record = engine.wait_final(&id, Duration::from_secs(30)).await;
        assert_eq!(record["status"], "completed", "{record}");
        ids.push(id);
    }
    ids.extend(debates(&engine, 1).await);

    // Made before the key was set: unencrypted, and its content shows the topic.
    let plain = plain_site.create_backup().await;
    assert!(plain.get("encryption").is_none(), "{plain}");
    let content = readable_content(&artifact(&plain_site, &plain), postgres).expect("readable");
    assert!(
        contains(&content, TOPIC),
        "the probe sees the topic in an unencrypted backup"
    );

    let backup = site.create_backup().await;
    assert_eq!(backup["format"], 2, "{backup}");
    assert_eq!(backup["encryption"]["algorithm"], "aes-256-gcm-stream-be32");
    assert_eq!(backup["encryption"]["key_id"], key_id_of_key(), "{backup}");
    assert_eq!(backup["row_counts"]["debates"], 3, "{backup}");
    let sealed_path = artifact(&site, &backup);
    assert!(sealed_path.to_string_lossy().ends_with(".enc"));
    let sealed = std::fs::read(&sealed_path).unwrap();
    assert_eq!(
        sha256_hex(&sealed),
        backup["sha256"],
        "the sha256 covers the file as stored"
    );
    for text in [
        TOPIC,
        "tabs or spaces",
        "SQLite format 3",
        "PGDMP",
        "debate_events",
    ] {
        assert!(
            !contains(&sealed, text),
            "{text:?} readable in the encrypted artifact"
        );
    }
    assert!(
        readable_content(&sealed_path, postgres).is_none(),
        "the backend's tool reads the encrypted artifact"
    );
    // The plaintext never touched the backup directory: nothing is left but the two backups.
    let mut names: Vec<String> = std::fs::read_dir(site.backup_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(names.len(), 4, "{names:?}");

    let listed = site.json(&["backup", "list", "--output", "json"]).await;
    assert_eq!(
        listed["backups"][0]["encryption"]["key_id"],
        key_id_of_key()
    );
    let verified = site.run(&["backup", "verify", "latest"]).await;
    assert!(verified.status.success(), "{}", printed.keep(&verified));
    printed.keep(&verified);

    let (restored, target) = restore_into_fresh(&site, postgres).await;
    let text = printed.keep(&restored);
    assert!(restored.status.success(), "{text}");
    assert!(text.contains("3 debates"), "{text}");
    let replica_options = match &target.database {
        Some(db) => EngineOptions::postgres(&db.url),
        None => EngineOptions::sqlite(),
    };
    let replica = Engine::start(
        replica_options
            .env("ARAGORA_RECEIPT_SIGNING_KEY", RECEIPT_KEY)
            .data_dir(target.dir.path()),
    )
    .await;
    for id in &ids {
        assert_eq!(
            visible_state(&engine, id).await,
            visible_state(&replica, id).await,
            "debate {id}"
        );
    }
    let (_, record) = replica.get(&format!("/api/debates/{}", ids[0])).await;
    assert!(
        record["topic"].as_str().unwrap().contains(TOPIC),
        "{record}"
    );

    // The unencrypted backup made earlier still verifies and restores with the key set.
    let plain_id = plain["id"].as_str().unwrap();
    let verified = site.run(&["backup", "verify", plain_id]).await;
    assert!(verified.status.success(), "{}", printed.keep(&verified));
    let old = empty_target(postgres).await;
    let restored = site
        .run(&["backup", "restore", plain_id, "--into", &old.into])
        .await;
    assert!(restored.status.success(), "{}", printed.keep(&restored));

    // A drill with the key decrypts the latest (encrypted) backup and passes.
    let drill = site.run(&["drill", "run", "--output", "json"]).await;
    let text = printed.keep(&drill);
    assert!(drill.status.success(), "{text}");
    let report: Value = serde_json::from_slice(&drill.stdout).unwrap();
    assert_eq!(report["status"], "passed", "{report:#}");
    assert_eq!(report["backup_id"], backup["id"]);
    assert_eq!(report["backup_key_id"], key_id_of_key(), "{report}");
    assert!(
        report["checks"].to_string().contains("decrypted with key"),
        "{report}"
    );
    assert_eq!(report["restored_rows"]["debates"], 3, "{report}");
    printed.assert_no_key(&engine);
}

async fn a_wrong_or_missing_key_is_refused_and_nothing_is_restored(options: EngineOptions) {
    let url = postgres_url(&options);
    let postgres = url.is_some();
    let engine = Engine::start(options).await;
    let plain_site = Site::of(&engine, url);
    let site = plain_site.clone().env("ARAGORA_ENCRYPTION_KEY", KEY);
    let wrong = plain_site.clone().env("ARAGORA_ENCRYPTION_KEY", OTHER_KEY);
    let mut printed = Printed::default();
    debates(&engine, 2).await;
    site.create_backup().await;
    let (key_id, other_id) = (key_id_of_key(), other_key_id());
    let fix = "set ARAGORA_ENCRYPTION_KEY to the key this backup was made with";

    let (refused, target) = restore_into_fresh(&wrong, postgres).await;
    let text = printed.keep(&refused);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("was encrypted with key {key_id}"))
            && text.contains(&format!("ARAGORA_ENCRYPTION_KEY is key {other_id}"))
            && text.contains(fix),
        "{text}"
    );
    assert_untouched(&target, "a restore with the wrong key").await;

    let (refused, target) = restore_into_fresh(&plain_site, postgres).await;
    let text = printed.keep(&refused);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "is encrypted (key {key_id}) and ARAGORA_ENCRYPTION_KEY is not set"
        )) && text.contains(fix),
        "{text}"
    );
    assert_untouched(&target, "a restore without a key").await;

    // A forced restore over the live database with the wrong key leaves it as it was.
    let (_, before) = engine.get("/api/debates?limit=100").await;
    let forced = wrong.run(&["backup", "restore", "--force"]).await;
    let text = printed.keep(&forced);
    assert_eq!(forced.status.code(), Some(1), "{text}");
    assert!(text.contains(fix), "{text}");
    let (_, after) = engine.get("/api/debates?limit=100").await;
    assert_eq!(before, after, "the live database changed");
    assert_eq!(after["total"], 2, "{after}");

    for (site, what) in [(&wrong, "the wrong key"), (&plain_site, "no key")] {
        let verify = site.run(&["backup", "verify"]).await;
        let text = printed.keep(&verify);
        assert_eq!(verify.status.code(), Some(1), "verify with {what}: {text}");
        assert!(text.contains(fix), "verify with {what}: {text}");
        let drill = site.run(&["drill", "run", "--output", "json"]).await;
        let text = printed.keep(&drill);
        assert_eq!(drill.status.code(), Some(1), "drill with {what}: {text}");
        let report: Value = serde_json::from_slice(&drill.stdout).unwrap();
        assert_eq!(report["status"], "failed");
        assert!(
            report["failures"].to_string().contains(&key_id),
            "names the backup's key: {report}"
        );
    }
    printed.assert_no_key(&engine);
}

async fn a_changed_or_cut_short_encrypted_backup_is_refused(options: EngineOptions) {
    let url = postgres_url(&options);
    let postgres = url.is_some();
    let engine = Engine::start(options).await;
    let site = Site::of(&engine, url).env("ARAGORA_ENCRYPTION_KEY", KEY);
    let mut printed = Printed::default();
    debates(&engine, 2).await;
    let refusal = "does not authenticate";

    // Bytes flipped in the middle, the manifest's checksum made to fit.
    let changed = site.create_backup().await;
    super::corrupt(&site, &changed);
    reseal_manifest(&site, &changed);
    let (refused, target) = restore_into_fresh(&site, postgres).await;
    let text = printed.keep(&refused);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    assert!(text.contains(refusal), "{text}");
    assert_untouched(&target, "a changed encrypted backup").await;
    let verify = site.run(&["backup", "verify"]).await;
    let text = printed.keep(&verify);
    assert_eq!(verify.status.code(), Some(1), "{text}");
    assert!(text.contains(refusal), "{text}");

    // Cut short (its last bytes lost), the manifest made to fit again.
    let cut = site.create_backup().await;
    let path = artifact(&site, &cut);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    reseal_manifest(&site, &cut);
    let (refused, target) = restore_into_fresh(&site, postgres).await;
    let text = printed.keep(&refused);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    assert!(text.contains(refusal), "{text}");
    assert_untouched(&target, "a cut-short encrypted backup").await;

    // Left as damaged, the checksum catches it first, as for any backup.
    let damaged = site.create_backup().await;
    super::corrupt(&site, &damaged);
    let (refused, target) = restore_into_fresh(&site, postgres).await;
    let text = printed.keep(&refused);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    assert!(text.contains("sha256"), "{text}");
    assert_untouched(&target, "a damaged encrypted backup").await;
    printed.assert_no_key(&engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_env_shows_the_key_only_as_set_and_refuses_a_malformed_one() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site {
        data_dir: dir.path().to_path_buf(),
        postgres: None,
        env: Vec::new(),
    };
    let good = site
        .clone()
        .env("ARAGORA_JWT_SECRET", &"s".repeat(40))
        .env("ARAGORA_ENCRYPTION_KEY", KEY)
        .run(&["validate-env", "--output", "json"])
        .await;
    let text = describe_output(&good);
    let report: Value = serde_json::from_slice(&good.stdout).expect(&text);
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Backup encryption")
        .unwrap_or_else(|| panic!("no backup encryption check: {report:#}"))
        .clone();
    assert_eq!(check["ok"], true, "{check}");
    let detail = check["detail"].as_str().unwrap();
    assert!(
        detail.contains("***") && detail.contains(&key_id_of_key()),
        "{detail}"
    );
    assert!(!text.contains(KEY), "{text}");

    let malformed = "correct-horse-battery-staple";
    let bad = site
        .clone()
        .env("ARAGORA_ENCRYPTION_KEY", malformed)
        .run(&["validate-env"])
        .await;
    let text = describe_output(&bad);
    assert_eq!(bad.status.code(), Some(78), "{text}");
    assert!(
        text.contains("ARAGORA_ENCRYPTION_KEY") && text.contains("openssl rand -base64 32"),
        "{text}"
    );
    assert!(!text.contains(malformed), "the value is quoted: {text}");
    // The same refusal stops a backup before it is taken.
    let backup = site
        .env("ARAGORA_ENCRYPTION_KEY", malformed)
        .run(&["backup", "create"])
        .await;
    let text = describe_output(&backup);
    assert_eq!(backup.status.code(), Some(78), "{text}");
    assert!(!text.contains(malformed), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_are_encrypted_with_the_key() {
    let (engine, manifest) =
        with_a_scheduled_backup(EngineOptions::sqlite().env("ARAGORA_ENCRYPTION_KEY", KEY)).await;
    let backups = engine.data_dir.join("backups");
    let manifest: Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(
        manifest["encryption"]["key_id"],
        key_id_of_key(),
        "{manifest}"
    );
    let sealed = std::fs::read(backups.join(manifest["artifact"].as_str().unwrap())).unwrap();
    assert!(
        sealed.starts_with(b"ARAGENC\x1a"),
        "not an encrypted artifact"
    );
    assert!(!engine.log_text().contains(KEY));
}
