//! The run store in S3: manifests, result parts, the notification ledger,
//! the finalize marker and the rendered reports.
//!
//! Layout (one bucket):
//!
//! - `runs/<run_id>/manifest.json`: expected accounts, token hashes, policy;
//! - `runs/<run_id>/results/<account>/<attempt>/part-<n>-of-<m>.json`: each
//!   result part of one delivery attempt (the agent's start time), written
//!   with `If-None-Match: *` so the first copy wins and an SQS redelivery or a
//!   replayed message is not stored twice; a retried job's parts never mix
//!   with an earlier attempt's;
//! - `runs/<run_id>/report.json`: written once with `If-None-Match: *`; its
//!   existence means the run is finalized (exactly one finalizer wins), and
//!   it holds the report the files under `reports/` are rendered from: the
//!   summary (schema 2), whose accounts name their users' objects;
//! - `runs/<run_id>/final/<attempt>/<account>.json`: one account's section
//!   with its users, written by one finalize attempt before its claim (a
//!   losing attempt deletes its own);
//! - `runs/<run_id>/undeliverable/<account>/<user>`: why an owner who had
//!   mail coming was not mailed (the deliverability rule refused the
//!   address), written with `If-None-Match: *` so the alert goes out once;
//! - `ledger/<account>/<user>/<key_id>/<kind>`: one object per owner email,
//!   claimed with `If-None-Match: *` before sending, so each notice goes out
//!   once across retries and duplicate deliveries; for a new key also its
//!   zip's password, sealed to the coordinator, chosen once so that every
//!   zip and password email of the key match;
//! - `reports/<run_id>/report.{json,csv,html}`, `report.jsonl` (one line
//!   per user) and `accounts/<account>.html` (a large run's account pages):
//!   what people read;
//! - `cleanup-done`: the run id of the initial clean-up, once it finalized.
//!
//! Nothing here ever holds a plaintext secret: results carry only sealed
//! credentials.

use crate::upload::Upload;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client as S3;
use keyfleet_protocol::aws_error::describe;

/// An S3 failure, named by operation and key.
#[derive(Debug, thiserror::Error)]
#[error("S3 {op} s3://{bucket}/{key} failed: {message}")]
pub struct StoreError {
    pub op: &'static str,
    pub bucket: String,
    pub key: String,
    pub message: String,
}

/// Outcome of a conditional create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    AlreadyExists,
}

/// The bucket, with typed helpers for each kind of object.
#[derive(Debug, Clone)]
pub struct RunStore {
    s3: S3,
    bucket: String,
}

/// How many times [`RunStore::put_new`] sends a conditional write that S3
/// answers with 409 `ConditionalRequestConflict`: a competing conditional
/// write finishes within milliseconds, so a few short tries settle it, and
/// a conflict that outlasts them is reported rather than guessed at.
pub const CONFLICT_ATTEMPTS: u32 = 4;

/// The wait before the first retry of a conflicted conditional write;
/// doubled for each further one (50, 100, 200 ms).
const CONFLICT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

/// Written once, by the finalization of the initial clean-up run.
pub const CLEANUP_DONE: &str = "cleanup-done";

/// Where every run is: one folder a run id.
pub const RUNS_PREFIX: &str = "runs/";

pub fn manifest_key(run_id: &str) -> String {
    format!("{RUNS_PREFIX}{run_id}/manifest.json")
}
pub fn part_key(run_id: &str, account: &str, attempt: &str, part: u32, parts: u32) -> String {
    format!(
        "{}{attempt}/part-{part}-of-{parts}.json",
        account_results_prefix(run_id, account)
    )
}
/// Where every result part of a run is: `runs/<run_id>/results/`.
pub fn results_prefix(run_id: &str) -> String {
    format!("{RUNS_PREFIX}{run_id}/results/")
}
/// Where the result parts of one account in a run are.
pub fn account_results_prefix(run_id: &str, account: &str) -> String {
    format!("{}{account}/", results_prefix(run_id))
}
/// The account a key under [`results_prefix`] belongs to.
pub fn result_account<'k>(run_id: &str, key: &'k str) -> Option<&'k str> {
    let rest = key.strip_prefix(&results_prefix(run_id))?;
    rest.split_once('/').map(|(account, _)| account)
}
/// A rendered report people read: `ext` is `json`, `csv` or `html`.
pub fn report_key(run_id: &str, ext: &str) -> String {
    format!("reports/{run_id}/report.{ext}")
}

/// One account's page of a run's HTML report, beside the summary page
/// ([`report_key`] `html`), which links to it as `accounts/<account>.html`.
pub fn account_page_key(run_id: &str, account: &str) -> String {
    format!("{}{account}.html", account_pages_prefix(run_id))
}

/// Where a run's account pages ([`account_page_key`]) are.
pub fn account_pages_prefix(run_id: &str) -> String {
    format!("reports/{run_id}/accounts/")
}

/// Groups part keys (`.../<attempt>/part-<n>-of-<m>.json`) by attempt and
/// returns the attempts whose parts are all there, earliest first, each with
/// its keys in part order.
pub fn complete_attempts(keys: &[String]) -> Vec<(String, Vec<String>)> {
    use std::collections::BTreeMap;
    let mut by_attempt: BTreeMap<String, BTreeMap<u32, (u32, String)>> = BTreeMap::new();
    for k in keys {
        let mut it = k.rsplit('/');
        let (Some(name), Some(attempt)) = (it.next(), it.next()) else {
            continue;
        };
        if let Some((n, m)) = parse_part_name(name) {
            by_attempt
                .entry(attempt.to_string())
                .or_default()
                .insert(n, (m, k.clone()));
        }
    }
    let mut out: Vec<(String, Vec<String>)> = by_attempt
        .into_iter()
        .filter(|(_, parts)| {
            let m = parts.values().next().map(|(m, _)| *m).unwrap_or(0);
            m > 0
                && parts.values().all(|(mm, _)| *mm == m)
                && (1..=m).all(|n| parts.contains_key(&n))
        })
        .map(|(a, parts)| (a, parts.into_values().map(|(_, k)| k).collect()))
        .collect();
    // Attempt ids are nanosecond timestamps: order numerically.
    out.sort_by_key(|(a, _)| a.parse::<i128>().unwrap_or(i128::MAX));
    out
}
/// Held by the invocation that is building a run's report (see the
/// coordinator's `finalize`): the time it started, RFC 3339.
pub fn finalizing_key(run_id: &str) -> String {
    format!("{RUNS_PREFIX}{run_id}/finalizing")
}
pub fn final_key(run_id: &str) -> String {
    format!("{RUNS_PREFIX}{run_id}/report.json")
}

/// Where one finalize attempt keeps each account's users (schema 2): the
/// finalize marker's accounts name these objects, so the report that won
/// never reads another attempt's users.
pub fn users_prefix(run_id: &str, attempt: &str) -> String {
    format!("{RUNS_PREFIX}{run_id}/final/{attempt}/")
}

/// One account's section with its users, written by finalize attempt
/// `attempt` (see [`users_prefix`]).
pub fn users_key(run_id: &str, attempt: &str, account: &str) -> String {
    format!("{}{account}.json", users_prefix(run_id, attempt))
}
pub fn refusal_key(run_id: &str, account: &str, user: &str) -> String {
    format!("{RUNS_PREFIX}{run_id}/undeliverable/{account}/{user}")
}
pub fn ledger_key(account: &str, user: &str, key_id: &str, kind: &str) -> String {
    format!("ledger/{account}/{user}/{key_id}/{kind}")
}

/// The new keys of an account that have not reached their owners (see
/// `service::deliveries`): one empty marker a key,
/// `undelivered/<account>/<user>/<key id>`, written when a result names the
/// key and removed once the zip and its password were sent. Listing the
/// account's prefix (one request per account and run) says it all; no
/// object is read.
pub fn undelivered_prefix(account: &str) -> String {
    format!("undelivered/{account}/")
}
/// The marker of a key awaiting delivery.
pub fn undelivered_key(account: &str, user: &str, key_id: &str) -> String {
    format!("{}{user}/{key_id}", undelivered_prefix(account))
}
/// A marker's (user, key id).
pub fn parse_undelivered_key<'k>(account: &str, key: &'k str) -> Option<(&'k str, &'k str)> {
    let rest = key.strip_prefix(&undelivered_prefix(account))?;
    let (user, key_id) = rest.split_once('/')?;
    (!key_id.contains('/')).then_some((user, key_id))
}

/// Parses `part-<n>-of-<m>.json`.
pub fn parse_part_name(name: &str) -> Option<(u32, u32)> {
    let rest = name.strip_prefix("part-")?.strip_suffix(".json")?;
    let (n, m) = rest.split_once("-of-")?;
    Some((n.parse().ok()?, m.parse().ok()?))
}

impl RunStore {
    pub fn new(s3: S3, bucket: impl Into<String>) -> Self {
        RunStore {
            s3,
            bucket: bucket.into(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn err<E: std::fmt::Display>(&self, op: &'static str, key: &str, e: E) -> StoreError {
        StoreError {
            op,
            bucket: self.bucket.clone(),
            key: key.to_string(),
            message: e.to_string(),
        }
    }

    /// An object written as it is produced ([`Upload`]).
    pub fn upload(&self, key: &str, content_type: &str) -> Upload {
        Upload::new(self.s3.clone(), &self.bucket, key, content_type)
    }

    /// Unconditional put.
    pub async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StoreError> {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.err("PutObject", key, describe(&e)))?;
        Ok(())
    }

    /// Put only if the key does not exist yet (`If-None-Match: *`).
    ///
    /// S3 answers 412 when the object exists: [`Put::AlreadyExists`]. A 409
    /// `ConditionalRequestConflict` means another conditional write to the
    /// key was in flight and says nothing about whether the object exists
    /// (that write may fail); AWS says to retry. Taking it for
    /// "already exists" would skip a ledger claim nobody holds (the owner
    /// never gets the email) or make a finalizer think another one won, so
    /// it is retried a few times ([`CONFLICT_ATTEMPTS`]) and the object's
    /// state then decides; a conflict on every attempt is an error.
    pub async fn put_new(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<Put, StoreError> {
        let mut attempt = 1;
        loop {
            let sent = self
                .s3
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type(content_type)
                .if_none_match("*")
                .body(ByteStream::from(body.clone()))
                .send()
                .await;
            let e = match sent {
                Ok(_) => return Ok(Put::Created),
                Err(e) => e,
            };
            match e.raw_response().map(|r| r.status().as_u16()) {
                Some(412) => return Ok(Put::AlreadyExists),
                Some(409) if attempt < CONFLICT_ATTEMPTS => {
                    tracing::info!(bucket = %self.bucket, key, attempt, "conditional write conflicted; retrying");
                    tokio::time::sleep(CONFLICT_BACKOFF * 2u32.pow(attempt - 1)).await;
                    attempt += 1;
                }
                Some(409) => {
                    let message = format!(
                        "ConditionalRequestConflict on each of {CONFLICT_ATTEMPTS} attempts (another conditional write to the key kept running): {}",
                        describe(&e)
                    );
                    return Err(self.err("PutObject", key, message));
                }
                _ => return Err(self.err("PutObject", key, describe(&e))),
            }
        }
    }

    /// Reads an object; `None` when it does not exist.
    ///
    /// A 403 is read as [`Self::after_refusal`] says: a missing object, or
    /// an object written since (read once more), or a refusal.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut read_again = false;
        loop {
            match self
                .s3
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(out) => {
                    let bytes = out
                        .body
                        .collect()
                        .await
                        .map_err(|e| self.err("GetObject", key, e))?;
                    return Ok(Some(bytes.into_bytes().to_vec()));
                }
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                    return Ok(None)
                }
                Err(e) if is_access_denied(e.raw_response().map(|r| r.status().as_u16())) => {
                    let message = describe(&e);
                    if !self
                        .after_refusal(key, "GetObject", message, &mut read_again)
                        .await?
                    {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(self.err("GetObject", key, describe(&e))),
            }
        }
    }

    /// S3 answers 403, not 404, for a missing object when the caller may
    /// not `s3:ListBucket` it unconditionally, and the API's role may list
    /// only under `runs/` and `reports/` (an `s3:prefix` condition, which a
    /// GetObject does not carry). A listing of exactly that key tells the
    /// two apart without widening the grant: `Some(false)` = absent,
    /// `Some(true)` = the key is there (refused, or written since the
    /// refused request: the caller tries once more), `None` = the listing
    /// was refused too.
    async fn listed(&self, key: &str) -> Option<bool> {
        let out = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(key)
            .max_keys(1)
            .send()
            .await
            .ok()?;
        Some(out.contents().iter().any(|o| o.key() == Some(key)))
    }

    /// What a 403 on `key` means: `Ok(false)` when the object is absent
    /// (see [`Self::listed`]); `Ok(true)` when the listing shows it, the
    /// first time (it may have been written since the refused request:
    /// the caller tries once more, and `tried` records it); the refusal
    /// `message` as an error otherwise.
    async fn after_refusal(
        &self,
        key: &str,
        op: &'static str,
        message: String,
        tried: &mut bool,
    ) -> Result<bool, StoreError> {
        match self.listed(key).await {
            Some(false) => Ok(false),
            Some(true) if !*tried => {
                *tried = true;
                Ok(true)
            }
            _ => Err(self.err(op, key, message)),
        }
    }

    /// Whether an object exists, with [`Self::get`]'s reading of a 403.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let mut read_again = false;
        loop {
            match self
                .s3
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(_) => return Ok(true),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {
                    return Ok(false)
                }
                Err(e) if is_access_denied(e.raw_response().map(|r| r.status().as_u16())) => {
                    let message = describe(&e);
                    if !self
                        .after_refusal(key, "HeadObject", message, &mut read_again)
                        .await?
                    {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(self.err("HeadObject", key, describe(&e))),
            }
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.err("DeleteObject", key, describe(&e)))?;
        Ok(())
    }

    /// Every key under `prefix` (paginated).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .objects(prefix)
            .await?
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect())
    }

    /// Every key under `prefix` with its last-modified time (paginated).
    pub async fn list_dated(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, time::OffsetDateTime)>, StoreError> {
        Ok(self
            .objects(prefix)
            .await?
            .iter()
            .filter_map(|o| {
                let at = o
                    .last_modified()
                    .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.secs()).ok())?;
                Some((o.key()?.to_string(), at))
            })
            .collect())
    }

    /// Every object under `prefix`, all pages.
    async fn objects(&self, prefix: &str) -> Result<Vec<aws_sdk_s3::types::Object>, StoreError> {
        let mut objects = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.err("ListObjectsV2", prefix, describe(&e)))?;
            objects.extend(page.contents().iter().cloned());
        }
        Ok(objects)
    }

    /// Run ids that have a manifest (paginated, by common prefix).
    pub async fn run_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(RUNS_PREFIX)
            .delimiter("/")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.err("ListObjectsV2", RUNS_PREFIX, describe(&e)))?;
            ids.extend(page.common_prefixes().iter().filter_map(|p| {
                p.prefix()
                    .and_then(|s| s.strip_prefix(RUNS_PREFIX))
                    .map(|s| s.trim_end_matches('/').to_string())
            }));
        }
        Ok(ids)
    }
}

/// A 403 from S3 (AccessDenied; HeadObject's has no body to name it).
fn is_access_denied(status: Option<u16>) -> bool {
    status == Some(403)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_attempts_count_and_never_mix() {
        let k = |a: &str, n, m| part_key("r", "111122223333", a, n, m);
        // Attempt 100 lost its part 2; attempt 200 is complete.
        let keys = vec![k("100", 1, 2), k("200", 2, 2), k("200", 1, 2)];
        let done = complete_attempts(&keys);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].0, "200");
        assert_eq!(done[0].1, vec![k("200", 1, 2), k("200", 2, 2)]);
        // Earliest complete attempt first.
        let keys = vec![k("300", 1, 1), k("1000", 1, 1)];
        assert_eq!(complete_attempts(&keys)[0].0, "300");
        assert!(complete_attempts(&[k("5", 2, 2)]).is_empty());
    }

    #[test]
    fn key_layout_is_the_documented_one() {
        assert_eq!(manifest_key("r1"), "runs/r1/manifest.json");
        assert_eq!(final_key("r1"), "runs/r1/report.json");
        assert_eq!(results_prefix("r1"), "runs/r1/results/");
        assert_eq!(account_results_prefix("r1", "111"), "runs/r1/results/111/");
        let part = part_key("r1", "111", "42", 1, 2);
        assert_eq!(part, "runs/r1/results/111/42/part-1-of-2.json");
        assert_eq!(result_account("r1", &part), Some("111"));
        assert_eq!(result_account("r2", &part), None);
        assert_eq!(
            refusal_key("r1", "111", "bob"),
            "runs/r1/undeliverable/111/bob"
        );
        assert_eq!(
            ledger_key("111", "bob", "AKIA1", "new_key"),
            "ledger/111/bob/AKIA1/new_key"
        );
        assert_eq!(report_key("r1", "html"), "reports/r1/report.html");
    }

    #[test]
    fn part_names_round_trip() {
        let k = part_key("r", "111122223333", "1", 2, 3);
        let name = k.rsplit('/').next().unwrap();
        assert_eq!(parse_part_name(name), Some((2, 3)));
        assert_eq!(parse_part_name("part-x-of-3.json"), None);
        assert_eq!(parse_part_name("manifest.json"), None);
    }
}
