//! The `runtime` section of the fleet config: which command runs for an image.
//!
//! ```yaml
//! runtime:
//!   images:
//!     - image: "docker.io/bonavadeur/shuka:*"     # `*` matches any text
//!       command: ["{kantai}", "fn", "hello"]       # `{kantai}` is the kantai binary itself
//!     - image: "example.com/api:1.*"
//!       command: ["/opt/api/bin/server"]
//!       args: ["--verbose"]
//! ```
//!
//! A container with its own `command` needs no entry. The seed's demo image is mapped to the
//! built-in `hello` function by default, so the seed's manifest deploys unchanged.

use kantai_model::decode::{Decode, Fields};
use kantai_model::error::{FieldError, FieldPath, Findings};
use kantai_model::node::Node;

/// The placeholder for the kantai executable in a command.
pub const KANTAI_PLACEHOLDER: &str = "{kantai}";

/// How images map to commands.
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeConfig {
    /// Image patterns and their commands, first match wins; user entries come before the
    /// built-in ones.
    pub images: Vec<ImageCommand>,
    /// Whom instances run as when kantai runs as root (`NAME`, `UID` or `UID:GID`; default
    /// `nobody`; `root` to keep root).
    pub user: Option<String>,
}

/// One image pattern and the command that runs it.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageCommand {
    /// Image reference pattern; `*` matches any text.
    pub image: String,
    /// Program and leading arguments.
    pub command: Vec<String>,
    /// Default arguments (replaced by the container's `args` when it has any).
    pub args: Vec<String>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            images: builtin_images(),
            user: None,
        }
    }
}

fn builtin_images() -> Vec<ImageCommand> {
    [
        "docker.io/bonavadeur/shuka:*",
        "bonavadeur/shuka:*",
        "kantai/hello*",
    ]
    .into_iter()
    .map(|image| ImageCommand {
        image: image.to_owned(),
        command: vec![
            KANTAI_PLACEHOLDER.to_owned(),
            "fn".to_owned(),
            "hello".to_owned(),
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
        f.finish(&["images", "user"], out);
        if user.as_deref().is_some_and(|u| u.trim().is_empty()) {
            out.push(FieldError::error(
                path.field("user"),
                "must name a user (NAME, UID or UID:GID)",
            ));
        }
        images.extend(builtin_images());
        Some(RuntimeConfig { images, user })
    }
}

impl Decode for ImageCommand {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let e = ImageCommand {
            image: f.req("image", out).unwrap_or_default(),
            command: f.req("command", out).unwrap_or_default(),
            args: f.or_default("args", out),
        };
        f.finish(&["image", "command", "args"], out);
        if e.command.is_empty() || e.command[0].is_empty() {
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
}
