//! Registry credentials from a Docker `config.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde_json::Value;

use crate::ImageError;

/// A file larger than this is not a credentials file; refuse rather than read it whole.
const MAX_AUTH_FILE: u64 = 1 << 20;

/// Credentials for one registry, and where they came from (for error messages).
#[derive(Clone)]
pub(crate) struct Credential {
    pub auth: RegistryAuth,
    pub description: String,
}

/// Credentials per registry host (`docker.io`, `registry.example:5000`).
#[derive(Clone, Default)]
pub(crate) struct Credentials {
    by_registry: HashMap<String, Credential>,
}

impl Credentials {
    /// The credentials for `registry`, anonymous when the file has none.
    pub fn for_registry(&self, registry: &str) -> (RegistryAuth, String) {
        match self.by_registry.get(&registry_key(registry)) {
            Some(c) => (c.auth.clone(), c.description.clone()),
            None => (RegistryAuth::Anonymous, "no credentials".to_owned()),
        }
    }

    /// Reads `explicit`, or Docker's default locations when `None`. A missing file is anonymous.
    pub fn load(explicit: Option<&Path>) -> Result<Credentials, ImageError> {
        let path = match explicit {
            Some(p) => p.to_owned(),
            None => match default_path() {
                Some(p) => p,
                None => return Ok(Credentials::default()),
            },
        };
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(path = %path.display(), "no registry credentials file; pulling anonymously");
                return Ok(Credentials::default());
            }
            Err(e) => return Err(auth_err(&path, format!("cannot read it: {e}"))),
        };
        if meta.len() > MAX_AUTH_FILE {
            return Err(auth_err(
                &path,
                format!(
                    "it is {} bytes, more than the {MAX_AUTH_FILE} a credentials file may have",
                    meta.len()
                ),
            ));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| auth_err(&path, format!("cannot read it: {e}")))?;
        parse(&path, &text)
    }
}

fn default_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

fn auth_err(path: &Path, message: String) -> ImageError {
    ImageError::AuthFile {
        path: path.to_owned(),
        message,
    }
}

/// Docker writes keys as `https://index.docker.io/v1/`, `registry:5000` or `http://registry:5000`;
/// all of them name a host.
fn registry_key(raw: &str) -> String {
    let s = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .unwrap_or(raw);
    let host = s.split('/').next().unwrap_or(s).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        _ => host,
    }
}

pub(crate) fn parse(path: &Path, text: &str) -> Result<Credentials, ImageError> {
    let root: Value = serde_json::from_str(text).map_err(|e| {
        auth_err(
            path,
            format!(
                "not valid JSON at line {} column {}: {e}",
                e.line(),
                e.column()
            ),
        )
    })?;
    let Some(root) = root.as_object() else {
        return Err(auth_err(path, "the top level is not a JSON object".into()));
    };
    if root.contains_key("credsStore") || root.contains_key("credHelpers") {
        tracing::warn!(path = %path.display(), "credential helpers (credsStore, credHelpers) are not supported; only `auths` entries are used");
    }
    let mut out = Credentials::default();
    let Some(auths) = root.get("auths") else {
        return Ok(out);
    };
    let Some(auths) = auths.as_object() else {
        return Err(auth_err(path, "key `auths` is not an object".into()));
    };
    for (registry, entry) in auths {
        let key = |field: &str| format!("auths[{registry:?}].{field}");
        let Some(entry) = entry.as_object() else {
            return Err(auth_err(
                path,
                format!("key auths[{registry:?}] is not an object"),
            ));
        };
        let field = |name: &str| -> Result<Option<&str>, ImageError> {
            match entry.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(auth_err(path, format!("key {} is not a string", key(name)))),
            }
        };
        let from = path.display();
        let cred = if let Some(token) = field("registrytoken")?.or(field("identitytoken")?) {
            Credential {
                auth: RegistryAuth::Bearer(token.to_owned()),
                description: format!("the token from {from}"),
            }
        } else if let Some(auth) = field("auth")? {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| auth_err(path, format!("key {} is not base64: {e}", key("auth"))))?;
            let decoded = String::from_utf8(decoded).map_err(|_| {
                auth_err(
                    path,
                    format!("key {} does not decode to UTF-8 text", key("auth")),
                )
            })?;
            let Some((user, pass)) = decoded.split_once(':') else {
                return Err(auth_err(
                    path,
                    format!("key {} does not decode to `user:password`", key("auth")),
                ));
            };
            Credential {
                auth: RegistryAuth::Basic(user.to_owned(), pass.to_owned()),
                description: format!("user {user} from {from}"),
            }
        } else if let Some(user) = field("username")? {
            let pass = field("password")?.ok_or_else(|| {
                auth_err(
                    path,
                    format!(
                        "key {} is set but {} is not",
                        key("username"),
                        key("password")
                    ),
                )
            })?;
            Credential {
                auth: RegistryAuth::Basic(user.to_owned(), pass.to_owned()),
                description: format!("user {user} from {from}"),
            }
        } else {
            continue;
        };
        out.by_registry.insert(registry_key(registry), cred);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(c: &Credentials, reg: &str) -> Option<(String, String)> {
        match c.for_registry(reg).0 {
            RegistryAuth::Basic(u, p) => Some((u, p)),
            _ => None,
        }
    }

    #[test]
    fn auth_field_and_username_password_are_read_by_host() {
        let text = r#"{"auths": {
            "https://index.docker.io/v1/": {"auth": "YWxpY2U6czNjcmV0"},
            "http://127.0.0.1:5000": {"username": "bob", "password": "pw"},
            "ghcr.io": {"identitytoken": "tok"}}}"#;
        let c = parse(Path::new("/c.json"), text).unwrap();
        assert_eq!(
            user(&c, "docker.io"),
            Some(("alice".into(), "s3cret".into()))
        );
        assert_eq!(
            user(&c, "127.0.0.1:5000"),
            Some(("bob".into(), "pw".into()))
        );
        assert_eq!(
            c.for_registry("ghcr.io").0,
            RegistryAuth::Bearer("tok".into())
        );
        assert_eq!(c.for_registry("quay.io").0, RegistryAuth::Anonymous);
    }

    #[test]
    fn errors_name_the_file_and_the_key_or_line() {
        let e = parse(Path::new("/c.json"), "{\n \"auths\": {\n")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("/c.json") && e.contains("line 3"), "{e}");
        let e = parse(Path::new("/c.json"), r#"{"auths": {"r": {"auth": "%%%"}}}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(r#"auths["r"].auth is not base64"#), "{e}");
        let e = parse(
            Path::new("/c.json"),
            r#"{"auths": {"r": {"auth": "bm9jb2xvbg=="}}}"#,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("user:password"), "{e}");
    }

    #[test]
    fn a_missing_file_means_anonymous() {
        let c = Credentials::load(Some(Path::new("/nonexistent/kantai/config.json"))).unwrap();
        assert_eq!(c.for_registry("docker.io").0, RegistryAuth::Anonymous);
    }
}
