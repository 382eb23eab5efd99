//! One run at a time per account: a lease, one item of the account's
//! table ([`crate::table`]).
//!
//! Two agents working on one account at once (a job delivered twice at the
//! same moment, a scheduled run meeting an emergency rotation, a retried
//! start) could both see a user due and both create a key for it. Before a
//! job that may change anything (every job but a dry run), the agent takes
//! the account's lease, the table item `lease`; a second agent that finds
//! it held gives up cleanly: the job fails as [`LeaseError::Busy`] without
//! touching IAM, and SQS delivers it again after the queue's visibility
//! timeout, when the first run is over. Dry runs change nothing and take
//! no lease.
//!
//! **Atomicity.** Taking and giving back are conditional writes on the
//! item's version ([`crate::table::Table::put`]): of two agents taking a
//! free (or expired) lease, one write wins and the other fails its
//! condition. A take whose response was lost and whose retry met its own
//! write is recognised by its content (a random holder id).
//!
//! **Expiry.** A lease names its holder and expires when the holder's
//! invocation must be over (the Lambda's deadline, at most 15 minutes; 15
//! minutes for `--local` runs), so a holder killed mid-run (timeout, crash)
//! blocks the account only until then.
//!
//! **Runs seen.** The lease also keeps the ids of the last [`RUNS_KEPT`]
//! runs that took it, so that a job delivered again (its first attempt
//! stopped, or its result was lost) knows it is a retry
//! ([`Lease::again`]) and reads the record of every user: a user its first
//! attempt left with nothing due (a key deleted, say) would otherwise cost
//! no record read, and its result row would lose what was done.
//!
//! **Earlier releases** kept the lease in the secret `keyfleet-lease`. An
//! upgraded account may have one, held by a run of the earlier release
//! still going: until the lease item says the account's earlier state is
//! gone ([`Lease::migrated`]), taking the lease also reads that secret; a
//! live one makes this run give way (Busy), an expired or released one is
//! deleted.
//!
//! Cost: 2 DynamoDB requests to take (a read and a conditional write), 1
//! to give back; after the upgrade, none in Secrets Manager.

use crate::table::{Table, TableError, Written};
use aws_sdk_secretsmanager::Client as Sm;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The lease's item key in the table.
pub const LEASE_KEY: &str = "lease";
/// The lease secret of earlier releases.
pub const LEGACY_LEASE: &str = "keyfleet-lease";
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
    #[error("the account's lease could not be taken: {0}")]
    Table(#[from] TableError),
    #[error("the account's lease could not be taken: Secrets Manager {op} failed: {message}")]
    Sm { op: &'static str, message: String },
    #[error("item `{LEASE_KEY}` of the table is not a keyfleet lease; not started")]
    Foreign,
}

/// What the lease holds.
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
    /// The account holds nothing of an earlier release any more.
    #[serde(default)]
    migrated: bool,
}

/// A lease this agent holds; give it back with [`Lease::release`].
#[derive(Debug)]
pub struct Lease {
    holder: String,
    run_id: String,
    version: u64,
    runs: Vec<String>,
    /// This run had taken the lease before: the job is a retry.
    pub again: bool,
    /// Nothing of an earlier release is left in the account (its records
    /// and lease secrets were moved or deleted); set it when a run finds
    /// so, and the lease remembers it.
    pub migrated: bool,
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
    table: &Table,
    sm: &Sm,
    run_id: &str,
    expires_at: OffsetDateTime,
) -> Result<Lease, LeaseError> {
    let holder = keyfleet_protocol::Token::generate().0;
    let seen = table.get(LEASE_KEY).await?;
    let (read, previous) = match seen {
        None => (None, None),
        Some((body, v)) => {
            let value: LeaseValue = serde_json::from_str(&body).map_err(|_| LeaseError::Foreign)?;
            if !value.released && value.expires_at > OffsetDateTime::now_utc() {
                return Err(LeaseError::Busy {
                    run_id: value.run_id,
                    until: value.expires_at,
                });
            }
            (Some(v), Some(value))
        }
    };
    let again = previous
        .as_ref()
        .is_some_and(|p| p.runs.iter().any(|r| r == run_id));
    let migrated = previous.as_ref().is_some_and(|p| p.migrated);
    let mut runs: Vec<String> = std::iter::once(run_id.to_string())
        .chain(
            previous
                .map(|p| p.runs)
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r != run_id),
        )
        .collect();
    runs.truncate(RUNS_KEPT);
    let value = LeaseValue {
        holder: holder.clone(),
        run_id: run_id.to_string(),
        expires_at,
        released: false,
        runs: runs.clone(),
        migrated,
    };
    let body = serde_json::to_string(&value).expect("the lease serializes");
    let version = match table.put(LEASE_KEY, &body, read).await? {
        Written::At(v) => v,
        Written::Conflict => {
            // Another agent took it first.
            return Err(LeaseError::Busy {
                run_id: "unknown".into(),
                until: expires_at,
            });
        }
    };
    let lease = Lease {
        holder,
        run_id: run_id.to_string(),
        version,
        runs,
        again,
        migrated,
    };
    if !migrated {
        if let Err(e) = give_way_to_legacy(sm).await {
            lease.release(table).await;
            return Err(e);
        }
    }
    Ok(lease)
}

/// An earlier release's lease secret: a live one wins (this run gives
/// way); a spent one is deleted.
async fn give_way_to_legacy(sm: &Sm) -> Result<(), LeaseError> {
    let out = match sm.get_secret_value().secret_id(LEGACY_LEASE).send().await {
        Ok(out) => out,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            return Ok(())
        }
        Err(e) => return Err(sm_err("GetSecretValue")(e)),
    };
    if let Some(held) = out
        .secret_string()
        .and_then(|s| serde_json::from_str::<LeaseValue>(s).ok())
    {
        if !held.released && held.expires_at > OffsetDateTime::now_utc() {
            return Err(LeaseError::Busy {
                run_id: held.run_id,
                until: held.expires_at,
            });
        }
    }
    crate::record::legacy::delete(sm, LEGACY_LEASE)
        .await
        .map_err(|message| LeaseError::Sm {
            op: "DeleteSecret",
            message,
        })
}

impl Lease {
    /// Gives the lease back, unless it expired and another run took it
    /// over meanwhile (then there is nothing to give back; logged).
    pub async fn release(self, table: &Table) {
        let value = LeaseValue {
            holder: self.holder,
            run_id: self.run_id,
            expires_at: OffsetDateTime::now_utc(),
            released: true,
            runs: self.runs,
            migrated: self.migrated,
        };
        let body = serde_json::to_string(&value).expect("the lease serializes");
        match table.put(LEASE_KEY, &body, Some(self.version)).await {
            Ok(Written::At(_)) => {}
            Ok(Written::Conflict) => {
                tracing::warn!("the account's lease had been taken over; not released")
            }
            Err(e) => {
                tracing::warn!(error = %e, "the account's lease could not be released; it expires on its own")
            }
        }
    }
}
