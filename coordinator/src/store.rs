//! The run store in S3: manifests, result parts, the notification ledger,
//! the finalize marker and the rendered reports.
//!
//! Layout (one bucket):
//!
//! - `runs/<run_id>/manifest.json`: expected accounts, token hashes, policy;
//! - `runs/<run_id>/results/<account>/part-<n>-of-<m>.json`: each result
//!   part, written with `If-None-Match: *` so the first copy wins and an SQS
//!   redelivery or a replayed message is dropped;
//! - `runs/<run_id>/report.json`: written once with `If-None-Match: *`; its
//!   existence means the run is finalized (exactly one finalizer wins);
//! - `ledger/<account>/<user>/<key_id>/<kind>`: one object per owner email,
//!   claimed with `If-None-Match: *` before sending, so each notice goes out
//!   once across retries and duplicate deliveries;
//! - `reports/<run_id>/report.{json,csv,html}`: what people read.
//!
//! Nothing here ever holds a plaintext secret: results carry only sealed
//! credentials.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client as S3;

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

pub fn manifest_key(run_id: &str) -> String {
    format!("runs/{run_id}/manifest.json")
}
pub fn part_key(run_id: &str, account: &str, part: u32, parts: u32) -> String {
    format!("runs/{run_id}/results/{account}/part-{part}-of-{parts}.json")
}
pub fn final_key(run_id: &str) -> String {
    format!("runs/{run_id}/report.json")
}
pub fn ledger_key(account: &str, user: &str, key_id: &str, kind: &str) -> String {
    format!("ledger/{account}/{user}/{key_id}/{kind}")
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
            .map_err(|e| self.err("PutObject", key, aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(())
    }

    /// Put only if the key does not exist yet (`If-None-Match: *`).
    pub async fn put_new(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<Put, StoreError> {
        match self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .if_none_match("*")
            .body(ByteStream::from(body))
            .send()
            .await
        {
            Ok(_) => Ok(Put::Created),
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(412) => {
                Ok(Put::AlreadyExists)
            }
            // A concurrent conditional write to the same key.
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(409) => {
                Ok(Put::AlreadyExists)
            }
            Err(e) => Err(self.err("PutObject", key, aws_sdk_s3::error::DisplayErrorContext(e))),
        }
    }

    /// Reads an object; `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
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
                Ok(Some(bytes.into_bytes().to_vec()))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(self.err("GetObject", key, aws_sdk_s3::error::DisplayErrorContext(e))),
        }
    }

    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) => Err(self.err("HeadObject", key, aws_sdk_s3::error::DisplayErrorContext(e))),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                self.err(
                    "DeleteObject",
                    key,
                    aws_sdk_s3::error::DisplayErrorContext(e),
                )
            })?;
        Ok(())
    }

    /// Every key under `prefix` (paginated).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                self.err(
                    "ListObjectsV2",
                    prefix,
                    aws_sdk_s3::error::DisplayErrorContext(e),
                )
            })?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
        }
        Ok(keys)
    }

    /// Run ids that have a manifest (paginated, by common prefix).
    pub async fn run_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix("runs/")
            .delimiter("/")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                self.err(
                    "ListObjectsV2",
                    "runs/",
                    aws_sdk_s3::error::DisplayErrorContext(e),
                )
            })?;
            ids.extend(page.common_prefixes().iter().filter_map(|p| {
                p.prefix()
                    .and_then(|s| s.strip_prefix("runs/"))
                    .map(|s| s.trim_end_matches('/').to_string())
            }));
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_round_trip() {
        let k = part_key("r", "111122223333", 2, 3);
        let name = k.rsplit('/').next().unwrap();
        assert_eq!(parse_part_name(name), Some((2, 3)));
        assert_eq!(parse_part_name("part-x-of-3.json"), None);
        assert_eq!(parse_part_name("manifest.json"), None);
    }
}
