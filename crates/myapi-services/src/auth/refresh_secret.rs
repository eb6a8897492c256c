//! Refresh tokens as secrets: how one is made, what is stored of it (a hash), and how a
//! rotation's successor is kept for a double submit without storing a usable token.
//!
//! A successor is sealed with ChaCha20-Poly1305 under a key derived (HKDF-SHA256) from the
//! token it replaced and the successor's hash. Only the holder of that token can open it;
//! the database holds the token's SHA-256, from which the key cannot be derived. Each key
//! seals exactly one message (a retried rotation seals another successor under another
//! key), so a fixed nonce is safe.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};

/// What is stored of a refresh token: its SHA-256, base64url.
pub(crate) fn hash_secret(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

fn cipher_for(used: &str, successor_hash: &str) -> Option<ChaCha20Poly1305> {
    let mut key = [0u8; 32];
    let info = [b"myapi refresh successor v1 ", successor_hash.as_bytes()].concat();
    Hkdf::<Sha256>::new(None, used.as_bytes())
        .expand(&info, &mut key)
        .ok()?;
    ChaCha20Poly1305::new_from_slice(&key).ok()
}

/// `successor` sealed under a key derived from `used`, base64url.
pub(crate) fn seal_successor(used: &str, successor: &str) -> Option<String> {
    cipher_for(used, &hash_secret(successor))?
        .encrypt(&Nonce::default(), successor.as_bytes())
        .ok()
        .map(|sealed| URL_SAFE_NO_PAD.encode(sealed))
}

/// The successor (whose hash is `successor_hash`) sealed by [`seal_successor`] with the
/// same `used` token; `None` for any other token or a damaged seal.
pub(crate) fn open_successor(used: &str, successor_hash: &str, sealed: &str) -> Option<String> {
    let sealed = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    let opened = cipher_for(used, successor_hash)?
        .decrypt(&Nonce::default(), sealed.as_slice())
        .ok()?;
    String::from_utf8(opened).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::random_secret;

    #[test]
    fn only_the_used_token_opens_its_successor() {
        let (used, successor) = (random_secret(), random_secret());
        let sealed = seal_successor(&used, &successor).unwrap();
        let hash = hash_secret(&successor);
        assert!(!sealed.contains(&successor));
        assert_eq!(
            open_successor(&used, &hash, &sealed).as_deref(),
            Some(&*successor)
        );
        assert_eq!(open_successor(&random_secret(), &hash, &sealed), None);
        assert_eq!(open_successor(&hash_secret(&used), &hash, &sealed), None);
        assert_eq!(open_successor(&used, &hash_secret(&used), &sealed), None);
        let mut damaged = sealed.clone();
        damaged.replace_range(0..1, if sealed.starts_with('A') { "B" } else { "A" });
        assert_eq!(open_successor(&used, &hash, &damaged), None);
    }
}
