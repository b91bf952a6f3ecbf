//! Tag-to-digest resolution against a real registry (Debian's `docker-registry`) on
//! loopback: the control plane records the digest the registry answers for the tag, and a
//! tag that does not exist makes the revision ContainerMissing with the registry's answer.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kantai_api::Client;
use kantai_api::resources::{REVISIONS, SERVICES};
use kantai_control::ControlPlane;
use kantai_control::digests::DigestConfig;
use kantai_images::{ImagesConfig, Registry};
use oci_client::client::{ClientConfig, ClientProtocol};
use serde_json::{Value, json};
use sha2::Digest as _;

mod common;

/// `docker-registry serve` on a free loopback port, storing in a temp dir; killed by pid on
/// drop.
struct RealRegistry {
    child: Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl RealRegistry {
    fn start() -> RealRegistry {
        let dir = tempfile::tempdir().expect("tmp");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is installed");
        RealRegistry {
            child,
            host: format!("127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// Waits until the registry answers `GET /v2/`.
    async fn ready(&self) {
        let start = Instant::now();
        while answers_http(&self.host).await.is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "docker-registry on {} did not answer within 20 s",
                self.host
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for RealRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `GET http://host/v2/` gets any HTTP answer.
async fn answers_http(host: &str) -> Option<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(host).await.ok()?;
    s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).await.ok()?;
    (&buf == b"HTTP/1.").then_some(())
}

fn sha256(data: &[u8]) -> String {
    let d = sha2::Sha256::digest(data);
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Pushes a one-layer image as `host/repo:tag`; its manifest's digest.
async fn push(host: &str, repo: &str, tag: &str, content: &[u8]) -> String {
    // oci-client is built without a default TLS provider and builds its HTTP client with
    // one even for plain HTTP; installing it twice is harmless.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let c = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let r: oci_client::Reference = format!("{host}/{repo}:{tag}").parse().expect("reference");
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    c.push_blob(&r, content.to_vec(), &sha256(content))
        .await
        .expect("layer pushed");
    c.push_blob(&r, config.to_vec(), &sha256(config))
        .await
        .expect("config pushed");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
        sha256(config),
        config.len(),
        sha256(content),
        content.len()
    )
    .into_bytes();
    c.push_manifest_raw(
        &r,
        manifest.clone(),
        "application/vnd.oci.image.manifest.v1+json"
            .parse()
            .expect("media type"),
    )
    .await
    .expect("manifest pushed");
    sha256(&manifest)
}

fn service(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"containers": [{"image": image}]}}}
    })
}

#[tokio::test]
async fn the_registrys_digest_is_recorded_and_a_missing_tag_is_container_missing() {
    let registry = RealRegistry::start();
    registry.ready().await;
    let digest = push(&registry.host, "fn/hello", "v1", b"hello").await;
    let resolver = Registry::new(&ImagesConfig {
        insecure_registries: vec![registry.host.clone()],
        ..ImagesConfig::default()
    })
    .expect("registry client");
    let dir = tempfile::tempdir().expect("tmp");
    let cp: ControlPlane = common::control_plane_with(
        dir.path(),
        DigestConfig {
            resolver: Some(Arc::new(resolver)),
            ..DigestConfig::default()
        },
    )
    .await;
    let c = Client::new(&format!("http://{}", cp.addr))
        .expect("client")
        .with_token(Some(common::TOKEN.to_owned()));
    let host = &registry.host;
    c.create(
        SERVICES,
        "default",
        &service("hello", &format!("{host}/fn/hello:v1")),
    )
    .await
    .expect("create");
    c.create(
        SERVICES,
        "default",
        &service("nope", &format!("{host}/fn/nope:v1")),
    )
    .await
    .expect("create");
    let recorded = common::wait_for(Duration::from_secs(15), "the digest recorded", || async {
        let v = cp.shared.store.get(&REVISIONS, "default", "hello-00001")?;
        v["status"]["containerStatuses"][0]["imageDigest"]
            .as_str()
            .map(str::to_owned)
    })
    .await;
    assert_eq!(recorded, format!("{host}/fn/hello@{digest}"));
    let missing = common::wait_for(Duration::from_secs(15), "ContainerMissing", || async {
        let v = cp.shared.store.get(&REVISIONS, "default", "nope-00001")?;
        v["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "ContainerHealthy" && c["status"] == "False")
            .cloned()
    })
    .await;
    assert_eq!(missing["reason"], "ContainerMissing");
    let message = missing["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!(
            "Unable to fetch image \"{host}/fn/nope:v1\": failed to resolve image to digest: "
        )),
        "{message}"
    );
    cp.shutdown().await;
}
