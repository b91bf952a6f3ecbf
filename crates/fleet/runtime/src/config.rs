//! The `runtime` section of the fleet config: which images run as local processes (and with
//! which command), and how every other image is pulled and run as an OCI container.
//!
//! ```yaml
//! runtime:
//!   images:                                        # these run as local processes
//!     - image: "docker.io/bonavadeur/shuka:*"     # `*` matches any text
//!       command: ["{kantai}", "fn", "hello"]       # `{kantai}` is the kantai binary itself
//!     - image: "example.com/api:1.*"
//!       command: ["/opt/api/bin/server"]
//!       args: ["--verbose"]
//!     - image: "scripts/*"                         # the container's own command runs
//!   oci:                                           # every other image is a container
//!     runtime: runc                                # runc, crun or a path; found in PATH when unset
//!     insecure-registries: ["127.0.0.1:5000"]      # plain HTTP; every other registry is HTTPS
//!     auth-file: /root/.docker/config.json         # Docker's credentials file
//!     store-limit: 10Gi                            # unpacked layers kept per node
//!     pids-limit: 4096                             # processes per container
//!     platform: linux/amd64                        # the node's own by default
//! ```
//!
//! The seed's demo image is mapped to the built-in `hello` function by default, so the seed's
//! manifest deploys unchanged on a machine without any OCI runtime.

use kantai_model::decode::{Decode, Fields};
use kantai_model::error::{FieldError, FieldPath, Findings};
use kantai_model::node::Node;

/// The placeholder for the kantai executable in a command.
pub const KANTAI_PLACEHOLDER: &str = "{kantai}";

/// Which images run as processes, and how the others run as containers.
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeConfig {
    /// Image patterns that run as local processes, with their commands, first match wins;
    /// user entries come before the built-in ones.
    pub images: Vec<ImageCommand>,
    /// Whom process instances run as when kantai runs as root (`NAME`, `UID` or `UID:GID`;
    /// default `nobody`; `root` to keep root).
    pub user: Option<String>,
    /// How every other image is pulled and run.
    pub oci: OciConfig,
}

/// One image pattern that runs as a local process, and the command that runs it.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageCommand {
    /// Image reference pattern; `*` matches any text.
    pub image: String,
    /// Program and leading arguments (empty: the container's own `command` runs).
    pub command: Vec<String>,
    /// Default arguments (replaced by the container's `args` when it has any).
    pub args: Vec<String>,
}

/// The `runtime.oci` section: the OCI runtime, registries and the layer store.
#[derive(Clone, Debug, PartialEq)]
pub struct OciConfig {
    /// `runc`, `crun` or a path; `None`: runc, then crun, from `PATH`.
    pub runtime: Option<String>,
    /// Registries (`host[:port]`) reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Docker's `config.json` with registry credentials (default: `$DOCKER_CONFIG`, then
    /// `~/.docker/config.json`).
    pub auth_file: Option<String>,
    /// Bytes of unpacked layers a node keeps before evicting unused ones.
    pub store_limit: u64,
    /// Processes (and threads) one container may have.
    pub pids_limit: i64,
    /// `os/arch[/variant]` picked from multi-platform images (default: the node's).
    pub platform: Option<String>,
}

/// Unpacked layers a node keeps by default: 10 GiB.
pub const DEFAULT_STORE_LIMIT: u64 = 10 << 30;
/// Processes one container may have by default: enough for any function, few enough that a
/// fork bomb stops there instead of at the node's limit.
pub const DEFAULT_PIDS_LIMIT: i64 = 4096;

impl Default for OciConfig {
    fn default() -> Self {
        OciConfig {
            runtime: None,
            insecure_registries: Vec::new(),
            auth_file: None,
            store_limit: DEFAULT_STORE_LIMIT,
            pids_limit: DEFAULT_PIDS_LIMIT,
            platform: None,
        }
    }
}

impl OciConfig {
    /// The image store's and registries' settings (the node's and the control plane's,
    /// which resolves tags with the same credentials).
    pub fn images(&self) -> kantai_images::ImagesConfig {
        let mut c = kantai_images::ImagesConfig {
            insecure_registries: self.insecure_registries.clone(),
            auth_file: self.auth_file.as_ref().map(std::path::PathBuf::from),
            store_limit: self.store_limit,
            ..kantai_images::ImagesConfig::default()
        };
        if let Some(p) = &self.platform {
            let mut parts = p.split('/');
            c.platform = kantai_images::Platform {
                os: parts.next().unwrap_or_default().to_owned(),
                architecture: parts.next().unwrap_or_default().to_owned(),
                variant: parts.next().map(str::to_owned),
            };
        }
        c
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            images: builtin_images(),
            user: None,
            oci: OciConfig::default(),
        }
    }
}

fn builtin_images() -> Vec<ImageCommand> {
    [
        ("docker.io/bonavadeur/shuka:*", "hello"),
        ("bonavadeur/shuka:*", "hello"),
        ("kantai/hello*", "hello"),
        // The protocols' test function: HTTP/1.1, h2c, WebSockets, streams, gRPC.
        ("kantai/echo*", "echo"),
    ]
    .into_iter()
    .map(|(image, function)| ImageCommand {
        image: image.to_owned(),
        command: vec![
            KANTAI_PLACEHOLDER.to_owned(),
            "fn".to_owned(),
            function.to_owned(),
        ],
        args: Vec::new(),
    })
    .collect()
}

impl RuntimeConfig {
    /// The command for an image, if a pattern matches.
    pub fn lookup(&self, image: &str) -> Option<&ImageCommand> {
        self.images.iter().find(|e| glob_match(&e.image, image))
    }
}

/// Matches `text` against `pattern`, where `*` stands for any (possibly empty) text.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

impl Decode for RuntimeConfig {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let mut images: Vec<ImageCommand> = f.or_default("images", out);
        let user: Option<String> = f.opt("user", out);
        let oci: OciConfig = f.or_default("oci", out);
        f.close(out);
        if user.as_deref().is_some_and(|u| u.trim().is_empty()) {
            out.push(FieldError::error(
                path.field("user"),
                "must name a user (NAME, UID or UID:GID)",
            ));
        }
        images.extend(builtin_images());
        Some(RuntimeConfig { images, user, oci })
    }
}

impl Decode for OciConfig {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let d = OciConfig::default();
        let store: Option<kantai_model::units::Quantity> = f.opt("store-limit", out);
        let c = OciConfig {
            runtime: f.opt("runtime", out),
            insecure_registries: f.or_default("insecure-registries", out),
            auth_file: f.opt("auth-file", out),
            store_limit: store.map_or(d.store_limit, |q| q.value().max(0.0) as u64),
            pids_limit: f.opt("pids-limit", out).unwrap_or(d.pids_limit),
            platform: f.opt("platform", out),
        };
        f.close(out);
        if c.runtime.as_deref().is_some_and(|r| r.trim().is_empty()) {
            out.push(FieldError::error(
                path.field("runtime"),
                "must name an OCI runtime: runc, crun or a path",
            ));
        }
        if c.pids_limit < 1 {
            out.push(FieldError::error(
                path.field("pids-limit"),
                "must be at least 1",
            ));
        }
        if let Some(p) = &c.platform
            && !(2..=3).contains(&p.split('/').filter(|s| !s.is_empty()).count())
        {
            out.push(FieldError::error(
                path.field("platform"),
                format!("{p:?} is not os/arch or os/arch/variant (e.g. linux/amd64)"),
            ));
        }
        for (i, r) in c.insecure_registries.iter().enumerate() {
            if r.is_empty() || r.contains('/') {
                out.push(FieldError::error(
                    path.field("insecure-registries").index(i),
                    format!("{r:?} is not a registry host[:port]"),
                ));
            }
        }
        Some(c)
    }
}

impl Decode for ImageCommand {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let e = ImageCommand {
            image: f.req("image", out).unwrap_or_default(),
            command: f.or_default("command", out),
            args: f.or_default("args", out),
        };
        f.close(out);
        if e.command.first().is_some_and(String::is_empty) {
            out.push(FieldError::error(
                path.field("command"),
                "needs at least the program",
            ));
        }
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(
            "docker.io/bonavadeur/shuka:*",
            "docker.io/bonavadeur/shuka:v1.3"
        ));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exact2"));
        assert!(!glob_match("a*b", "ba"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn the_seed_image_runs_the_builtin_hello() {
        let c = RuntimeConfig::default();
        let e = c.lookup("docker.io/bonavadeur/shuka:v1.3").expect("mapped");
        assert_eq!(e.command, ["{kantai}", "fn", "hello"]);
        assert!(c.lookup("nginx:latest").is_none());
    }

    fn decode(text: &str) -> (Option<RuntimeConfig>, Findings) {
        let docs = kantai_model::node::parse_documents(text, Default::default()).expect("yaml");
        let mut out = Findings::new();
        let c = RuntimeConfig::decode(&docs[0], &FieldPath::root().field("runtime"), &mut out);
        (c, out)
    }

    #[test]
    fn the_oci_section_is_read_with_its_defaults() {
        let (c, out) = decode(
            "oci:\n  runtime: crun\n  insecure-registries: [\"127.0.0.1:5000\"]\n  store-limit: 2Gi\n",
        );
        assert!(!out.has_errors(), "{out:?}");
        let oci = c.expect("decodes").oci;
        assert_eq!(oci.runtime.as_deref(), Some("crun"));
        assert_eq!(oci.insecure_registries, ["127.0.0.1:5000"]);
        assert_eq!(oci.store_limit, 2 << 30);
        assert_eq!(oci.pids_limit, DEFAULT_PIDS_LIMIT);
        assert_eq!(oci.images().insecure_registries, ["127.0.0.1:5000"]);
    }

    #[test]
    fn bad_oci_settings_name_their_field() {
        let (_, out) = decode(
            "oci:\n  pids-limit: 0\n  platform: amd64\n  insecure-registries: [\"http://x/y\"]\n  runtimes: runc\n",
        );
        let text: Vec<String> = out.errors().map(|e| e.to_string()).collect();
        for field in [
            "runtime.oci.pids-limit",
            "runtime.oci.platform",
            "runtime.oci.insecure-registries[0]",
            "runtime.oci.runtimes",
        ] {
            assert!(text.iter().any(|t| t.contains(field)), "{field}: {text:?}");
        }
    }

    #[test]
    fn an_image_entry_without_a_command_runs_the_containers_own() {
        let (c, out) = decode("images:\n  - image: \"scripts/*\"\n");
        assert!(!out.has_errors(), "{out:?}");
        let c = c.expect("decodes");
        assert!(
            c.lookup("scripts/tick")
                .is_some_and(|e| e.command.is_empty())
        );
    }
}
