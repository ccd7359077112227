//! Random identifiers and secrets: record ids in UUID form, and hex secrets.

use sha2::{Digest, Sha256};

/// `n` random bytes from the operating system.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS random source failing is not recoverable; every secret depends on it.
    getrandom::fill(&mut buf).unwrap_or_else(|e| panic!("the OS random number generator failed: {e}"));
    buf
}

/// A random UUID (version 4) in its usual text form.
pub(crate) fn new_uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// 32 random bytes as 64 hex digits: activation tokens and the body of API tokens.
pub(crate) fn new_secret_hex() -> String {
    hex::encode(random_bytes::<32>())
}

/// SHA-256 of a secret as hex, the only form in which secrets are stored.
pub(crate) fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let u = new_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(new_uuid(), u);
        assert_eq!(new_secret_hex().len(), 64);
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
