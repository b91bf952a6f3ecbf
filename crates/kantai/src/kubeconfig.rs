//! The fleet's credentials: the bearer token (`STATE_DIR/token`) and a kubeconfig
//! (`STATE_DIR/kubeconfig`) that both kubectl and kantai's own client commands read.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The token file in a state directory.
pub fn token_path(state_dir: &Path) -> PathBuf {
    state_dir.join("token")
}

/// The kubeconfig file in a state directory.
pub fn kubeconfig_path(state_dir: &Path) -> PathBuf {
    state_dir.join("kubeconfig")
}

/// Reads a token file (surrounding whitespace ignored); an empty file is an error.
pub fn read_token(path: &Path) -> anyhow::Result<String> {
    let t = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let t = t.trim();
    if t.is_empty() || t.len() > 4096 || !t.bytes().all(|b| b.is_ascii_graphic()) {
        bail!(
            "the token file {} must hold one token of printable characters",
            path.display()
        );
    }
    Ok(t.to_owned())
}

/// The fleet's token: read from `path`, or created there (256 random bits, hex, mode 0600)
/// if the file does not exist yet, so a restarted control plane keeps its clients working.
pub fn ensure_token(path: &Path) -> anyhow::Result<String> {
    if path.exists() {
        return read_token(path);
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for a new token")?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(path, &token)?;
    Ok(token)
}

/// Writes a file only its owner can read (0600 from creation, never world-readable).
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// The API's TLS certificate and key (PEM) for the secure port, kept in the state directory
/// (`tls.crt`, `tls.key` mode 0600) so kubeconfigs stay valid across restarts; made anew
/// when the names it must cover change.
pub fn ensure_certificate(state_dir: &Path, names: &[String]) -> anyhow::Result<(String, String)> {
    let (crt, key, sans) = (
        state_dir.join("tls.crt"),
        state_dir.join("tls.key"),
        state_dir.join("tls.names"),
    );
    let wanted = names.join("\n");
    if let (Ok(c), Ok(k), Ok(n)) = (
        std::fs::read_to_string(&crt),
        std::fs::read_to_string(&key),
        std::fs::read_to_string(&sans),
    ) && n == wanted
    {
        return Ok((c, k));
    }
    let certified = rcgen::generate_simple_self_signed(names.to_vec())
        .context("cannot generate the API's TLS certificate")?;
    let (c, k) = (certified.cert.pem(), certified.signing_key.serialize_pem());
    write_private(&key, &k)?;
    write_private(&crt, &c)?;
    write_private(&sans, &wanted)?;
    Ok((c, k))
}

/// A kubeconfig for the fleet: kubectl talks to the secure port `server` (https, trusting
/// `ca_file`); kantai's own client commands use the plain port `plain_server` (recorded as
/// a cluster extension kubectl ignores). One cluster, user and context named `kantai`,
/// namespace `default`.
pub fn render(server: &str, ca_file: &Path, plain_server: &str, token: &str) -> String {
    // JSON strings are valid YAML scalars, and quote whatever the values hold.
    let q = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kantai\n  cluster:\n    server: {}\n    certificate-authority: {}\n    extensions:\n    - name: {PLAIN_EXTENSION}\n      extension:\n        server: {}\ncontexts:\n- name: kantai\n  context:\n    cluster: kantai\n    user: kantai\n    namespace: default\ncurrent-context: kantai\nusers:\n- name: kantai\n  user:\n    token: {}\npreferences: {{}}\n",
        q(server),
        q(&ca_file.display().to_string()),
        q(plain_server),
        q(token)
    )
}

/// The cluster extension naming the API's plain-HTTP address (used by kantai's client).
const PLAIN_EXTENSION: &str = "kantai.dev/plain-server";

/// The server and token of a kubeconfig's current context.
#[derive(Debug, PartialEq)]
pub struct Credentials {
    /// The API's URL.
    pub server: Option<String>,
    /// The bearer token.
    pub token: Option<String>,
    /// The context's namespace.
    pub namespace: Option<String>,
}

#[derive(serde::Deserialize)]
struct KubeConfig {
    #[serde(rename = "current-context", default)]
    current_context: String,
    #[serde(default)]
    clusters: Vec<Named<ClusterEntry>>,
    #[serde(default)]
    contexts: Vec<Named<ContextEntry>>,
    #[serde(default)]
    users: Vec<Named<UserEntry>>,
}

#[derive(serde::Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "context", alias = "user")]
    value: Option<T>,
}

#[derive(serde::Deserialize)]
struct ClusterEntry {
    server: Option<String>,
    #[serde(default)]
    extensions: Vec<Extension>,
}

#[derive(serde::Deserialize)]
struct Extension {
    name: String,
    extension: Option<ExtensionBody>,
}

#[derive(serde::Deserialize)]
struct ExtensionBody {
    server: Option<String>,
}

#[derive(serde::Deserialize)]
struct ContextEntry {
    cluster: Option<String>,
    user: Option<String>,
    namespace: Option<String>,
}

#[derive(serde::Deserialize)]
struct UserEntry {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
}

/// Reads the current context of a kubeconfig file.
pub fn read(path: &Path) -> anyhow::Result<Credentials> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the kubeconfig {}", path.display()))?;
    let cfg: KubeConfig = serde_saphyr::from_str(&text)
        .with_context(|| format!("invalid kubeconfig {}", path.display()))?;
    let ctx = cfg
        .contexts
        .iter()
        .find(|c| c.name == cfg.current_context)
        .and_then(|c| c.value.as_ref());
    let cluster = ctx
        .and_then(|c| c.cluster.as_deref())
        .and_then(|n| cfg.clusters.iter().find(|c| c.name == n))
        .and_then(|c| c.value.as_ref());
    // kantai's client speaks plain HTTP: it prefers the plain port a kantai kubeconfig names.
    let server = cluster.and_then(|c| {
        c.extensions
            .iter()
            .find(|e| e.name == PLAIN_EXTENSION)
            .and_then(|e| e.extension.as_ref()?.server.clone())
            .or_else(|| c.server.clone())
    });
    let user = ctx
        .and_then(|c| c.user.as_deref())
        .and_then(|n| cfg.users.iter().find(|u| u.name == n))
        .and_then(|u| u.value.as_ref());
    let token = match user {
        Some(UserEntry { token: Some(t), .. }) => Some(t.clone()),
        Some(UserEntry {
            token_file: Some(f),
            ..
        }) => Some(read_token(Path::new(f))?),
        _ => None,
    };
    Ok(Credentials {
        server,
        token,
        namespace: ctx.and_then(|c| c.namespace.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_kubeconfig_reads_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = kubeconfig_path(dir.path());
        let ca = dir.path().join("tls.crt");
        write_private(
            &p,
            &render(
                "https://127.0.0.1:7401",
                &ca,
                "http://127.0.0.1:7400",
                "t0k\"en",
            ),
        )
        .expect("write");
        let c = read(&p).expect("read");
        assert_eq!(c.server.as_deref(), Some("http://127.0.0.1:7400"));
        assert_eq!(c.token.as_deref(), Some("t0k\"en"));
        assert_eq!(c.namespace.as_deref(), Some("default"));
        let mode = std::fs::metadata(&p).expect("meta").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }

    #[test]
    fn the_certificate_is_kept_until_its_names_change() {
        let dir = tempfile::tempdir().expect("tmp");
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let (c1, k1) = ensure_certificate(dir.path(), &names).expect("make");
        assert!(c1.contains("BEGIN CERTIFICATE") && k1.contains("PRIVATE KEY"));
        assert_eq!(ensure_certificate(dir.path(), &names).expect("keep").0, c1);
        let more = vec!["localhost".to_owned(), "10.0.0.1".to_owned()];
        assert_ne!(ensure_certificate(dir.path(), &more).expect("new").0, c1);
    }

    #[test]
    fn a_token_is_created_once_private_and_kept() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = token_path(dir.path());
        let t = ensure_token(&p).expect("create");
        assert_eq!(t.len(), 64);
        assert_eq!(ensure_token(&p).expect("again"), t);
        let mode = std::fs::metadata(&p).expect("meta").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        std::fs::write(&p, "\n").expect("empty");
        assert!(read_token(&p).is_err());
    }
}
