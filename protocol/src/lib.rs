//! keyfleet's wire protocol: jobs, results, the run manifest, the rotation
//! policy, the report model and HPKE sealing of new credentials.
//!
//! This crate is pure: no AWS SDK, no I/O (except [`invoke`], the one
//! client of the coordinator's invocation contract [`command`], behind the
//! `invoke` feature). Everything that crosses a queue or
//! lands in S3 is defined here, so the coordinator, the agent and the CLI
//! cannot disagree on a field.
//!
//! Decoding is strict and explains itself: [`decode`] checks `"v"` before
//! anything else (an unknown version is rejected as such, not as a confusing
//! missing field), then deserializes with the path of any bad field, then
//! leaves out informational values that break their rule
//! ([`degrade`]: a result degrades, it never vanishes) and runs
//! [`Validate`] on the rest. A rejection's texts are one bounded line.

pub mod address;
#[cfg(feature = "aws-error")]
pub mod aws_error;
pub mod command;
pub mod degrade;
pub mod duration;
#[cfg(feature = "invoke")]
pub mod invoke;
pub mod keyring;
pub mod messages;
pub mod naming;
pub mod parts;
pub mod plan;
pub mod policy;
pub mod report;
pub mod seal;
pub mod validate;

pub use address::AddressError;
pub use duration::{Duration, DurationError, Limit};
pub use keyring::{KeyRing, KeyRingError};
pub use messages::*;
pub use naming::secret_name;
pub use plan::*;
pub use policy::{Delivery, Policy, PolicyError, TagMatch};
pub use seal::{
    Credential, PrivateKey, PublicKey, SealError, SealedCredential, SealedSecret, Secret,
};
pub use validate::*;

use serde::de::DeserializeOwned;

/// A value that serde accepted but that breaks a protocol rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {reason}")]
pub struct ValidationError {
    pub field: &'static str,
    pub reason: String,
}

/// Why a message was rejected. Every variant names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("message is {0} bytes, more than SQS carries ({MAX_MESSAGE_BYTES})")]
    TooLarge(usize),
    #[error("message is not JSON: {0}")]
    NotJson(String),
    #[error("message is not a JSON object")]
    NotObject,
    #[error("message has no version field `v`")]
    MissingVersion,
    #[error("unsupported protocol version {found} (this build speaks {supported})")]
    UnsupportedVersion { found: String, supported: u32 },
    #[error("field `{field}`: {reason}")]
    Field { field: String, reason: String },
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

/// Decodes and validates a message.
pub fn decode<T: DeserializeOwned + Validate>(bytes: &[u8]) -> Result<T, ProtocolError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(ProtocolError::TooLarge(bytes.len()));
    }
    // Every text of a rejection is one bounded line: it reaches logs and
    // the security team's alerts, and its content is the sender's choice
    // (an unknown field's name, a version, a variant).
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ProtocolError::NotJson(one_line(&e.to_string(), 300)))?;
    let obj = value.as_object().ok_or(ProtocolError::NotObject)?;
    match obj.get("v") {
        None => return Err(ProtocolError::MissingVersion),
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(u64::from(VERSION)) => {}
        Some(other) => {
            return Err(ProtocolError::UnsupportedVersion {
                found: one_line(&other.to_string(), 40),
                supported: VERSION,
            })
        }
    }
    let mut msg: T = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde names a missing field in its message, at the parent path.
        let field = match inner.strip_prefix("missing field `") {
            Some(rest) => {
                let name = rest.split('`').next().unwrap_or(rest);
                if path == "." {
                    name.to_string()
                } else {
                    format!("{path}.{name}")
                }
            }
            None => path,
        };
        ProtocolError::Field {
            field: one_line(&field, 120),
            reason: one_line(&inner, 300),
        }
    })?;
    msg.degrade_informational();
    msg.validate()?;
    Ok(msg)
}

/// Encodes a message as compact JSON.
pub fn encode<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail (no maps with non-string keys).
    serde_json::to_vec(msg).expect("protocol types always serialize")
}

#[cfg(test)]
mod tests;
