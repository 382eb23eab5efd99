//! One object written as it is produced: the report's CSV and JSON Lines,
//! whose rows come one account at a time and are never held whole.
//!
//! Bytes are buffered up to [`PART_BYTES`]; each full buffer goes up as a
//! part of an S3 multipart upload (S3's smallest part is 5 MiB, except the
//! last). An object that never fills one buffer is written with one
//! PutObject instead, so a small run costs what it did before. Memory is
//! at most one buffer per open upload, whatever the size of the object.
//!
//! [`Upload::finish`] completes the object; an upload dropped unfinished
//! (an error on the way) is aborted by [`Upload::abort`] when the caller
//! can, and otherwise by the bucket's lifecycle rule (incomplete multipart
//! uploads are removed after 7 days; see the Terraform module). Parts are
//! written with `s3:PutObject`, the same grant as a plain put.

use crate::store::StoreError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client as S3;

/// The part size: S3 takes 5 MiB at least (but for the last part); 8 MiB
/// keeps a 500 x 100 CSV (about 9 MB) to two parts.
pub const PART_BYTES: usize = 8 * 1024 * 1024;

/// An object being written (see the module documentation).
pub struct Upload {
    s3: S3,
    bucket: String,
    key: String,
    content_type: String,
    part_bytes: usize,
    buf: Vec<u8>,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    written: usize,
}

impl Upload {
    pub fn new(s3: S3, bucket: &str, key: &str, content_type: &str) -> Upload {
        Upload::with_part_bytes(s3, bucket, key, content_type, PART_BYTES)
    }

    /// With another part size (at least S3's 5 MiB minimum in AWS; the
    /// tests use it to make many parts of a small object).
    pub fn with_part_bytes(
        s3: S3,
        bucket: &str,
        key: &str,
        content_type: &str,
        part_bytes: usize,
    ) -> Upload {
        Upload {
            s3,
            bucket: bucket.to_string(),
            key: key.to_string(),
            content_type: content_type.to_string(),
            part_bytes,
            buf: Vec::new(),
            upload_id: None,
            parts: Vec::new(),
            written: 0,
        }
    }

    /// The bytes written so far.
    pub fn len(&self) -> usize {
        self.written
    }

    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    fn err(&self, op: &'static str, e: impl std::fmt::Display) -> StoreError {
        StoreError {
            op,
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            message: e.to_string(),
        }
    }

    /// Appends bytes; sends a part when the buffer is full.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.buf.extend_from_slice(bytes);
        self.written += bytes.len();
        if self.buf.len() >= self.part_bytes {
            self.send_part().await?;
        }
        Ok(())
    }

    async fn send_part(&mut self) -> Result<(), StoreError> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let out = self
                    .s3
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .content_type(&self.content_type)
                    .send()
                    .await
                    .map_err(|e| {
                        self.err(
                            "CreateMultipartUpload",
                            keyfleet_protocol::aws_error::describe(&e),
                        )
                    })?;
                let id = out
                    .upload_id()
                    .ok_or_else(|| self.err("CreateMultipartUpload", "no UploadId"))?
                    .to_string();
                self.upload_id = Some(id.clone());
                id
            }
        };
        let number = self.parts.len() as i32 + 1;
        let body = std::mem::take(&mut self.buf);
        let out = self
            .s3
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.err("UploadPart", keyfleet_protocol::aws_error::describe(&e)))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build(),
        );
        Ok(())
    }

    /// Writes the object: the last part and the completion, or one
    /// PutObject when no part was sent.
    pub async fn finish(mut self) -> Result<usize, StoreError> {
        let Some(upload_id) = self.upload_id.clone() else {
            let body = std::mem::take(&mut self.buf);
            self.s3
                .put_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .content_type(&self.content_type)
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| self.err("PutObject", keyfleet_protocol::aws_error::describe(&e)))?;
            return Ok(self.written);
        };
        if !self.buf.is_empty() {
            self.send_part().await?;
        }
        self.s3
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(std::mem::take(&mut self.parts)))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                self.err(
                    "CompleteMultipartUpload",
                    keyfleet_protocol::aws_error::describe(&e),
                )
            })?;
        Ok(self.written)
    }

    /// Gives up: the parts sent are removed (best effort; the lifecycle
    /// rule removes what this could not).
    pub async fn abort(self) {
        if let Some(id) = &self.upload_id {
            if let Err(e) = self
                .s3
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(id)
                .send()
                .await
            {
                tracing::warn!(key = %self.key, error = %keyfleet_protocol::aws_error::describe(&e), "multipart upload not aborted; the bucket's lifecycle rule removes it");
            }
        }
    }
}
