//! The master key and sealing of secrets inside events (AES-256-GCM).
//!
//! `PAYCENTER_MASTER_KEY` is the base64 of 32 random bytes; without it, `serve` creates
//! `master.key` (mode 0600) in the data directory on first start and reuses it after.

use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Encrypts and decrypts secrets under the master key. `Debug` prints nothing.
#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
    /// HMAC key of checkout links, derived from the master key (so every node sharing the
    /// master key makes and accepts the same links).
    link_key: zeroize::Zeroizing<[u8; 32]>,
    /// HMAC key of the sealed chain checkpoint (see `chain_audit`), derived likewise.
    checkpoint_key: zeroize::Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

const KEY_FILE_NAME: &str = "master.key";

/// The SHA-256 of an app's API key, as its registration records it (keys are never stored).
pub fn api_key_sha256(api_key: &str) -> String {
    use sha2::Digest;
    hex::encode(Sha256::digest(api_key.as_bytes()))
}

/// Bytes of HMAC in a checkout token.
const CHECKOUT_TOKEN_BYTES: usize = 16;

impl MasterKey {
    /// From 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> MasterKey {
        let derive = |purpose: &[u8]| {
            let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(bytes).expect("any key length");
            derive.update(purpose);
            zeroize::Zeroizing::new(derive.finalize().into_bytes().into())
        };
        MasterKey {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(bytes)),
            link_key: derive(b"paycenter checkout links v1"),
            checkpoint_key: derive(b"paycenter chain checkpoint v1"),
        }
    }

    fn checkpoint_mac(&self, position: u64, hash: &[u8; 32]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.checkpoint_key.as_slice())
            .expect("any key length");
        mac.update(&position.to_be_bytes());
        mac.update(hash);
        mac
    }

    /// The MAC sealing a chain checkpoint (a position and the hash of the event there).
    pub fn chain_checkpoint_mac(&self, position: u64, hash: &[u8; 32]) -> [u8; 32] {
        self.checkpoint_mac(position, hash)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Whether `mac` seals this checkpoint (compared in constant time).
    pub fn checks_chain_checkpoint(&self, position: u64, hash: &[u8; 32], mac: &[u8]) -> bool {
        self.checkpoint_mac(position, hash)
            .verify_slice(mac)
            .is_ok()
    }

    fn link_mac(&self, trade_no: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.link_key.as_slice())
            .expect("any key length");
        mac.update(b"checkout\n");
        mac.update(trade_no.as_bytes());
        mac
    }

    /// The token of a payment's checkout link: 128 bits of an HMAC of its trade number, so a
    /// link cannot be made from a trade number alone.
    pub fn checkout_token(&self, trade_no: &str) -> String {
        let tag = self.link_mac(trade_no).finalize().into_bytes();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag[..CHECKOUT_TOKEN_BYTES])
    }

    /// Whether `token` is the checkout token of `trade_no` (compared in constant time).
    pub fn checks_checkout_token(&self, trade_no: &str, token: &str) -> bool {
        let Ok(tag) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        tag.len() == CHECKOUT_TOKEN_BYTES
            && self.link_mac(trade_no).verify_truncated_left(&tag).is_ok()
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
        Ok(MasterKey::from_bytes(&key.into()))
    }

    /// `v2.` + `base64(nonce ‖ ciphertext)` of `plaintext`, bound to `owner` (the channel
    /// account or app id) as AES-GCM associated data: moved into another owner's event, the
    /// blob no longer opens.
    pub fn seal(&self, owner: &str, plaintext: &[u8]) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = associated_data(owner);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encryption does not fail");
        let mut sealed = nonce.to_vec();
        sealed.extend(ciphertext);
        format!(
            "{SEALED_V2_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(sealed)
        )
    }

    /// Reverses [`MasterKey::seal`] for the same `owner`; fails on a wrong key, another owner
    /// or tampering. Blobs sealed before owners were bound (no `v2.` prefix) open without it.
    pub fn open(&self, owner: &str, sealed: &str) -> anyhow::Result<Vec<u8>> {
        let (encoded, aad) = match sealed.strip_prefix(SEALED_V2_PREFIX) {
            Some(encoded) => (encoded, associated_data(owner)),
            None => (sealed, String::new()),
        };
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded)?;
        if bytes.len() < 12 {
            anyhow::bail!("sealed value too short");
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| {
                anyhow::anyhow!("sealed value does not open under this master key for {owner}")
            })
    }
}

/// Marks blobs bound to their owner.
const SEALED_V2_PREFIX: &str = "v2.";

fn associated_data(owner: &str) -> String {
    format!("paycenter sealed secret of {owner}")
}

/// Constant-time comparison of two secrets (the admin token, a session's or a form's token), so
/// none can be guessed byte by byte from timing: both are hashed first, then compared whole.
pub fn same_secret(left: &str, right: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (left, right) = (
        Sha256::digest(left.as_bytes()),
        Sha256::digest(right.as_bytes()),
    );
    left.iter()
        .zip(right.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_round_trips_and_detects_tampering() {
        let key = MasterKey::from_bytes(&[7; 32]);
        let sealed = key.seal("app_1", b"whsec_123");
        assert_eq!(key.open("app_1", &sealed).unwrap(), b"whsec_123");
        assert!(MasterKey::from_bytes(&[8; 32])
            .open("app_1", &sealed)
            .is_err());
        let encoded = sealed.strip_prefix(SEALED_V2_PREFIX).unwrap();
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        let tampered = format!(
            "{SEALED_V2_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        );
        assert!(key.open("app_1", &tampered).is_err());
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_owner() {
        let key = MasterKey::from_bytes(&[7; 32]);
        let sealed = key.seal("ca_1", b"{\"secret\":1}");
        assert!(key.open("ca_2", &sealed).is_err());
        // Stripping the prefix to pass as an unbound blob does not help either.
        let unbound = sealed.strip_prefix(SEALED_V2_PREFIX).unwrap();
        assert!(key.open("ca_2", unbound).is_err());
    }

    #[test]
    fn the_key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = MasterKey::load(None, dir.path()).unwrap();
        let sealed = first.seal("app_1", b"x");
        let second = MasterKey::load(None, dir.path()).unwrap();
        assert_eq!(second.open("app_1", &sealed).unwrap(), b"x");
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
