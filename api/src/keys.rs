//! The master key and sealing of secrets inside events (AES-256-GCM).
//!
//! `PAYCENTER_MASTER_KEY` is the base64 of 32 random bytes; without it, `serve` creates
//! `master.key` (mode 0600) in the data directory on first start and reuses it after.

use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;

/// Encrypts and decrypts secrets under the master key. `Debug` prints nothing.
#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

const KEY_FILE_NAME: &str = "master.key";

impl MasterKey {
    /// From 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> MasterKey {
        MasterKey {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(bytes)),
        }
    }

    /// From `PAYCENTER_MASTER_KEY` when set, else from (or into) the key file in `data_dir`.
    pub fn load(env_value: Option<&str>, data_dir: &Path) -> anyhow::Result<MasterKey> {
        let engine = base64::engine::general_purpose::STANDARD;
        if let Some(text) = env_value {
            let bytes = engine
                .decode(text.trim())
                .map_err(|_| anyhow::anyhow!("PAYCENTER_MASTER_KEY is not base64"))?;
            let bytes: [u8; 32] = bytes
                .try_into()
                .map_err(|_| anyhow::anyhow!("PAYCENTER_MASTER_KEY must decode to 32 bytes"))?;
            return Ok(MasterKey::from_bytes(&bytes));
        }
        let path = data_dir.join(KEY_FILE_NAME);
        if path.exists() {
            let text = std::fs::read_to_string(&path)?;
            let bytes = engine
                .decode(text.trim())
                .map_err(|_| anyhow::anyhow!("{} is not base64", path.display()))?;
            let bytes: [u8; 32] = bytes
                .try_into()
                .map_err(|_| anyhow::anyhow!("{} must hold 32 bytes", path.display()))?;
            return Ok(MasterKey::from_bytes(&bytes));
        }
        let key = Aes256Gcm::generate_key(&mut OsRng);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path)?;
        file.write_all(engine.encode(key).as_bytes())?;
        file.sync_all()?;
        Ok(MasterKey {
            cipher: Aes256Gcm::new(&key),
        })
    }

    /// `base64(nonce ‖ ciphertext)` of `plaintext`.
    pub fn seal(&self, plaintext: &[u8]) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(&nonce, plaintext)
            .expect("AES-GCM encryption does not fail");
        let mut sealed = nonce.to_vec();
        sealed.extend(ciphertext);
        base64::engine::general_purpose::STANDARD.encode(sealed)
    }

    /// Reverses [`MasterKey::seal`]; fails on a wrong key or tampering.
    pub fn open(&self, sealed: &str) -> anyhow::Result<Vec<u8>> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(sealed)?;
        if bytes.len() < 12 {
            anyhow::bail!("sealed value too short");
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| anyhow::anyhow!("sealed value does not open under this master key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_round_trips_and_detects_tampering() {
        let key = MasterKey::from_bytes(&[7; 32]);
        let sealed = key.seal(b"whsec_123");
        assert_eq!(key.open(&sealed).unwrap(), b"whsec_123");
        assert!(MasterKey::from_bytes(&[8; 32]).open(&sealed).is_err());
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(&sealed)
            .unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        assert!(key
            .open(&base64::engine::general_purpose::STANDARD.encode(bytes))
            .is_err());
    }

    #[test]
    fn the_key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = MasterKey::load(None, dir.path()).unwrap();
        let sealed = first.seal(b"x");
        let second = MasterKey::load(None, dir.path()).unwrap();
        assert_eq!(second.open(&sealed).unwrap(), b"x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE_NAME))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
