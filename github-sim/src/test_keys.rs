//! A fixed RSA key pair for test GitHub Apps (never used for anything real) and a JWT helper.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde::Serialize;

/// PKCS#1 private key, the format GitHub hands out for App keys.
pub const APP_PRIVATE_KEY_PEM: &str = include_str!("../test-keys/app-private-key.pem");
/// The matching public key (SPKI PEM), to register the App with the simulator.
pub const APP_PUBLIC_KEY_PEM: &str = include_str!("../test-keys/app-public-key.pem");

#[derive(Serialize)]
struct Claims {
    iat: i64,
    exp: i64,
    iss: String,
}

/// A JWT for `app_id` signed with [`APP_PRIVATE_KEY_PEM`]: `iat` 60 s in the past, `exp` 9 minutes ahead.
pub fn app_jwt(app_id: u64) -> String {
    let now = chrono::Utc::now().timestamp();
    app_jwt_with(app_id, now - 60, now + 540)
}

/// A JWT with explicit `iat`/`exp` (epoch seconds), to test the simulator's limits.
pub fn app_jwt_with(app_id: u64, iat: i64, exp: i64) -> String {
    let key = EncodingKey::from_rsa_pem(APP_PRIVATE_KEY_PEM.as_bytes())
        .expect("the bundled test key is valid");
    encode(
        &Header::new(Algorithm::RS256),
        &Claims {
            iat,
            exp,
            iss: app_id.to_string(),
        },
        &key,
    )
    .expect("signing with the bundled test key")
}
