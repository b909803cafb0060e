//! The last step of the manifest flow: `POST /app-manifests/{code}/conversions` trades the
//! one-time code GitHub handed the browser for the new App's id, private key and webhook
//! secret. No credential is needed (the code is one); the answer holds secrets, so nothing of
//! it but the id and the slug is ever printed.

use std::time::Duration;

use serde::Deserialize;

/// What the dispatcher keeps of the new App.
#[derive(Deserialize)]
pub struct NewApp {
    pub id: u64,
    pub slug: String,
    #[serde(default)]
    pub html_url: String,
    /// The App's private key (PEM).
    pub pem: String,
    pub webhook_secret: String,
}

impl std::fmt::Debug for NewApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApp")
            .field("id", &self.id)
            .field("slug", &self.slug)
            .finish_non_exhaustive()
    }
}

/// Converts `code` at `api_url`, trusting the system's CAs plus `ca_pem` (GHES, tests).
pub fn convert(api_url: &str, code: &str, ca_pem: Option<&[u8]>) -> anyhow::Result<NewApp> {
    anyhow::ensure!(
        !code.is_empty() && code.chars().all(|c| c.is_ascii_alphanumeric()),
        "the code must be the letters and digits after `code=` in the address GitHub sent you to"
    );
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .https_only(api_url.starts_with("https://"));
    if let Some(pem) = ca_pem {
        builder = builder.tls_certs_merge(reqwest::Certificate::from_pem_bundle(pem)?);
    }
    let client = builder.build()?;
    let url = format!(
        "{}/app-manifests/{code}/conversions",
        api_url.trim_end_matches('/')
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let response = client
            .post(&url)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .header("User-Agent", "gha-dispatcher-init")
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("POST {api_url}/app-manifests/<code>/conversions: {e}"))?;
        let status = response.status();
        if status.as_u16() != 201 {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let message = body["message"].as_str().unwrap_or("no message");
            anyhow::bail!(
                "GitHub answered {status} to the code conversion: {message} \
                 (a code works once, within an hour)"
            );
        }
        Ok(response.json::<NewApp>().await?)
    })
}
