//! Reading the user's files (or stdin) with an explicit size limit.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Largest input file accepted.
pub const MAX_INPUT_BYTES: u64 = 8 * 1024 * 1024;

/// A file's name (for messages) and text.
pub struct Input {
    /// The name shown in messages (`-` is shown as `<stdin>`).
    pub name: String,
    /// The content.
    pub text: String,
}

/// Reads `path` (`-` for stdin) as UTF-8 text.
pub fn read(path: &Path) -> anyhow::Result<Input> {
    let mut bytes = Vec::new();
    let name = if path == Path::new("-") {
        std::io::stdin()
            .take(MAX_INPUT_BYTES + 1)
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
        "<stdin>".to_owned()
    } else {
        std::fs::File::open(path)
            .with_context(|| format!("cannot open {}", path.display()))?
            .take(MAX_INPUT_BYTES + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {}", path.display()))?;
        path.display().to_string()
    };
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        bail!("{name} is larger than {MAX_INPUT_BYTES} bytes");
    }
    let text = String::from_utf8(bytes).with_context(|| format!("{name} is not UTF-8 text"))?;
    Ok(Input { name, text })
}

/// Expands directories into their `.yaml`, `.yml` and `.json` files (sorted), like
/// `kubectl apply -f DIR`.
pub fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot list {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    matches!(
                        f.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml" | "json")
                    )
                })
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Loads the fleet config file, or Knative's defaults without one, and registers its
/// plug-ins (modules read relative to the file) so that their names are known.
pub fn config(path: Option<&Path>) -> anyhow::Result<kantai_model::ServingConfig> {
    match path {
        None => Ok(kantai_model::ServingConfig::default()),
        Some(p) => {
            let input = read(p)?;
            let config = kantai_model::ServingConfig::parse(&input.text)
                .map_err(|e| anyhow::anyhow!("invalid fleet config {}:\n{e}", input.name))?;
            install_plugins(&config, p)?;
            Ok(config)
        }
    }
}

/// Loads and registers the plug-ins of the fleet config read from `path`.
pub fn install_plugins(config: &kantai_model::ServingConfig, path: &Path) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    kantai_plugin::install(&config.plugins, |m| {
        std::fs::read(dir.join(m)).map_err(|e| e.to_string())
    })
    .map_err(|e| anyhow::anyhow!("fleet config {}: {e}", path.display()))?;
    Ok(())
}
