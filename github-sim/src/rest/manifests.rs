//! GitHub's App manifest flow: an admin posts a manifest (name, webhook URL, permissions,
//! events) to GitHub in a browser, GitHub creates the App and redirects back with a one-time
//! `code`, and the setup tool trades that code at `POST /app-manifests/{code}/conversions` for
//! the new App's id, private key and webhook secret. Here [`submit`] stands in for the browser
//! step (the control API's `POST /_sim/app-manifests` and `Sim::submit_app_manifest` call it);
//! [`conversion`] mints a real App: a fresh RSA key whose JWTs the simulator's auth accepts.

use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use base64::Engine;
use serde_json::{json, Value};

use super::{ApiResult, S};
use crate::error::{ApiError, SimError};
use crate::model::{AppSpec, WebhookTarget};
use crate::state::{random_token, PendingManifest, World};
use crate::time::now_iso;

/// GitHub: "You must complete this step within one hour".
const CODE_LIFETIME: Duration = Duration::from_secs(3600);

/// The browser step: `owner` (an organization or user) creates an App from `manifest`.
/// Returns the one-time code GitHub would append to the manifest's `redirect_url`.
pub fn submit(w: &mut World, owner: &str, manifest: Value) -> Result<String, SimError> {
    let name = manifest["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        return Err(SimError::BadManifest("the manifest has no name".into()));
    }
    if !manifest["url"].is_string() {
        return Err(SimError::BadManifest("the manifest has no url".into()));
    }
    w.add_org(owner);
    let code = random_token("");
    w.manifest_codes.insert(
        code.clone(),
        PendingManifest {
            owner: owner.to_string(),
            manifest,
            created: Instant::now(),
        },
    );
    Ok(code)
}

/// `POST /app-manifests/{code}/conversions` (no authentication, as on GitHub): 201 with the
/// new App, its `pem`, `webhook_secret`, `client_id` and `client_secret`; 404 for a code that
/// is unknown, used or older than an hour.
pub(super) async fn conversion(State(s): S, Path(code): Path<String>) -> ApiResult {
    let pending = s
        .mutate(|w| w.manifest_codes.remove(&code))
        .filter(|p| p.created.elapsed() < CODE_LIFETIME)
        .ok_or_else(ApiError::not_found)?;
    // Key generation (tens of milliseconds) happens outside the world's lock.
    let key = fresh_app_key().map_err(|e| ApiError::new(500, e))?;
    s.mutate(|w| {
        let id = w.next_id();
        let slug = slug_of(pending.manifest["name"].as_str().unwrap_or("app"));
        w.add_app(&AppSpec {
            id,
            slug: slug.clone(),
            public_key_pem: key.public_pem.clone(),
        })
        .map_err(|e| ApiError::new(500, e.to_string()))?;
        let webhook_secret = random_token("");
        configure_webhook(w, &pending.manifest, &webhook_secret);
        let body = app_body(w, id, &slug, &pending, &key.private_pem, &webhook_secret);
        Ok((StatusCode::CREATED, Json(body)).into_response())
    })
}

/// The App's webhook goes where its manifest says, signed with the new secret.
fn configure_webhook(w: &mut World, manifest: &Value, secret: &str) {
    let hook = &manifest["hook_attributes"];
    let active = hook["active"].as_bool().unwrap_or(true);
    if let (Some(url), true) = (hook["url"].as_str(), active) {
        w.webhook = Some(WebhookTarget {
            url: url.to_string(),
            secret: secret.to_string(),
        });
    }
}

fn app_body(
    w: &World,
    id: u64,
    slug: &str,
    pending: &PendingManifest,
    pem: &str,
    webhook_secret: &str,
) -> Value {
    let m = &pending.manifest;
    let now = now_iso();
    json!({
        "id": id,
        "slug": slug,
        "node_id": format!("A_{id}"),
        "client_id": format!("Iv1.{}", &random_token("")[..16]),
        "client_secret": random_token(""),
        "webhook_secret": webhook_secret,
        "pem": pem,
        "owner": {"login": pending.owner, "type": "Organization"},
        "name": m["name"],
        "description": m["description"],
        "external_url": m["url"],
        "html_url": format!("{}/apps/{slug}", w.base_url),
        "created_at": now,
        "updated_at": now,
        "permissions": m["default_permissions"],
        "events": m["default_events"],
    })
}

/// GitHub's slug: the name lowercased, runs of other characters made one `-`.
fn slug_of(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_matches('-').to_string()
}

struct AppKey {
    private_pem: String,
    public_pem: String,
}

/// A new RSA-2048 key: the private half as PKCS#8 PEM (what the App's owner downloads), the
/// public half as SPKI PEM (what the simulator checks JWTs with).
fn fresh_app_key() -> Result<AppKey, String> {
    let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|e| format!("RSA keygen: {e}"))?;
    let private = pair.as_der().map_err(|e| format!("PKCS#8: {e}"))?;
    let public = aws_lc_rs::signature::KeyPair::public_key(&pair)
        .as_der()
        .map_err(|e| format!("SPKI: {e}"))?;
    Ok(AppKey {
        private_pem: pem("PRIVATE KEY", private.as_ref()),
        public_pem: pem("PUBLIC KEY", public.as_ref()),
    })
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_lowercase_words_joined_by_dashes() {
        assert_eq!(slug_of("Slurm Runners (HPC)"), "slurm-runners-hpc");
        assert_eq!(slug_of("spank-gha"), "spank-gha");
    }

    #[test]
    fn a_fresh_key_is_pem_both_halves() {
        let key = fresh_app_key().unwrap();
        assert!(key.private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(key.public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        jsonwebtoken::EncodingKey::from_rsa_pem(key.private_pem.as_bytes()).unwrap();
        jsonwebtoken::DecodingKey::from_rsa_pem(key.public_pem.as_bytes()).unwrap();
    }
}
