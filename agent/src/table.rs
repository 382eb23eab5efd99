//! The account's keyfleet table: DynamoDB `keyfleet-records`, where the
//! protected per-user records ([`crate::record`]) and the account's lease
//! ([`crate::lease`]) live, one item each.
//!
//! **Why a table.** Secrets Manager bills $0.40 per secret per month: a
//! record per user is about $20,000 a month for 50,000 users, to hold a
//! few hundred bytes each. An on-demand table bills its storage ($0.25 per
//! GB-month) and its requests ($0.625 per million writes, $0.125 per
//! million reads): cents per thousand users. The guarantees are the ones
//! the secrets gave:
//!
//! - **Only the agent writes.** The StackSet template creates the table
//!   with a resource-based policy ([`table_policy`]) that denies every
//!   item write, every change of the table and every change of the policy
//!   to any principal but the agent role (`keyfleet-agent*`); the StackSet
//!   execution roles may change the table and its policy (a stack update
//!   must be able to), never its items. The policy is on the table from
//!   its creation (CloudFormation passes it to `CreateTable`), so no item
//!   was ever written without it.
//! - **Checked before anything is trusted.** [`open`] reads the table's
//!   policy once per run (`GetResourcePolicy`) and trusts the table only
//!   when the policy is exactly keyfleet's ([`canonical`] form: AWS may
//!   give back a one-element list as a string, and list order carries no
//!   meaning). A table without it, or with another, is not keyfleet's: the
//!   agent reads nothing from it and writes nothing to it, and the account
//!   fails with the reason.
//! - **Conditional writes.** Every item carries a version (`v`); a write
//!   names the version it read (`attribute_not_exists` for a new item) and
//!   fails if another write came in between. A write whose response was
//!   lost and whose retry meets its own new version is recognised by its
//!   content (see [`Table::put`]).
//!
//! Encryption at rest is DynamoDB's (on by default; the template sets it),
//! point-in-time recovery is on, billing is on demand, and the table is
//! kept when the stack is deleted (`DeletionPolicy: Retain`): the records
//! outlive a redeployment.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client as Ddb;
use std::collections::HashMap;

/// The table's name in every member account.
pub const TABLE_NAME: &str = "keyfleet-records";

/// Item attributes.
const PK: &str = "pk";
const BODY: &str = "body";
const VERSION: &str = "v";

/// Why the table cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("DynamoDB {op} on table {TABLE_NAME} failed: {message}")]
    Ddb { op: &'static str, message: String },
    #[error("table {TABLE_NAME} does not exist: the keyfleet agent stack is not (fully) deployed in this account; update the StackSet instance")]
    Missing,
    #[error("table {TABLE_NAME} is not keyfleet's ({reason}); keyfleet trusts nothing in it and writes nothing to it: restore the resource policy of the agent's StackSet template (update the StackSet instance)")]
    Foreign { reason: String },
    #[error("item {pk} of table {TABLE_NAME} was changed by another writer since it was read")]
    Conflict { pk: String },
}

pub(crate) fn ddb_message<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> String
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
    match e.code() {
        Some(code) => format!("{code}: {}", e.message().unwrap_or("")),
        None => aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
    }
}

fn ddb_err<E, R>(op: &'static str) -> impl Fn(aws_sdk_dynamodb::error::SdkError<E, R>) -> TableError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    move |e| TableError::Ddb {
        op,
        message: ddb_message(&e),
    }
}

/// The actions nobody but the agent may take on the table: every item
/// write, and every change of the table, its backups and its policy.
pub const AGENT_ONLY: &[&str] = &[
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",
    "dynamodb:PartiQLDelete",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
];

/// The actions that change the table rather than its items: the agent
/// never takes them; the StackSet execution roles must be able to (a stack
/// update changes the table and its policy).
pub const STACK_ONLY: &[&str] = &[
    "dynamodb:DeleteResourcePolicy",
    "dynamodb:DeleteTable",
    "dynamodb:PutResourcePolicy",
    "dynamodb:RestoreTableToPointInTime",
    "dynamodb:UpdateContinuousBackups",
    "dynamodb:UpdateTable",
    "dynamodb:UpdateTimeToLive",
];

/// The table's resource policy, exactly as the StackSet template writes it
/// for `account_id` (a test compares the two): items are written by the
/// agent role only; the table and its policy are changed by the StackSet
/// execution roles only (service-managed `stacksets-exec-*`, self-managed
/// `AWSCloudFormationStackSetExecutionRole`).
pub fn table_policy(account_id: &str) -> serde_json::Value {
    let role = |name: &str| format!("arn:aws:iam::{account_id}:role/{name}");
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OnlyTheAgentWritesItems",
                "Effect": "Deny",
                "Principal": "*",
                "Action": AGENT_ONLY,
                "Resource": "*",
                "Condition": {"StringNotLike": {"aws:PrincipalArn": role("keyfleet-agent*")}}
            },
            {
                "Sid": "OnlyTheStackChangesTheTable",
                "Effect": "Deny",
                "Principal": "*",
                "Action": STACK_ONLY,
                "Resource": "*",
                "Condition": {"StringNotLike": {"aws:PrincipalArn": [
                    role("stacksets-exec-*"),
                    role("AWSCloudFormationStackSetExecutionRole")
                ]}}
            }
        ]
    })
}

/// A policy in a form where two policies that mean the same compare
/// equal: a one-element list is its element, and lists of strings are
/// sorted.
pub fn canonical(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Array(items) if items.len() == 1 => canonical(&items[0]),
        Value::Array(items) => {
            let mut out: Vec<Value> = items.iter().map(canonical).collect();
            if out.iter().all(Value::is_string) {
                out.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
            Value::Array(out)
        }
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
        }
        other => other.clone(),
    }
}

/// The account's table, its policy checked.
#[derive(Debug, Clone)]
pub struct Table {
    ddb: Ddb,
}

/// Opens the account's table: one `GetResourcePolicy`, compared with
/// [`table_policy`].
pub async fn open(ddb: &Ddb, region: &str, account_id: &str) -> Result<Table, TableError> {
    let arn = format!("arn:aws:dynamodb:{region}:{account_id}:table/{TABLE_NAME}");
    let found = match ddb.get_resource_policy().resource_arn(&arn).send().await {
        Ok(out) => out.policy().map(str::to_string),
        Err(e) => {
            let service = e.as_service_error();
            if service.is_some_and(|s| s.is_policy_not_found_exception()) {
                None
            } else if service.is_some_and(|s| s.is_resource_not_found_exception()) {
                return Err(TableError::Missing);
            } else {
                return Err(ddb_err("GetResourcePolicy")(e));
            }
        }
    };
    let Some(text) = found else {
        return Err(TableError::Foreign {
            reason: "it has no resource policy".into(),
        });
    };
    let parsed: Option<serde_json::Value> = serde_json::from_str(&text).ok();
    if parsed.map(|p| canonical(&p)) != Some(canonical(&table_policy(account_id))) {
        return Err(TableError::Foreign {
            reason: "its resource policy is not keyfleet's".into(),
        });
    }
    Ok(Table { ddb: ddb.clone() })
}

/// Outcome of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Written; the item's version is now this.
    At(u64),
    /// Another write came first (the item is not at the version read).
    Conflict,
}

impl Table {
    fn key(pk: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([(PK.to_string(), AttributeValue::S(pk.to_string()))])
    }

    /// An item's body and version (a consistent read); `None` when absent.
    /// An item without a string body or a numeric version reads as a body
    /// of `""` (which no caller parses: not keyfleet's).
    pub async fn get(&self, pk: &str) -> Result<Option<(String, u64)>, TableError> {
        let out = self
            .ddb
            .get_item()
            .table_name(TABLE_NAME)
            .set_key(Some(Self::key(pk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(ddb_err("GetItem"))?;
        Ok(out.item().map(|item| {
            let body = item
                .get(BODY)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default();
            let version = item
                .get(VERSION)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            (body, version)
        }))
    }

    /// Writes `body` at `pk` if the item is still at version `read` (`None`:
    /// if there is no item). A write whose condition fails is read back:
    /// when the item holds exactly `body` at the next version, it is this
    /// write, whose first response was lost and which the SDK sent again.
    pub async fn put(
        &self,
        pk: &str,
        body: &str,
        read: Option<u64>,
    ) -> Result<Written, TableError> {
        let next = read.map_or(1, |v| v + 1);
        let mut item = Self::key(pk);
        item.insert(BODY.into(), AttributeValue::S(body.to_string()));
        item.insert(VERSION.into(), AttributeValue::N(next.to_string()));
        let req = self
            .ddb
            .put_item()
            .table_name(TABLE_NAME)
            .set_item(Some(item));
        let req = match read {
            None => req
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK),
            Some(v) => req
                .condition_expression("#v = :v")
                .expression_attribute_names("#v", VERSION)
                .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
        };
        match req.send().await {
            Ok(_) => Ok(Written::At(next)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                match self.get(pk).await? {
                    Some((stored, v)) if v == next && stored == body => Ok(Written::At(next)),
                    _ => Ok(Written::Conflict),
                }
            }
            Err(e) => Err(ddb_err("PutItem")(e)),
        }
    }

    /// Writes several items, each if it is still at the version read, in
    /// as few requests as DynamoDB allows: one `TransactWriteItems` per
    /// [`TRANSACTION_ITEMS`] items (each item's write is authorized as its
    /// own `PutItem`, so the table's policy applies to each). A transaction
    /// whose condition fails on any item writes none: its items are then
    /// written one by one ([`Table::put`]), so that one item changed by
    /// another writer keeps back only itself. Returns each item's outcome,
    /// in order.
    ///
    /// Cost: a transactional write bills twice a plain write's request
    /// units ($1.25 instead of $0.625 per million items, on demand); what
    /// it saves is requests: one a hundred items instead of one an item.
    pub async fn put_many(
        &self,
        items: &[(String, String, Option<u64>)],
    ) -> Vec<Result<Written, TableError>> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(TRANSACTION_ITEMS) {
            if chunk.len() == 1 {
                let (pk, body, read) = &chunk[0];
                out.push(self.put(pk, body, *read).await);
                continue;
            }
            match self.transact(chunk).await {
                Ok(()) => out.extend(
                    chunk
                        .iter()
                        .map(|(_, _, read)| Ok(Written::At(read.map_or(1, |v| v + 1)))),
                ),
                Err(_) => {
                    for (pk, body, read) in chunk {
                        out.push(self.put(pk, body, *read).await);
                    }
                }
            }
        }
        out
    }

    /// One `TransactWriteItems` of conditional puts (see [`Table::put`]).
    async fn transact(&self, chunk: &[(String, String, Option<u64>)]) -> Result<(), TableError> {
        use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
        let mut writes = Vec::with_capacity(chunk.len());
        for (pk, body, read) in chunk {
            let next = read.map_or(1, |v| v + 1);
            let mut item = Self::key(pk);
            item.insert(BODY.into(), AttributeValue::S(body.clone()));
            item.insert(VERSION.into(), AttributeValue::N(next.to_string()));
            let put = Put::builder().table_name(TABLE_NAME).set_item(Some(item));
            let put = match read {
                None => put
                    .condition_expression("attribute_not_exists(#pk)")
                    .expression_attribute_names("#pk", PK),
                Some(v) => put
                    .condition_expression("#v = :v")
                    .expression_attribute_names("#v", VERSION)
                    .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
            };
            let put = put.build().map_err(|e| TableError::Ddb {
                op: "TransactWriteItems",
                message: e.to_string(),
            })?;
            writes.push(TransactWriteItem::builder().put(put).build());
        }
        self.ddb
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await
            .map_err(ddb_err("TransactWriteItems"))?;
        Ok(())
    }
}

/// The most items one `TransactWriteItems` takes.
pub const TRANSACTION_ITEMS: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_ignores_one_element_lists_and_order() {
        let a = serde_json::json!({"A": ["x"], "B": ["z", "y"], "C": {"D": ["q"]}});
        let b = serde_json::json!({"A": "x", "B": ["y", "z"], "C": {"D": "q"}});
        assert_eq!(canonical(&a), canonical(&b));
        let c = serde_json::json!({"A": "x", "B": ["y"], "C": {"D": "q"}});
        assert_ne!(canonical(&a), canonical(&c));
    }

    #[test]
    fn the_policy_denies_item_writes_and_table_changes_to_the_right_principals() {
        let p = table_policy("123456789012");
        let s = p["Statement"].as_array().unwrap();
        assert_eq!(s.len(), 2);
        assert!(s
            .iter()
            .all(|x| x["Effect"] == "Deny" && x["Principal"] == "*"));
        assert_eq!(
            s[0]["Condition"]["StringNotLike"]["aws:PrincipalArn"],
            "arn:aws:iam::123456789012:role/keyfleet-agent*"
        );
        // Nobody but the agent writes items; the stack roles never do.
        assert!(AGENT_ONLY.contains(&"dynamodb:PutItem"));
        assert!(!STACK_ONLY.iter().any(|a| AGENT_ONLY.contains(a)));
    }
}
