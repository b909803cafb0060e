//! Webhook signatures: `X-Hub-Signature-256` (HMAC-SHA256) and the legacy `X-Hub-Signature` (HMAC-SHA1).

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// `sha256=<hex>` of HMAC-SHA256(secret, body).
pub fn sign_sha256(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `sha1=<hex>` of HMAC-SHA1(secret, body) (GitHub still sends it for old receivers).
pub fn sign_sha1(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a `X-Hub-Signature-256` header value in constant time.
pub fn verify_sha256(secret: &[u8], body: &[u8], header: &str) -> bool {
    let expected = sign_sha256(secret, body);
    expected.as_bytes().ct_eq(header.trim().as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_documented_test_vector() {
        let sig = sign_sha256(b"It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(
            sig,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert!(verify_sha256(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            &sig
        ));
        assert!(!verify_sha256(b"wrong", b"Hello, World!", &sig));
    }
}
