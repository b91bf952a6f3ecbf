//! Encryption at rest for Secrets, as Kubernetes' `EncryptionConfiguration` with the
//! `aesgcm` provider does it: AES-256-GCM, a fresh random 96-bit nonce per write, and each
//! stored value prefixed with the provider and the key's name
//! (`k8s:enc:aesgcm:v1:<keyname>:` + nonce + ciphertext and tag). The object's store key
//! (`secrets/NAMESPACE/NAME`) is the authenticated data, so a value copied under another
//! key does not decrypt.
//!
//! The key is 32 random bytes in the state directory's `encryption-key`, created at first
//! start (mode 0600, written to a temporary file and linked into place, so a crash never
//! leaves half a key). kantai refuses to start when that file has another size, is not a
//! regular file, or can be read by the group or others: a key that may have leaked, or a
//! file that is not a key, is for the operator to look at, not for kantai to "fix".

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// The file name of the key in the state directory.
pub const KEY_FILE: &str = "encryption-key";

/// Kubernetes' prefix of a value its `aesgcm` provider wrote.
pub const PREFIX: &[u8] = b"k8s:enc:aesgcm:v1:";

/// The key's length: AES-256.
pub const KEY_LEN: usize = 32;

/// What can go wrong with the key or a stored value.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    /// The key file could not be read or created.
    #[error("the encryption key {path}: {message}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A stored value does not decrypt with the key.
    #[error("{key}: {message} (key file {path})")]
    Decrypt {
        /// The object's store key (`secrets/NAMESPACE/NAME`).
        key: String,
        /// The key file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Encryption failed (the system's random generator).
    #[error("cannot encrypt {key}: {message}")]
    Encrypt {
        /// The object's store key.
        key: String,
        /// Why.
        message: String,
    },
}

/// The store's key: encrypts and decrypts stored values. Its `Debug` shows the key's name
/// and file, never the key.
pub struct Encryption {
    key: LessSafeKey,
    /// The key's name in stored values: `k` and the first 8 hex digits of its SHA-256, so a
    /// value written with another key is told apart from a corrupt one.
    name: String,
    path: PathBuf,
    rng: SystemRandom,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryption")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn key_error(path: &Path, message: impl Into<String>) -> EncryptionError {
    EncryptionError::Key {
        path: path.to_owned(),
        message: message.into(),
    }
}

impl Encryption {
    /// Reads the key from `dir`'s key file, creating it when there is none and `create` is
    /// true (a store that already holds encrypted values must not get a new key: every one
    /// of them would be unreadable).
    pub fn open(dir: &Path, create: bool) -> Result<Encryption, EncryptionError> {
        let path = dir.join(KEY_FILE);
        let bytes = match std::fs::symlink_metadata(&path) {
            Ok(meta) => {
                if !meta.file_type().is_file() {
                    return Err(key_error(
                        &path,
                        "is not a regular file; it must hold the 32-byte key kantai created",
                    ));
                }
                let mode = meta.mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(key_error(
                        &path,
                        format!(
                            "can be read or written by others (mode {mode:04o}); it must be 0600. \
                             If nobody else could have read it, `chmod 600` it and start again; \
                             otherwise treat the key as leaked"
                        ),
                    ));
                }
                std::fs::read(&path).map_err(|e| key_error(&path, format!("cannot read: {e}")))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => create_key(dir, &path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(key_error(
                    &path,
                    "is missing, but the store holds secrets encrypted with a key: restore the key \
                     file from where it was backed up",
                ));
            }
            Err(e) => return Err(key_error(&path, format!("cannot read: {e}"))),
        };
        if bytes.len() != KEY_LEN {
            return Err(key_error(
                &path,
                format!(
                    "holds {} bytes; an AES-256 key is exactly {KEY_LEN}",
                    bytes.len()
                ),
            ));
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        let name = format!(
            "k{}",
            digest.as_ref()[..4]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| key_error(&path, "is not a valid AES-256 key"))?;
        Ok(Encryption {
            key: LessSafeKey::new(unbound),
            name,
            path,
            rng: SystemRandom::new(),
        })
    }

    /// The key's name, as stored values carry it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn header(&self) -> Vec<u8> {
        [PREFIX, self.name.as_bytes(), b":"].concat()
    }

    /// Encrypts `plain`, the value stored under `key`.
    pub fn seal(&self, key: &str, plain: &[u8]) -> Result<Vec<u8>, EncryptionError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| EncryptionError::Encrypt {
                key: key.to_owned(),
                message: "the system's random generator failed".into(),
            })?;
        let mut out = self.header();
        out.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| EncryptionError::Encrypt {
                key: key.to_owned(),
                message: "AES-GCM failed".into(),
            })?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts a value stored under `key`. A value without the prefix is returned as it is
    /// (`None`): it was stored before encryption existed.
    pub fn open_value(&self, key: &str, stored: &[u8]) -> Result<Option<Vec<u8>>, EncryptionError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(None);
        };
        let fail = |message: String| EncryptionError::Decrypt {
            key: key.to_owned(),
            path: self.path.clone(),
            message,
        };
        let colon = rest
            .iter()
            .position(|b| *b == b':')
            .ok_or_else(|| fail("the stored value has no key name".into()))?;
        let name = String::from_utf8_lossy(&rest[..colon]);
        if name != self.name {
            return Err(fail(format!(
                "was encrypted with key {name}, but the key file holds key {}: was the key \
                 file replaced? Put the original back",
                self.name
            )));
        }
        let body = &rest[colon + 1..];
        let (nonce, sealed) = body
            .split_at_checked(NONCE_LEN)
            .ok_or_else(|| fail("the stored value is truncated".into()))?;
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| fail("the stored value is truncated".into()))?;
        let mut buf = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(key.as_bytes()), &mut buf)
            .map_err(|_| {
                fail(format!(
                    "does not decrypt with key {}: the stored value is corrupt or was \
                     written under another name",
                    self.name
                ))
            })?;
        Ok(Some(plain.to_vec()))
    }
}

/// Makes a new key file: 32 random bytes in a temporary file of mode 0600, synced, then
/// linked to its name (which fails, rather than replaces, if another process made one
/// meanwhile) and the directory synced.
fn create_key(dir: &Path, path: &Path) -> Result<Vec<u8>, EncryptionError> {
    let mut key = vec![0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| key_error(path, "cannot create: the system's random generator failed"))?;
    let tmp = dir.join(format!(".{KEY_FILE}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        // The umask cannot widen 0600, but a umask-less mode is what is promised.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(&key)?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    let result = write();
    let _ = std::fs::remove_file(&tmp);
    match result {
        Ok(()) => Ok(key),
        // Another control plane on this state dir made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read(path).map_err(|e| key_error(path, format!("cannot read: {e}")))
        }
        Err(e) => Err(key_error(path, format!("cannot create: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_under_their_key_only() {
        let dir = tempfile::tempdir().expect("tmp");
        let e = Encryption::open(dir.path(), true).expect("key");
        let sealed = e.seal("secrets/default/db", b"hunter2").expect("seal");
        assert!(sealed.starts_with(PREFIX));
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            e.open_value("secrets/default/db", &sealed).expect("open"),
            Some(b"hunter2".to_vec())
        );
        // Moved under another object's key: refused, naming the object.
        let err = e
            .open_value("secrets/default/other", &sealed)
            .expect_err("another key");
        assert!(
            err.to_string().starts_with("secrets/default/other: "),
            "{err}"
        );
        // Two writes of the same value differ (fresh nonces).
        assert_ne!(
            sealed,
            e.seal("secrets/default/db", b"hunter2").expect("seal")
        );
        assert_eq!(e.open_value("x", b"{}").expect("plain"), None);
    }

    #[test]
    fn the_key_file_is_private_and_checked() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join(KEY_FILE);
        let first = Encryption::open(dir.path(), true).expect("create");
        let meta = std::fs::metadata(&path).expect("key file");
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(meta.len(), KEY_LEN as u64);
        assert_eq!(
            Encryption::open(dir.path(), true).expect("reopen").name(),
            first.name()
        );
        assert!(!format!("{first:?}").contains("key:"), "{first:?}");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = Encryption::open(dir.path(), true).expect_err("group-readable");
        assert!(err.to_string().contains("mode 0644"), "{err}");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(&path, b"short").expect("write");
        let err = Encryption::open(dir.path(), true).expect_err("wrong size");
        assert!(err.to_string().contains("holds 5 bytes"), "{err}");

        std::fs::remove_file(&path).expect("rm");
        let err = Encryption::open(dir.path(), false).expect_err("missing");
        assert!(err.to_string().contains("is missing"), "{err}");
    }
}
