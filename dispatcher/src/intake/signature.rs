//! `X-Hub-Signature-256` verification: HMAC-SHA256 of the raw body, compared in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// `sha256=<hex>` for `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// True when `header` is the right signature of `body`. The comparison does not stop at
/// the first differing byte, so timing reveals nothing about the expected value.
pub fn verify(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(given) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(given) = hex::decode(given) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    given.len() == expected.len() && bool::from(given.as_slice().ct_eq(&expected[..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_documented_test_vector() {
        let secret = b"It's a Secret to Everybody";
        let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(secret, b"Hello, World!"), expected);
        assert!(verify(secret, b"Hello, World!", Some(expected)));
    }

    #[test]
    fn rejects_wrong_missing_and_malformed() {
        let secret = b"s";
        let good = sign(secret, b"body");
        assert!(!verify(secret, b"body2", Some(&good)));
        assert!(!verify(b"other", b"body", Some(&good)));
        assert!(!verify(secret, b"body", None));
        assert!(!verify(secret, b"body", Some("sha1=abcd")));
        assert!(!verify(secret, b"body", Some("sha256=zz")));
        assert!(!verify(secret, b"body", Some(&good[..good.len() - 2])));
    }
}
