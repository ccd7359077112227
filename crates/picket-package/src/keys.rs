//! Release signing keys (Ed25519). The secret key file is PKCS#8 PEM (`PRIVATE KEY`, readable
//! by OpenSSL); the public key file (`KEY.pub`) is one line of base64 of the 32-byte key,
//! which is also how activation files carry it. Public keys are also accepted as SPKI PEM.
//! A key's id is the first 16 hex digits of the SHA-256 of its 32 bytes.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::{PackageError, Result};

/// DER prefix of an Ed25519 PKCS#8 v1 private key (RFC 8410); the 32-byte seed follows.
const PKCS8_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32-byte key follows.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// An Ed25519 release signing key (kept offline).
pub struct SecretKey(SigningKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey").field("key_id", &self.public().key_id()).finish_non_exhaustive()
    }
}

impl SecretKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Result<SecretKey> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| PackageError::Key(format!("the OS random number generator failed: {e}")))?;
        Ok(SecretKey::from_seed(seed))
    }

    /// The key with this 32-byte seed (tests and fixtures).
    pub fn from_seed(seed: [u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(&seed))
    }

    /// Its public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// The key as a PKCS#8 PEM file.
    pub fn to_pem(&self) -> String {
        let mut der = PKCS8_PREFIX.to_vec();
        der.extend_from_slice(self.0.as_bytes());
        pem("PRIVATE KEY", &der)
    }

    /// Reads a PKCS#8 PEM file written by `to_pem` (or `openssl genpkey -algorithm ed25519`).
    pub fn from_pem(text: &str) -> Result<SecretKey> {
        let der = unpem(text, "PRIVATE KEY").map_err(|e| {
            PackageError::Key(format!("not a release secret key ({e}); make one with `picket release keygen`"))
        })?;
        let seed = der
            .strip_prefix(&PKCS8_PREFIX[..])
            .and_then(|s| <[u8; 32]>::try_from(s).ok())
            .ok_or_else(|| PackageError::Key("the PRIVATE KEY is not an Ed25519 key".into()))?;
        Ok(SecretKey::from_seed(seed))
    }
}

/// An Ed25519 public key packages are checked against.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

impl PublicKey {
    /// Parses a public key: one line of base64 of the 32 bytes (what `KEY.pub` and activation
    /// files hold), or a `PUBLIC KEY` PEM block.
    pub fn parse(text: &str) -> Result<PublicKey> {
        let text = text.trim();
        let bytes: Vec<u8> = if text.starts_with("-----BEGIN") {
            let der = unpem(text, "PUBLIC KEY").map_err(|e| PackageError::Key(format!("not a public key: {e}")))?;
            der.strip_prefix(&SPKI_PREFIX[..])
                .map(<[u8]>::to_vec)
                .ok_or_else(|| PackageError::Key("the PUBLIC KEY is not an Ed25519 key".into()))?
        } else {
            STANDARD.decode(text).map_err(|e| {
                PackageError::Key(format!("not a release public key (expected base64 of 32 bytes, as in KEY.pub): {e}"))
            })?
        };
        let arr = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
            PackageError::Key(format!("a release public key has 32 bytes; this one has {}", bytes.len()))
        })?;
        VerifyingKey::from_bytes(&arr)
            .map(PublicKey)
            .map_err(|_| PackageError::Key("not a valid Ed25519 public key".into()))
    }

    /// Parses every key of a list (an activation file's `package_signing_keys`); the first
    /// unusable one is an error naming its position.
    pub fn parse_all<S: AsRef<str>>(texts: &[S]) -> Result<Vec<PublicKey>> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| PublicKey::parse(t.as_ref()).map_err(|e| PackageError::Key(format!("key #{}: {e}", i + 1))))
            .collect()
    }

    /// The key as one line of base64 (the contents of `KEY.pub`, without the newline).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.as_bytes())
    }

    /// First 16 hex digits of the SHA-256 of the key: how signatures name their key.
    pub fn key_id(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        hex::encode(&digest[..8])
    }

    /// Whether `signature` is this key's (strict Ed25519) signature of `message`.
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        self.0.verify_strict(message, &Signature::from_bytes(signature)).is_ok()
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn unpem(text: &str, label: &str) -> std::result::Result<Vec<u8>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin).ok_or_else(|| format!("no {begin} line"))? + begin.len();
    let stop = text[start..].find(&end).ok_or_else(|| format!("no {end} line"))? + start;
    let body: String = text[start..stop].chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(body).map_err(|e| format!("bad base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_files() {
        let k = SecretKey::generate().unwrap();
        let pem = k.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        let back = SecretKey::from_pem(&pem).unwrap();
        assert_eq!(back.public(), k.public());
        let line = k.public().to_base64();
        assert_eq!(PublicKey::parse(&format!("{line}\n")).unwrap(), k.public());
        let spki = pem_of_public(&k.public());
        assert_eq!(PublicKey::parse(&spki).unwrap(), k.public());
        assert_eq!(k.public().key_id().len(), 16);
        assert_eq!(PublicKey::parse_all(&[line.clone(), spki.clone()]).unwrap(), vec![k.public(), k.public()]);
        assert!(PublicKey::parse_all(&[line.as_str(), "nope"]).unwrap_err().to_string().starts_with("key #2"));
        let sig = k.sign(b"hello");
        assert!(k.public().verifies(b"hello", &sig));
        assert!(!k.public().verifies(b"hellO", &sig));
    }

    fn pem_of_public(p: &PublicKey) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(p.0.as_bytes());
        pem("PUBLIC KEY", &der)
    }

    #[test]
    fn wrong_files_are_refused_with_a_hint() {
        let k = SecretKey::from_seed([7; 32]);
        let e = SecretKey::from_pem(&k.public().to_base64()).unwrap_err().to_string();
        assert!(e.contains("picket release keygen"), "{e}");
        assert!(PublicKey::parse("not base64!").is_err());
        assert!(PublicKey::parse(&STANDARD.encode([1u8; 31])).unwrap_err().to_string().contains("31"));
        assert!(PublicKey::parse(&k.to_pem()).is_err(), "a secret key is not a public key");
    }

    #[test]
    fn openssl_style_pkcs8_is_read() {
        // `openssl genpkey -algorithm ed25519` output for the RFC 8410 example key.
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
        let k = SecretKey::from_pem(pem).unwrap();
        assert_eq!(k.public().to_base64(), "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=");
    }
}
