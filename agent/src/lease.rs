//! One run at a time per account: a lease in Secrets Manager.
//!
//! Two agents working on one account at once (a job delivered twice at the
//! same moment, a scheduled run meeting an emergency rotation, a retried
//! start) could both see a user due and both create a key for it. Before a
//! job that may change anything (every job but a dry run), the agent takes
//! the account's lease, the secret `keyfleet-lease`; a second agent that
//! finds it held gives up cleanly: the job fails as [`LeaseError::Busy`]
//! without touching IAM, and SQS delivers it again after the queue's
//! visibility timeout, when the first run is over. Dry runs change nothing
//! and take no lease.
//!
//! **Why Secrets Manager.** The agent already writes its protected records
//! there, so no new service or permission family; and it offers the two
//! atomic operations a lease needs. `CreateSecret` fails for a name that
//! exists, so of two agents taking a free lease one wins. Taking over an
//! expired lease or releasing one is a compare-and-swap: the new value is
//! put as a version labelled `keyfleet-next` (not current), then
//! `UpdateSecretVersionStage` moves `AWSCURRENT` to it *from the version
//! this agent read*; if another agent moved it in between, the call fails
//! and this agent lost.
//!
//! **Expiry.** A lease names its holder and expires when the holder's
//! invocation must be over (the Lambda's deadline, at most 15 minutes; 15
//! minutes for `--local` runs), so a holder killed mid-run (timeout, crash)
//! blocks the account only until then.
//!
//! **Name.** `keyfleet-lease`, outside `keyfleet/`: every name under
//! `keyfleet/` can be a user's record (commas in user names become slashes,
//! see [`crate::record::secret_name`]).
//!
//! **Runs seen.** The lease also keeps the ids of the last [`RUNS_KEPT`]
//! runs that took it, so that a job delivered again (its first attempt
//! stopped, or its result was lost) knows it is a retry
//! ([`Lease::again`]) and reads the record of every user: a user its first
//! attempt left with nothing due (a key deleted, say) would otherwise cost
//! no record read, and its result row would lose what was done. A forged
//! lease can only make a run read more records: what a retry reports comes
//! from the users' protected records.
//!
//! Cost: 2-3 Secrets Manager calls to take, 2 to release; no IAM call.

use aws_sdk_secretsmanager::Client as Sm;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The lease's secret name.
pub const LEASE_NAME: &str = "keyfleet-lease";
const NEXT: &str = "keyfleet-next";
/// How many run ids the lease remembers (see "Runs seen").
pub const RUNS_KEPT: usize = 32;

/// Why the lease could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("another run ({run_id}) holds the account's lease until {until}; not started")]
    Busy {
        run_id: String,
        until: OffsetDateTime,
    },
    #[error("the account's lease could not be taken: Secrets Manager {op} failed: {message}")]
    Sm { op: &'static str, message: String },
    #[error("secret `{LEASE_NAME}` is not a keyfleet lease; not started")]
    Foreign,
}

/// What the lease secret holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LeaseValue {
    holder: String,
    run_id: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    #[serde(default)]
    released: bool,
    /// The runs that took the lease, newest first (see "Runs seen").
    #[serde(default)]
    runs: Vec<String>,
}

/// A lease this agent holds; give it back with [`Lease::release`].
#[derive(Debug)]
pub struct Lease {
    holder: String,
    run_id: String,
    version: String,
    runs: Vec<String>,
    /// This run had taken the lease before: the job is a retry.
    pub again: bool,
}

fn sm_err<E, R>(
    op: &'static str,
) -> impl Fn(aws_sdk_secretsmanager::error::SdkError<E, R>) -> LeaseError
where
    E: aws_sdk_secretsmanager::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    move |e| LeaseError::Sm {
        op,
        message: crate::record::sm_message(&e),
    }
}

/// Takes the account's lease for `run_id` until `expires_at`.
pub async fn acquire(
    sm: &Sm,
    run_id: &str,
    expires_at: OffsetDateTime,
) -> Result<Lease, LeaseError> {
    let holder = keyfleet_protocol::Token::generate().0;
    let value = |runs: Vec<String>| LeaseValue {
        holder: holder.clone(),
        run_id: run_id.to_string(),
        expires_at,
        released: false,
        runs,
    };
    // Read first: the lease exists after the first run of the account.
    let current = sm.get_secret_value().secret_id(LEASE_NAME).send().await;
    let (seen_version, seen) = match current {
        Ok(out) => {
            let seen: LeaseValue = out
                .secret_string()
                .and_then(|s| serde_json::from_str(s).ok())
                .ok_or(LeaseError::Foreign)?;
            (out.version_id().unwrap_or_default().to_string(), seen)
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            let runs = vec![run_id.to_string()];
            let body = serde_json::to_string(&value(runs.clone())).expect("the lease serializes");
            return match sm
                .create_secret()
                .name(LEASE_NAME)
                .description("keyfleet: one run at a time in this account")
                .secret_string(&body)
                .send()
                .await
            {
                Ok(out) => Ok(Lease {
                    holder,
                    run_id: run_id.to_string(),
                    version: out.version_id().unwrap_or_default().to_string(),
                    runs,
                    again: false,
                }),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_exists_exception()) =>
                {
                    // Another agent created it first.
                    Err(LeaseError::Busy {
                        run_id: "unknown".into(),
                        until: expires_at,
                    })
                }
                Err(e) => Err(sm_err("CreateSecret")(e)),
            };
        }
        Err(e) => return Err(sm_err("GetSecretValue")(e)),
    };
    if !seen.released && seen.expires_at > OffsetDateTime::now_utc() {
        return Err(LeaseError::Busy {
            run_id: seen.run_id,
            until: seen.expires_at,
        });
    }
    let again = seen.runs.iter().any(|r| r == run_id);
    let mut runs: Vec<String> = std::iter::once(run_id.to_string())
        .chain(seen.runs.into_iter().filter(|r| r != run_id))
        .collect();
    runs.truncate(RUNS_KEPT);
    let body = serde_json::to_string(&value(runs.clone())).expect("the lease serializes");
    let version = swap(sm, &seen_version, body)
        .await?
        .ok_or_else(|| LeaseError::Busy {
            run_id: "unknown".into(),
            until: expires_at,
        })?;
    Ok(Lease {
        holder,
        run_id: run_id.to_string(),
        version,
        runs,
        again,
    })
}

/// Puts `body` as a new version and makes it current if the current
/// version is still `expected`. `None` when another agent got there first.
async fn swap(sm: &Sm, expected: &str, body: String) -> Result<Option<String>, LeaseError> {
    let put = sm
        .put_secret_value()
        .secret_id(LEASE_NAME)
        .secret_string(body)
        .version_stages(NEXT)
        .send()
        .await
        .map_err(sm_err("PutSecretValue"))?;
    let new = put.version_id().unwrap_or_default().to_string();
    match sm
        .update_secret_version_stage()
        .secret_id(LEASE_NAME)
        .version_stage("AWSCURRENT")
        .move_to_version_id(&new)
        .remove_from_version_id(expected)
        .send()
        .await
    {
        Ok(_) => Ok(Some(new)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_invalid_parameter_exception()) =>
        {
            // AWSCURRENT is no longer on the version read: someone else
            // swapped first.
            Ok(None)
        }
        Err(e) => Err(sm_err("UpdateSecretVersionStage")(e)),
    }
}

impl Lease {
    /// Gives the lease back, unless it expired and another run took it
    /// over meanwhile (then there is nothing to give back; logged).
    pub async fn release(self, sm: &Sm) {
        let value = LeaseValue {
            holder: self.holder,
            run_id: self.run_id,
            expires_at: OffsetDateTime::now_utc(),
            released: true,
            runs: self.runs,
        };
        let body = serde_json::to_string(&value).expect("the lease serializes");
        match swap(sm, &self.version, body).await {
            Ok(Some(_)) => {}
            Ok(None) => tracing::warn!("the account's lease had been taken over; not released"),
            Err(e) => {
                tracing::warn!(error = %e, "the account's lease could not be released; it expires on its own")
            }
        }
    }
}
