//! Secrets at rest: what `store.redb` holds of a Secret is ciphertext, the key file is
//! private, the same key reads it back, and another key (or none) stops the start with an
//! error naming the object and the key file.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine;
use kantai_api::resources::{CONFIGMAPS, SECRETS};
use kantai_control::encryption::KEY_FILE;
use kantai_control::store::Store;
use serde_json::{Value, json};

/// A value no test writes anywhere else, so finding it means it leaked.
const VALUE: &str = "correct-horse-battery-staple-4a7f";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn secret(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": name}, "data": {"password": b64(VALUE)}})
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn store_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("store.redb")).expect("store.redb")
}

fn open_error(dir: &Path) -> String {
    match Store::open(dir) {
        Ok(_) => panic!("the store opened"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_store_file_holds_no_plaintext_of_a_secret() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path()).expect("open");
    store
        .create(&SECRETS, "default", secret("db"), "t")
        .expect("create");
    // A config map with the same bytes shows what plaintext would look like on disk.
    let cm = json!({"metadata": {"name": "control"}, "data": {"seen": "plain-config-value-93c1"}});
    store.create(&CONFIGMAPS, "default", cm, "t").expect("cm");
    drop(store);
    let raw = store_bytes(dir.path());
    assert!(
        contains(&raw, "plain-config-value-93c1"),
        "the control value is stored as JSON"
    );
    assert!(
        !contains(&raw, VALUE),
        "the secret's value is in store.redb"
    );
    assert!(
        !contains(&raw, &b64(VALUE)),
        "the secret's base64 is in store.redb"
    );
    assert!(
        contains(&raw, "k8s:enc:aesgcm:v1:"),
        "no encrypted value in store.redb"
    );
}

#[test]
fn the_key_file_is_created_private() {
    let dir = tempfile::tempdir().expect("tmp");
    let _store = Store::open(dir.path()).expect("open");
    let meta = std::fs::metadata(dir.path().join(KEY_FILE)).expect("key file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 32);
}

#[test]
fn a_reopened_store_reads_its_secrets_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path()).expect("open");
    store
        .create(&SECRETS, "default", secret("db"), "t")
        .expect("create");
    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    let got = store.get(&SECRETS, "default", "db").expect("read back");
    assert_eq!(got["data"]["password"], b64(VALUE));
}

#[test]
fn another_key_stops_the_start_naming_the_secret_and_the_key_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path()).expect("open");
    store
        .create(&SECRETS, "prod", secret("db"), "t")
        .expect("create");
    drop(store);
    let key = dir.path().join(KEY_FILE);
    std::fs::write(&key, [7u8; 32]).expect("another key");
    let err = open_error(dir.path());
    assert!(err.contains("secrets/prod/db"), "{err}");
    assert!(err.contains(&key.display().to_string()), "{err}");
    assert!(err.contains("was encrypted with key"), "{err}");
    assert!(!err.contains(VALUE) && !err.contains(&b64(VALUE)), "{err}");
}

#[test]
fn a_lost_key_file_is_not_replaced_while_secrets_need_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path()).expect("open");
    store
        .create(&SECRETS, "default", secret("db"), "t")
        .expect("create");
    drop(store);
    let key = dir.path().join(KEY_FILE);
    std::fs::remove_file(&key).expect("rm");
    let err = open_error(dir.path());
    assert!(err.contains("is missing"), "{err}");
    assert!(!key.exists(), "a new key was made");
}

#[test]
fn a_key_file_others_can_read_stops_the_start() {
    let dir = tempfile::tempdir().expect("tmp");
    drop(Store::open(dir.path()).expect("open"));
    let key = dir.path().join(KEY_FILE);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let err = open_error(dir.path());
    assert!(err.contains("mode 0640") && err.contains("0600"), "{err}");
}

/// A Secret written before encryption existed (plain JSON, as older kantai stored it) is
/// read, and rewritten encrypted when the store opens.
#[test]
fn a_secret_stored_in_plain_json_is_read_and_rewritten_encrypted() {
    let dir = tempfile::tempdir().expect("tmp");
    drop(Store::open(dir.path()).expect("create"));
    {
        // As an older kantai wrote it: the object's JSON under its key.
        let db = redb::Database::create(dir.path().join("store.redb")).expect("db");
        let table: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("objects");
        let tx = db.begin_write().expect("tx");
        {
            let mut t = tx.open_table(table).expect("objects");
            let mut obj = secret("old");
            obj["metadata"]["namespace"] = "default".into();
            let bytes = serde_json::to_vec(&obj).expect("json");
            t.insert("secrets/default/old", bytes.as_slice())
                .expect("insert");
        }
        tx.commit().expect("commit");
    }
    let store = Store::open(dir.path()).expect("open");
    assert_eq!(
        store.get(&SECRETS, "default", "old").expect("read")["data"]["password"],
        b64(VALUE)
    );
    drop(store);
    let db = redb::Database::create(dir.path().join("store.redb")).expect("db");
    let table: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("objects");
    let tx = redb::ReadableDatabase::begin_read(&db).expect("read");
    let t = tx.open_table(table).expect("objects");
    let stored = t.get("secrets/default/old").expect("get").expect("stored");
    assert!(stored.value().starts_with(b"k8s:enc:aesgcm:v1:"));
}
