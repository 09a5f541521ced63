//! The checkpoint signing key: HMAC-SHA256 over each checkpoint's commit record.
//!
//! A checkpoint resumes only where the key that signed it is present, so a
//! checkpoint file edited by someone without the key (widened grants, a
//! substituted module, a session id that escapes the directory) is refused.
//! The key lives outside every checkpoint directory:
//!
//! 1. `GRAFLOW_CHECKPOINT_KEY`: 64 hex digits (share one key between machines
//!    that resume each other's checkpoints), else
//! 2. the file `GRAFLOW_CHECKPOINT_KEY_FILE`, else
//! 3. `$XDG_CONFIG_HOME/graflow-host/checkpoint.key`, else
//!    `~/.config/graflow-host/checkpoint.key`.
//!
//! A key file that does not exist is created on first use (mode 0600, 32
//! random bytes as hex).

use hmac::{Hmac, Mac};
use std::path::{Path, PathBuf};

type HmacSha256 = Hmac<sha2::Sha256>;

/// The environment variable holding the key itself.
pub const KEY_ENV: &str = "GRAFLOW_CHECKPOINT_KEY";
/// The environment variable naming the key file.
pub const KEY_FILE_ENV: &str = "GRAFLOW_CHECKPOINT_KEY_FILE";

/// A signing key and its public id (the first 16 hex digits of its SHA-256,
/// shown in `checkpoints show` and in errors so a user can tell keys apart).
#[derive(Clone)]
pub struct SigningKey {
    key: [u8; 32],
    id: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.id)
    }
}

/// Why the key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The environment variable is not 64 hex digits.
    #[error("{KEY_ENV} must be 64 hex digits (32 bytes), e.g. from `openssl rand -hex 32`")]
    BadEnv,
    /// The key file is not 64 hex digits.
    #[error("the checkpoint signing key {} is not 64 hex digits; remove it to have a new key made", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
    },
    /// No place for a key file: neither variable set, no `HOME`.
    #[error("no place for the checkpoint signing key: set {KEY_ENV}, {KEY_FILE_ENV} or HOME")]
    NoHome,
    /// The key file cannot be read or created.
    #[error("checkpoint signing key {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl SigningKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(key: [u8; 32]) -> SigningKey {
        let id = hex::encode(&crate::digest::Sha256::of(&key).as_bytes()[..8]);
        SigningKey { key, id }
    }

    fn from_hex(text: &str) -> Option<SigningKey> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut key).ok()?;
        Some(SigningKey::from_bytes(key))
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where the key file is looked for (none when the key comes from the
    /// environment).
    pub fn location() -> Result<Option<PathBuf>, KeyError> {
        if std::env::var_os(KEY_ENV).is_some() {
            return Ok(None);
        }
        if let Some(file) = std::env::var_os(KEY_FILE_ENV) {
            return Ok(Some(PathBuf::from(file)));
        }
        let config = match std::env::var_os("XDG_CONFIG_HOME") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => PathBuf::from(std::env::var_os("HOME").ok_or(KeyError::NoHome)?).join(".config"),
        };
        Ok(Some(config.join("graflow-host").join("checkpoint.key")))
    }

    /// The key of this machine (see the module docs), made on first use.
    pub fn load_or_create() -> Result<SigningKey, KeyError> {
        if let Some(text) = std::env::var_os(KEY_ENV) {
            return text.to_str().and_then(SigningKey::from_hex).ok_or(KeyError::BadEnv);
        }
        let Some(path) = SigningKey::location()? else { return Err(KeyError::BadEnv) };
        match SigningKey::read(&path) {
            Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                SigningKey::create(&path)
            }
            other => other,
        }
    }

    fn read(path: &Path) -> Result<SigningKey, KeyError> {
        let text = crate::files::read_text_bounded(path, 1024, "the key file size (1 KiB)").map_err(|e| match e {
            crate::files::ReadError::Io { source, .. } => KeyError::Io { path: path.to_path_buf(), source },
            _ => KeyError::BadFile { path: path.to_path_buf() },
        })?;
        SigningKey::from_hex(&text).ok_or_else(|| KeyError::BadFile { path: path.to_path_buf() })
    }

    /// Make a new key file; if another process made one at the same moment,
    /// use that one.
    fn create(path: &Path) -> Result<SigningKey, KeyError> {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let io = |source| KeyError::Io { path: path.to_path_buf(), source };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let key = SigningKey::from_bytes(rand::random());
        let mut tmp = tempfile::Builder::new().prefix(".tmp-key-").tempfile_in(dir).map_err(io)?;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        writeln!(tmp, "{}", hex::encode(key.key)).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        match tmp.persist_noclobber(path) {
            Ok(_) => {
                tracing::info!("made a new checkpoint signing key {} (id {})", path.display(), key.id);
                Ok(key)
            }
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => SigningKey::read(path),
            Err(e) => Err(io(e.error)),
        }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length: this cannot fail.
        <HmacSha256 as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
    }

    /// The MAC of `message`, as hex.
    pub fn sign(&self, message: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(message);
        hex::encode(mac.finalize().into_bytes())
    }

    /// True if `mac_hex` is the MAC of `message` (compared in constant time).
    pub fn verify(&self, message: &[u8], mac_hex: &str) -> bool {
        let Ok(tag) = hex::decode(mac_hex) else { return false };
        let mut mac = self.mac();
        mac.update(message);
        mac.verify_slice(&tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies() {
        let k = SigningKey::from_bytes([7; 32]);
        let mac = k.sign(b"record");
        assert!(k.verify(b"record", &mac));
        assert!(!k.verify(b"recorD", &mac));
        assert!(!SigningKey::from_bytes([8; 32]).verify(b"record", &mac));
        assert!(!k.verify(b"record", "zz"));
    }

    #[test]
    fn key_file_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/checkpoint.key");
        let a = SigningKey::create(&path).unwrap();
        let b = SigningKey::read(&path).unwrap();
        assert_eq!(a.id(), b.id());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = SigningKey::create(&path).unwrap();
        assert_eq!(again.id(), a.id(), "a second maker uses the existing key");
    }
}
