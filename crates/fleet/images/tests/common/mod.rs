//! Test support: a real registry process, a fake one with auth and fault injection, temp dirs
//! and image builders that push through oci-client.
#![allow(dead_code, missing_docs)]

pub mod fake;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::{Client, Reference};
use sha2::Digest as _;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

pub fn sha256(data: &[u8]) -> String {
    let d = sha2::Sha256::digest(data);
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "kantai-images-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `GET /v2/` until it answers (any HTTP status), up to 20 s.
pub fn wait_http(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            if s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: x\r\n\r\n").is_ok() {
                let mut buf = [0u8; 12];
                if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "registry on port {port} did not answer GET /v2/ within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Debian's `docker-registry` on a free loopback port; killed by pid on drop.
pub struct RealRegistry {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl RealRegistry {
    pub fn start() -> RealRegistry {
        let dir = TempDir::new("registry");
        let port = free_port();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is installed");
        let r = RealRegistry {
            child,
            port,
            _dir: dir,
        };
        wait_http(port);
        r
    }
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for RealRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An oci-client for pushing test images over plain HTTP.
pub fn push_client() -> Client {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    })
}

/// One entry of a test layer.
pub enum E<'a> {
    File(&'a str, &'a [u8]),
    /// path, content, mode, uid, gid
    Owned(&'a str, &'a [u8], u32, u64, u64),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    /// A raw name written into the header as is (for `..` paths tar's builder refuses).
    Raw(&'a str, &'a [u8]),
}

pub fn tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            E::File(p, c) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(c.len() as u64);
                b.append_data(&mut h, p, *c).unwrap();
            }
            E::Owned(p, c, mode, uid, gid) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_uid(*uid);
                h.set_gid(*gid);
                h.set_size(c.len() as u64);
                b.append_data(&mut h, p, *c).unwrap();
            }
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            E::Symlink(p, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, t).unwrap();
            }
            E::Raw(p, c) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(c.len() as u64);
                let name = &mut h.as_gnu_mut().unwrap().name;
                name[..p.len()].copy_from_slice(p.as_bytes());
                h.set_cksum();
                b.append(&h, *c).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

/// A layer blob with its media type.
#[derive(Clone)]
pub struct Blob {
    pub media_type: &'static str,
    pub data: Vec<u8>,
}

impl Blob {
    pub fn gz(entries: &[E]) -> Blob {
        Blob {
            media_type: OCI_GZIP,
            data: gzip(&tar(entries)),
        }
    }
    pub fn digest(&self) -> String {
        sha256(&self.data)
    }
}

pub fn config_json(cmd: &str, arch: &str) -> Vec<u8> {
    format!(
        r#"{{"architecture":"{arch}","os":"linux","config":{{"Cmd":["{cmd}"],"Env":["PATH=/bin"]}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    )
    .into_bytes()
}

pub fn descriptor(media_type: &str, data: &[u8]) -> String {
    format!(
        r#"{{"mediaType":"{media_type}","digest":"{}","size":{}}}"#,
        sha256(data),
        data.len()
    )
}

/// A manifest's JSON: `media_type` None writes no `mediaType` field (as umoci does).
pub fn manifest_json(
    media_type: Option<&str>,
    config_type: &str,
    config: &[u8],
    layers: &[Blob],
) -> Vec<u8> {
    let layers: Vec<String> = layers
        .iter()
        .map(|l| descriptor(l.media_type, &l.data))
        .collect();
    let mt = media_type
        .map(|m| format!(r#""mediaType":"{m}","#))
        .unwrap_or_default();
    format!(
        r#"{{"schemaVersion":2,{mt}"config":{},"layers":[{}]}}"#,
        descriptor(config_type, config),
        layers.join(",")
    )
    .into_bytes()
}

pub struct Pushed {
    pub digest: String,
    pub manifest: Vec<u8>,
}

/// Pushes blobs, config and manifest to `host/repo:tag`; returns the manifest digest.
pub async fn push_image(
    host: &str,
    repo: &str,
    tag: &str,
    layers: &[Blob],
    config: &[u8],
    media_type: Option<&str>,
) -> Pushed {
    let config_type = if media_type == Some(DOCKER_MANIFEST) {
        DOCKER_CONFIG
    } else {
        OCI_CONFIG
    };
    let c = push_client();
    let r: Reference = format!("{host}/{repo}:{tag}").parse().unwrap();
    for l in layers {
        c.push_blob(&r, l.data.clone(), &l.digest()).await.unwrap();
    }
    c.push_blob(&r, config.to_vec(), &sha256(config))
        .await
        .unwrap();
    let manifest = manifest_json(media_type, config_type, config, layers);
    let ct = media_type.unwrap_or(OCI_MANIFEST);
    c.push_manifest_raw(&r, manifest.clone(), ct.parse().unwrap())
        .await
        .unwrap();
    Pushed {
        digest: sha256(&manifest),
        manifest,
    }
}

/// Pushes an index of already pushed manifests `(manifest bytes, media type, arch)` as `host/repo:tag`.
pub async fn push_index(
    host: &str,
    repo: &str,
    tag: &str,
    index_type: &str,
    entries: &[(&[u8], &str, &str)],
) -> String {
    let c = push_client();
    let r: Reference = format!("{host}/{repo}:{tag}").parse().unwrap();
    let list: Vec<String> = entries
        .iter()
        .map(|(m, mt, arch)| {
            format!(
                r#"{{"mediaType":"{mt}","digest":"{}","size":{},"platform":{{"os":"linux","architecture":"{arch}"}}}}"#,
                sha256(m),
                m.len()
            )
        })
        .collect();
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{index_type}","manifests":[{}]}}"#,
        list.join(",")
    )
    .into_bytes();
    c.push_manifest_raw(&r, body.clone(), index_type.parse().unwrap())
        .await
        .unwrap();
    sha256(&body)
}

pub fn host_arch() -> String {
    kantai_images::Platform::host().architecture
}

pub fn registry_for(insecure: &[String], auth_file: Option<PathBuf>) -> kantai_images::Registry {
    let cfg = kantai_images::ImagesConfig {
        insecure_registries: insecure.to_vec(),
        auth_file: Some(
            auth_file.unwrap_or_else(|| PathBuf::from("/nonexistent/kantai-test/config.json")),
        ),
        ..Default::default()
    };
    kantai_images::Registry::new(&cfg).unwrap()
}

pub fn progress() -> tokio::sync::watch::Sender<kantai_images::Progress> {
    tokio::sync::watch::channel(kantai_images::Progress::default()).0
}
