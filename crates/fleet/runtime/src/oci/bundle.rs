//! An instance's OCI bundle: `DIR/rootfs`, an overlay of the image's stored layers with a
//! writable upper directory of the instance's own, and `DIR/config.json`.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

/// One instance's bundle directory.
#[derive(Debug)]
pub struct Bundle {
    /// `<state>/containers/<id>`.
    pub dir: PathBuf,
    mounted: bool,
}

impl Bundle {
    /// A bundle at `dir` (nothing is created yet).
    pub fn new(dir: PathBuf) -> Bundle {
        Bundle {
            dir,
            mounted: false,
        }
    }

    /// The root filesystem's mount point.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Mounts a fresh root: the layers (bottom first) read-only under an empty upper
    /// directory, so every start of the instance begins from the image as Kubernetes
    /// restarts a container, and nothing it wrote reaches the shared layers.
    pub fn mount(&mut self, layers: &[PathBuf]) -> std::io::Result<()> {
        self.unmount();
        let (upper, work, root) = (self.dir.join("upper"), self.dir.join("work"), self.rootfs());
        for d in [&upper, &work] {
            if d.exists() {
                std::fs::remove_dir_all(d)?;
            }
        }
        for d in [&upper, &work, &root] {
            std::fs::create_dir_all(d)?;
        }
        if layers.is_empty() {
            return Err(std::io::Error::other("the image has no layers"));
        }
        // overlayfs lists the top layer first.
        let lower: Vec<String> = layers.iter().rev().map(|p| escape(p)).collect();
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            escape(&upper),
            escape(&work)
        );
        // The options must fit in one page; a very deep image does not.
        if options.len() >= 4096 {
            return Err(std::io::Error::other(format!(
                "the image has {} layers, more than one overlay mount can stack here",
                layers.len()
            )));
        }
        nix::mount::mount(
            Some("overlay"),
            &root,
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
        .map_err(std::io::Error::from)?;
        self.mounted = true;
        Ok(())
    }

    /// Writes `config.json`.
    pub fn write_config(&self, spec: &oci_spec::runtime::Spec) -> std::io::Result<()> {
        let json = serde_json::to_vec(spec).map_err(std::io::Error::other)?;
        std::fs::write(self.dir.join("config.json"), json)
    }

    /// Unmounts the root (if mounted).
    pub fn unmount(&mut self) {
        if self.mounted || is_mount_point(&self.rootfs()) {
            let _ = nix::mount::umount2(&self.rootfs(), MntFlags::MNT_DETACH);
        }
        self.mounted = false;
    }

    /// Unmounts and removes everything.
    pub fn remove(mut self) {
        self.unmount();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// overlayfs splits its options at `,` and `:`; paths with them are escaped.
fn escape(p: &Path) -> String {
    p.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace(':', "\\:")
}

/// Whether `p` is a mount point (its device differs from its parent's).
pub fn is_mount_point(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(m), Some(parent)) = (std::fs::symlink_metadata(p), p.parent()) else {
        return false;
    };
    std::fs::metadata(parent).is_ok_and(|pm| pm.dev() != m.dev())
}
