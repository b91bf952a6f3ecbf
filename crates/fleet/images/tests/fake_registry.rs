//! Auth, corruption, request counting and unreachable registries, against a fake registry.

mod common;

use std::path::PathBuf;

use common::fake::{Auth, Fake, PASS, USER};
use common::*;
use kantai_images::{ImageError, PullPolicy, Store};

fn auth_file(dir: &TempDir, host: &str, user: &str, pass: &str) -> PathBuf {
    let p = dir.path().join("config.json");
    std::fs::write(
        &p,
        format!(
            r#"{{"auths": {{"http://{host}": {{"username": "{user}", "password": "{pass}"}}}}}}"#
        ),
    )
    .unwrap();
    p
}

fn image(fake: &Fake) -> (String, String) {
    let l = Blob::gz(&[E::File("hello", b"world")]);
    let digest = fake.add_image("ns/app", "v1", &[l], &config_json("/hello", &host_arch()));
    (format!("{}/ns/app:v1", fake.host()), digest)
}

async fn pull_with(
    fake: &Fake,
    creds: Option<(&str, &str)>,
) -> (TempDir, Result<kantai_images::Image, ImageError>) {
    let dir = TempDir::new("fake");
    let file = creds.map(|(u, p)| auth_file(&dir, &fake.host(), u, p));
    let s = Store::open(
        &dir.path().join("store"),
        registry_for(&[fake.host()], file),
        1 << 30,
    )
    .unwrap();
    let (r, _) = image(fake);
    let result = s.pull(&r, PullPolicy::IfNotPresent, &progress()).await;
    (dir, result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_fetched_with_the_configured_credentials() {
    let fake = Fake::start(Auth::Bearer).await;
    let (_dir, img) = pull_with(&fake, Some((USER, PASS))).await;
    let img = img.unwrap();
    assert_eq!(
        std::fs::read(img.layers[0].join("hello")).unwrap(),
        b"world"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_bearer_credentials_name_the_user_and_the_registry() {
    let fake = Fake::start(Auth::Bearer).await;
    let err = pull_with(&fake, Some(("bob", "wrong")))
        .await
        .1
        .unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("user bob")
            && msg.contains(&fake.host())
            && msg.contains("invalid username or password"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_is_sent_when_the_registry_asks_for_it() {
    let fake = Fake::start(Auth::Basic).await;
    assert!(pull_with(&fake, Some((USER, PASS))).await.1.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_pulls_of_a_private_registry_are_unauthorized() {
    let fake = Fake::start(Auth::Basic).await;
    let err = pull_with(&fake, None).await.1.unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("no credentials"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_layer_is_a_digest_mismatch_and_is_not_stored() {
    let fake = Fake::start(Auth::None).await;
    let dir = TempDir::new("fake");
    let s = Store::open(dir.path(), registry_for(&[fake.host()], None), 1 << 30).unwrap();
    let l = Blob::gz(&[E::File("hello", b"world")]);
    fake.add_image(
        "ns/app",
        "v1",
        std::slice::from_ref(&l),
        &config_json("/x", &host_arch()),
    );
    fake.corrupt(&l.digest());
    let err = s
        .pull(
            &format!("{}/ns/app:v1", fake.host()),
            PullPolicy::IfNotPresent,
            &progress(),
        )
        .await
        .unwrap_err();
    match &err {
        ImageError::DigestMismatch {
            expected,
            actual,
            what,
            ..
        } => {
            assert_eq!(expected, &l.digest());
            assert_ne!(actual, &l.digest());
            assert!(what.contains(&l.digest()), "{err}");
        }
        other => panic!("expected a digest mismatch, got {other}"),
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("layers"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(s.usage(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_pulls_download_each_blob_once() {
    let fake = Fake::start(Auth::None).await;
    let layers = [
        Blob::gz(&[E::File("a", &[1; 3000])]),
        Blob::gz(&[E::File("b", &[2; 3000])]),
    ];
    fake.add_image("ns/app", "v1", &layers, &config_json("/x", &host_arch()));
    // The first layer's download waits until both pulls have their manifest, so the second
    // pull really runs into the download in flight.
    fake.gate(&layers[0].digest());
    let dir = TempDir::new("fake");
    let s = Store::open(dir.path(), registry_for(&[fake.host()], None), 1 << 30).unwrap();
    let r = format!("{}/ns/app:v1", fake.host());
    let (p1, p2) = (progress(), progress());
    let (a, b) = tokio::join!(
        s.pull(&r, PullPolicy::IfNotPresent, &p1),
        s.pull(&r, PullPolicy::IfNotPresent, &p2)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.layers, b.layers);
    assert_eq!(fake.hits("GET", "manifest v1"), 2);
    for l in &layers {
        assert_eq!(
            fake.hits("GET blob", &l.digest()),
            1,
            "layer {} fetched more than once",
            l.digest()
        );
    }
    assert_eq!(
        fake.total_blob_gets(),
        3,
        "two layers and a config, each once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_asks_for_the_digest_but_downloads_nothing_it_has() {
    let fake = Fake::start(Auth::None).await;
    let (r, digest) = image(&fake);
    let dir = TempDir::new("fake");
    let s = Store::open(dir.path(), registry_for(&[fake.host()], None), 1 << 30).unwrap();
    let first = s.pull(&r, PullPolicy::Always, &progress()).await.unwrap();
    let blobs = fake.total_blob_gets();
    let second = s.pull(&r, PullPolicy::Always, &progress()).await.unwrap();
    assert_eq!(
        (first.digest.as_str(), second.digest.as_str()),
        (digest.as_str(), digest.as_str())
    );
    assert_eq!(fake.total_blob_gets(), blobs, "nothing is downloaded again");
    assert_eq!(
        fake.hits("HEAD", "manifest v1"),
        2,
        "the registry is asked every time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_nobody_listens_on_is_unreachable() {
    let port = free_port();
    let host = format!("127.0.0.1:{port}");
    let dir = TempDir::new("fake");
    let s = Store::open(
        dir.path(),
        registry_for(std::slice::from_ref(&host), None),
        1 << 30,
    )
    .unwrap();
    let err = s
        .pull(
            &format!("{host}/ns/app:v1"),
            PullPolicy::IfNotPresent,
            &progress(),
        )
        .await
        .unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, ImageError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&host), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_reference_is_invalid_image_name() {
    let dir = TempDir::new("fake");
    let s = Store::open(dir.path(), registry_for(&[], None), 1 << 30).unwrap();
    let err = s
        .pull("Not A/Valid::ref", PullPolicy::IfNotPresent, &progress())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "InvalidImageName", "{err}");
    assert_eq!(
        kantai_images::normalize("busybox").unwrap(),
        "docker.io/library/busybox:latest"
    );
}
