//! An instance's OCI bundle: `DIR/rootfs`, an overlay of the image's stored layers with a
//! writable upper directory of the instance's own, and `DIR/config.json`.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

/// Numbers the directories a restart puts aside.
static OLD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

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
        // What the last run wrote goes aside at once (a rename) and is removed on a thread
        // of its own: it can be large, and the next start should not wait for it.
        for d in [&upper, &work] {
            if d.exists() {
                let aside = self.dir.join(format!(
                    "old-{}",
                    OLD.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                ));
                std::fs::rename(d, &aside)?;
                std::thread::spawn(move || std::fs::remove_dir_all(aside));
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

/// The most of an image's `/etc/passwd` or `/etc/group` that is read.
const MAX_ACCOUNT_FILE: u64 = 1 << 20;

/// A file of the container's root as the container would see it: symlinks resolved inside
/// the root (an image's `/etc/passwd -> /etc/shadow` is the image's, never the host's), a
/// regular file only (a FIFO or a device would block or never end), at most 1 MiB. `None`
/// when it is missing or not such a file.
pub fn read_in_root(root: &Path, file: &str) -> Option<String> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    use std::io::Read;
    let dir = std::fs::File::open(root).ok()?;
    let fd = rustix::fs::openat2(
        &dir,
        file.trim_start_matches('/'),
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .ok()?;
    let f = std::fs::File::from(fd);
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    f.take(MAX_ACCOUNT_FILE).read_to_string(&mut text).ok()?;
    Some(text)
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
fn is_mount_point(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(m), Some(parent)) = (std::fs::symlink_metadata(p), p.parent()) else {
        return false;
    };
    std::fs::metadata(parent).is_ok_and(|pm| pm.dev() != m.dev())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_images_account_files_are_read_inside_its_root_and_only_as_regular_files() {
        let root = tempfile::tempdir().expect("root");
        let etc = root.path().join("etc");
        std::fs::create_dir(&etc).expect("etc");
        std::fs::write(etc.join("passwd"), "app:x:1000:1000::/home/app:/bin/sh\n").expect("passwd");
        // An absolute link resolves inside the root (where there is no such file), never
        // to the host's.
        std::os::unix::fs::symlink("/etc/hostname", etc.join("group")).expect("link");
        nix::unistd::mkfifo(&etc.join("fifo"), nix::sys::stat::Mode::S_IRWXU).expect("fifo");
        assert_eq!(
            read_in_root(root.path(), "/etc/passwd").as_deref(),
            Some("app:x:1000:1000::/home/app:/bin/sh\n")
        );
        assert_eq!(read_in_root(root.path(), "/etc/group"), None);
        assert_eq!(read_in_root(root.path(), "/etc/fifo"), None);
        // A link climbing out of the root stays inside it too.
        std::os::unix::fs::symlink("../../../../../../etc/hostname", etc.join("climb"))
            .expect("link");
        assert_eq!(read_in_root(root.path(), "/etc/climb"), None);
    }
}
