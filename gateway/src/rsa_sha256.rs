//! RSA keys as channel consoles hand them out, and SHA256withRSA (PKCS#1 v1.5) signatures:
//! Alipay's `RSA2` and WeChat Pay v3's `SHA256-RSA2048` are both this scheme.
//!
//! Keys are accepted as PEM (PKCS#1 `RSA PRIVATE KEY` / `RSA PUBLIC KEY`, PKCS#8 `PRIVATE KEY`,
//! SPKI `PUBLIC KEY`) and as the bare base64 body of any of those, which is what the Alipay and
//! WeChat Pay consoles show.

use base64::Engine;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::signature::{Keypair, SignatureEncoding, Signer, Verifier};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;

/// The smallest modulus accepted: channels require 2048-bit keys.
const MIN_MODULUS_BITS: usize = 2048;
/// The largest modulus accepted (bounds the cost of a verification an attacker can trigger).
const MAX_MODULUS_BITS: usize = 4096;

/// A private key for signing. `Debug` prints nothing of it.
#[derive(Clone)]
pub struct PrivateKey(SigningKey<Sha256>);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(***)")
    }
}

/// A public key for verifying.
#[derive(Clone, Debug)]
pub struct PublicKey(VerifyingKey<Sha256>);

/// The PEM body between the armour lines, or the text itself when it has none, as DER bytes.
fn der_of(text: &str) -> Result<Vec<u8>, String> {
    let body: String = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with("-----") && !line.is_empty())
        .collect();
    if body.is_empty() {
        return Err("the key is empty".to_owned());
    }
    base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|_| "the key is neither PEM nor base64".to_owned())
}

fn check_size(bits: usize) -> Result<(), String> {
    if !(MIN_MODULUS_BITS..=MAX_MODULUS_BITS).contains(&bits) {
        return Err(format!(
            "the key has {bits} bits; {MIN_MODULUS_BITS} to {MAX_MODULUS_BITS} are accepted"
        ));
    }
    Ok(())
}

impl PrivateKey {
    /// Parses PEM or bare base64, PKCS#8 or PKCS#1.
    pub fn parse(text: &str) -> Result<PrivateKey, String> {
        let der = der_of(text)?;
        let key = RsaPrivateKey::from_pkcs8_der(&der)
            .or_else(|_| RsaPrivateKey::from_pkcs1_der(&der))
            .map_err(|_| "not an RSA private key (PKCS#8 or PKCS#1)".to_owned())?;
        check_size(key.size() * 8)?;
        key.validate()
            .map_err(|_| "the RSA private key is inconsistent".to_owned())?;
        Ok(PrivateKey(SigningKey::new(key)))
    }

    /// Base64 of the SHA256withRSA signature of `message`.
    pub fn sign_base64(&self, message: &[u8]) -> String {
        let signature: Signature = self.0.sign(message);
        base64::engine::general_purpose::STANDARD.encode(signature.to_bytes())
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }
}

impl PublicKey {
    /// Parses PEM or bare base64, SPKI or PKCS#1.
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        let der = der_of(text)?;
        let key = RsaPublicKey::from_public_key_der(&der)
            .or_else(|_| RsaPublicKey::from_pkcs1_der(&der))
            .map_err(|_| "not an RSA public key (SPKI or PKCS#1)".to_owned())?;
        check_size(key.size() * 8)?;
        Ok(PublicKey(VerifyingKey::new(key)))
    }

    /// Whether `signature_base64` is a SHA256withRSA signature of `message` under this key.
    pub fn verify_base64(&self, message: &[u8], signature_base64: &str) -> bool {
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(signature_base64.trim())
        else {
            return false;
        };
        let Ok(signature) = Signature::try_from(bytes.as_slice()) else {
            return false;
        };
        self.0.verify(message, &signature).is_ok()
    }

    /// `plaintext` sealed with RSAES-OAEP (SHA-1, MGF1 with SHA-1), in base64: how WeChat Pay
    /// wants personal data (a receiver's name) sent to it, under its platform key.
    pub fn encrypt_oaep_base64(&self, plaintext: &[u8]) -> Result<String, String> {
        let key: &RsaPublicKey = self.0.as_ref();
        let sealed = key
            .encrypt(
                &mut rand::thread_rng(),
                rsa::Oaep::new::<sha1::Sha1>(),
                plaintext,
            )
            .map_err(|error| format!("RSA-OAEP: {error}"))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(sealed))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

    /// A fresh 2048-bit key as PKCS#8 PEM and its SPKI PEM.
    pub(crate) fn key_pair() -> (String, String) {
        let key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        let private = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let public = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        (private, public)
    }

    fn bare(pem: &str) -> String {
        pem.lines()
            .filter(|line| !line.starts_with("-----"))
            .collect()
    }

    #[test]
    fn signs_and_verifies_in_every_accepted_form() {
        let (private_pem, public_pem) = key_pair();
        let private = PrivateKey::parse(&private_pem).unwrap();
        let from_bare = PrivateKey::parse(&bare(&private_pem)).unwrap();
        let signature = private.sign_base64(b"a=1&b=2");
        // PKCS#1 v1.5 is deterministic: the same key signs the same bytes identically.
        assert_eq!(signature, from_bare.sign_base64(b"a=1&b=2"));
        for public in [&public_pem, &bare(&public_pem)] {
            let public = PublicKey::parse(public).unwrap();
            assert!(public.verify_base64(b"a=1&b=2", &signature));
            assert!(!public.verify_base64(b"a=1&b=3", &signature));
            assert!(!public.verify_base64(b"a=1&b=2", "not base64!"));
            assert!(!public.verify_base64(b"a=1&b=2", "AAAA"));
        }
    }

    #[test]
    fn refuses_what_is_not_a_usable_key() {
        assert!(PrivateKey::parse("").is_err());
        assert!(PrivateKey::parse("hello world").is_err());
        assert!(
            PublicKey::parse("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err()
        );
        let (private_pem, public_pem) = key_pair();
        assert!(
            PrivateKey::parse(&public_pem).is_err(),
            "a public key is no private key"
        );
        assert!(PublicKey::parse(&private_pem).is_err());
        let small = RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
        let small_pem = small.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        assert!(PrivateKey::parse(&small_pem)
            .unwrap_err()
            .contains("1024 bits"));
    }
}
