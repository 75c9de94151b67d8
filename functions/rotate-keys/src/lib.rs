//! The `rotate-keys` function (no route): re-encrypts every integration credential and webhook
//! signing secret under the active key. The Lambda is invoked directly (console, CLI or a scheduled rule) with any payload
//! and answers the [`RotationReport`]; `tollgate-dev rotate-keys` runs the same code locally.

use serde::Serialize;

use tollgate::crypto::KeyRing;
use tollgate::pipeline::AppState;
use tollgate::store::{Store, StoreError, TenantId};

/// What a key rotation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationReport {
    pub scanned: u64,
    pub reencrypted: u64,
    pub already_current: u64,
    /// Changed or deleted by someone else between read and write; a second run picks them up.
    pub skipped_concurrent: u64,
    /// Could not be decrypted with the ring (ids only, never contents).
    pub failed: Vec<String>,
}

/// Re-encrypts every stored integration credential and webhook signing secret under the ring's
/// active key. Resumable and safe to run twice: each value is replaced only if it is still the one
/// read, values already under the active key are left alone, and an interrupted run is finished by
/// running it again. Each replacement writes one `key_ring.rotated` audit event (old and new key
/// id; its target the integration or the webhook endpoint) in the same transaction; a value left
/// alone or changed concurrently writes none. The report counts both kinds together.
pub async fn rotate_keys(store: &Store, ring: &KeyRing) -> Result<RotationReport, StoreError> {
    let mut report = RotationReport::default();
    let mut start = None;
    loop {
        let (page, next) = store.scan_integrations(start).await?;
        for stored in page {
            let value = &stored.record.credentials;
            if let Some(rotated) =
                reencrypted(ring, &mut report, &stored.tenant, &stored.record.id, value)
            {
                let replaced = store.replace_credentials(&stored, &rotated).await?;
                report.count(replaced);
            }
        }
        match next {
            Some(key) => start = Some(key),
            None => break,
        }
    }
    let mut start = None;
    loop {
        let (page, next) = store.scan_webhook_endpoints(start).await?;
        for stored in page {
            let value = &stored.record.signing_secret;
            if let Some(rotated) =
                reencrypted(ring, &mut report, &stored.tenant, &stored.record.id, value)
            {
                let replaced = store.replace_signing_secret(&stored, &rotated).await?;
                report.count(replaced);
            }
        }
        match next {
            Some(key) => start = Some(key),
            None => break,
        }
    }
    tracing::info!(
        scanned = report.scanned,
        reencrypted = report.reencrypted,
        failed = report.failed.len(),
        active_key = ring.active_kid(),
        "key rotation finished"
    );
    Ok(report)
}

impl RotationReport {
    /// One replacement written (`true`) or lost to a concurrent change (`false`).
    fn count(&mut self, replaced: bool) {
        if replaced {
            self.reencrypted += 1;
        } else {
            self.skipped_concurrent += 1;
        }
    }
}

/// The value `stored` (of item `id` of `tenant`) under the active key, or `None` when it is
/// already there or cannot be decrypted (counted, and named by id in `failed`).
fn reencrypted(
    ring: &KeyRing,
    report: &mut RotationReport,
    tenant: &TenantId,
    id: &str,
    stored: &str,
) -> Option<String> {
    report.scanned += 1;
    if !ring.needs_reencryption(stored) {
        report.already_current += 1;
        return None;
    }
    match ring.reencrypt(tenant.as_str(), stored) {
        Ok(rotated) => Some(rotated),
        Err(error) => {
            tracing::error!(item_id = %id, organization_id = %tenant.as_str(), %error, "secret could not be re-encrypted");
            report.failed.push(id.to_owned());
            None
        }
    }
}

/// One invocation: the report of a rotation under the current key ring.
pub async fn handle(state: &AppState) -> Result<RotationReport, lambda_runtime::Error> {
    let secrets = state.secrets().await.map_err(|error| error.message)?;
    let ring = secrets
        .keyring
        .as_ref()
        .ok_or("ENCRYPTION_KEYS is unset: there is no key ring to rotate to")?;
    Ok(rotate_keys(&state.store, ring).await?)
}

/// The Lambda: builds the state once per cold start, then answers each invocation with [`handle`].
pub async fn run() -> Result<(), lambda_runtime::Error> {
    tollgate::telemetry::init();
    let state = match AppState::from_env().await {
        Ok(state) => state,
        Err(error) => return Err(tollgate::lambda::init_failed(error).await),
    };
    lambda_runtime::run(lambda_runtime::service_fn(
        move |_event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let state = state.clone();
            async move { handle(&state).await }
        },
    ))
    .await
}
