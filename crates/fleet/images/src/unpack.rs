//! Unpacking a layer tar into a directory overlayfs can use as a lowerdir.
//!
//! OCI layers mark deletions with `.wh.NAME` files and opaque directories with `.wh..wh..opq`;
//! overlayfs wants a 0/0 character device named NAME and the `trusted.overlay.opaque=y` xattr.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, makedev, mknod};

use crate::manifest::Compression;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
/// Roughly what an inode and a directory entry cost, so a layer of empty files is not free.
const ENTRY_OVERHEAD: u64 = 512;

/// Why a layer did not unpack.
#[derive(Debug)]
pub(crate) enum UnpackError {
    /// The store's disk failed (or is full) at `path`.
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The blob is not a safe, well-formed tar: the layer is at fault, not the node.
    Bad(String),
    /// The layer unpacks to more than the store may hold (a decompression bomb, or a tiny store).
    TooBig(u64),
}

fn io_at<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> UnpackError + 'a {
    move |source| UnpackError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Errors of the tar reader come from the decompressor or the archive format, unless they
/// are about the destination disk; tell the two apart by errno, which tar wraps one level down.
fn tar_err(context: String, e: io::Error, dst: &Path) -> UnpackError {
    let mut errno = e.raw_os_error();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|i| i as _);
    while let Some(inner) = cur {
        if let Some(io) = inner.downcast_ref::<io::Error>() {
            errno = errno.or(io.raw_os_error());
        }
        cur = inner.source();
    }
    match errno {
        Some(code)
            if code == nix::libc::ENOSPC || code == nix::libc::EDQUOT || code == nix::libc::EIO =>
        {
            UnpackError::Io {
                op: "writing into",
                path: dst.to_owned(),
                source: io::Error::from_raw_os_error(code),
            }
        }
        _ => UnpackError::Bad(format!("{context}: {}", crate::error::chain(&e))),
    }
}

/// A zstd stream may hold several frames back to back (pzstd, appended layers); ruzstd's
/// decoder reads one, so start another while input remains.
struct ZstdFrames<R: BufRead> {
    decoder: Option<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>,
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(dec) = self.decoder.as_mut() else {
                return Ok(0);
            };
            let n = dec.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            let Some(dec) = self.decoder.take() else {
                return Ok(0);
            };
            let mut inner = dec.into_inner();
            if inner.fill_buf()?.is_empty() {
                return Ok(0);
            }
            self.decoder =
                Some(ruzstd::decoding::StreamingDecoder::new(inner).map_err(io::Error::other)?);
        }
    }
}

fn decoder(file: fs::File, compression: Compression) -> Result<Box<dyn Read>, String> {
    let file = BufReader::with_capacity(256 << 10, file);
    Ok(match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        Compression::Zstd => Box::new(ZstdFrames {
            decoder: Some(
                ruzstd::decoding::StreamingDecoder::new(file)
                    .map_err(|e| format!("not a zstd stream: {e}"))?,
            ),
        }),
    })
}

/// The entry's path relative to the layer root; `..` anywhere is refused, since tar's own
/// check would silently skip such an entry and the layer would unpack differently than built.
fn relative(path: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                return Err(format!(
                    "entry {} leaves the layer directory",
                    path.display()
                ));
            }
            Component::Prefix(_) => {
                return Err(format!("entry {} has a path prefix", path.display()));
            }
        }
    }
    Ok(out)
}

/// `dst/rel`, creating missing directories and refusing to pass through a symlink (a layer
/// could point one at `/` and have the whiteout land on the host).
fn inside_dir(dst: &Path, rel: &Path) -> Result<PathBuf, UnpackError> {
    let mut cur = dst.to_owned();
    for c in rel.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(UnpackError::Bad(format!(
                    "a whiteout's directory {} is a symlink",
                    rel.display()
                )));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(UnpackError::Bad(format!(
                    "a whiteout's directory {} is not a directory",
                    rel.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&cur).map_err(io_at("creating", &cur))?
            }
            Err(e) => return Err(io_at("inspecting", &cur)(e)),
        }
    }
    Ok(cur)
}

fn whiteout(dir: &Path, name: &str) -> Result<(), UnpackError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(UnpackError::Bad(format!(
            "whiteout for {name:?} names no file"
        )));
    }
    let target = dir.join(name);
    match fs::symlink_metadata(&target) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(&target).map_err(io_at("removing", &target))?,
        Ok(_) => fs::remove_file(&target).map_err(io_at("removing", &target))?,
        Err(_) => {}
    }
    mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
        .map_err(|e| io_at("creating the whiteout device", &target)(io::Error::from(e)))
}

/// Unpacks `blob` into the (new, empty) directory `dst`; returns the bytes it takes up, and
/// stops before writing more than `limit`.
pub(crate) fn unpack(
    blob: &Path,
    compression: Compression,
    dst: &Path,
    limit: u64,
) -> Result<u64, UnpackError> {
    let file = fs::File::open(blob).map_err(io_at("opening", blob))?;
    let reader = decoder(file, compression).map_err(UnpackError::Bad)?;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    // Only root may chown; an unprivileged store (tests, tools) keeps its own uid.
    archive.set_preserve_ownerships(nix::unistd::geteuid().is_root());
    let mut size = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| tar_err("not a tar archive".into(), e, dst))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| tar_err("the tar archive is corrupt".into(), e, dst))?;
        let raw = entry
            .path()
            .map_err(|e| UnpackError::Bad(format!("an entry has an unreadable path: {e}")))?
            .into_owned();
        let rel = relative(&raw).map_err(UnpackError::Bad)?;
        let Some(name) = rel.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            // The layer root itself (`./`): the directory exists already.
            continue;
        };
        size += ENTRY_OVERHEAD;
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            let dir = inside_dir(dst, rel.parent().unwrap_or(Path::new("")))?;
            if name == OPAQUE {
                xattr::set(&dir, "trusted.overlay.opaque", b"y")
                    .map_err(io_at("marking opaque (xattr trusted.overlay.opaque)", &dir))?;
            } else {
                whiteout(&dir, hidden)?;
            }
            continue;
        }
        // overlayfs's own attributes (opaque, redirect, metacopy) are this store's to set:
        // a layer that carries them could make the stack show what no layer holds.
        if let Ok(Some(pax)) = entry.pax_extensions() {
            for ext in pax.flatten() {
                if ext
                    .key_bytes()
                    .starts_with(b"SCHILY.xattr.trusted.overlay.")
                {
                    return Err(UnpackError::Bad(format!(
                        "entry {} sets overlayfs's own attribute {}",
                        raw.display(),
                        String::from_utf8_lossy(ext.key_bytes())
                    )));
                }
            }
        }
        if entry.header().entry_type().is_file() {
            size += entry.header().size().unwrap_or(0);
        }
        if size > limit {
            return Err(UnpackError::TooBig(limit));
        }
        let unpacked = entry
            .unpack_in(dst)
            .map_err(|e| tar_err(format!("entry {} does not unpack", raw.display()), e, dst))?;
        if !unpacked {
            return Err(UnpackError::Bad(format!(
                "entry {} leaves the layer directory",
                raw.display()
            )));
        }
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_components_are_refused_and_roots_stripped() {
        assert!(relative(Path::new("a/../../etc/passwd")).is_err());
        assert_eq!(
            relative(Path::new("/./usr/bin")).unwrap(),
            PathBuf::from("usr/bin")
        );
        assert_eq!(relative(Path::new("./")).unwrap(), PathBuf::new());
    }
}
