//! Seeding an emulated account with users and keys of chosen ages.
//!
//! Ages come from the harness clock: keys are created oldest first and the
//! account's clock is advanced between the age groups, so that at the end
//! every key has the age its spec names. Statuses and last use are set
//! afterwards (last use through the harness's key-used endpoint).

use crate::{Emulator, EmulatorError};
use aws_sdk_iam::types::{StatusType, Tag};
use futures::stream::{self, StreamExt};
use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime};

/// How a key should look.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub age_days: i64,
    pub active: bool,
    /// Days ago it was last used; `None` = never.
    pub used_days_ago: Option<i64>,
}

pub fn key(age_days: i64, active: bool, used_days_ago: Option<i64>) -> KeySpec {
    KeySpec {
        age_days,
        active,
        used_days_ago,
    }
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct UserSpec {
    pub name: String,
    pub path: String,
    /// Owner address for the `Email` tag; `None` = no tag.
    pub email: Option<String>,
    pub exempt: bool,
    pub keys: Vec<KeySpec>,
}

/// A user at path `/` with an `Email` tag derived from its name.
pub fn user(name: impl Into<String>, keys: Vec<KeySpec>) -> UserSpec {
    let name = name.into();
    let local: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    UserSpec {
        email: Some(format!("owner-{local}@example.com")),
        name,
        path: "/".into(),
        exempt: false,
        keys,
    }
}

/// Key ids per user, oldest first, as created.
pub type Created = BTreeMap<String, Vec<String>>;

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("IAM {op} for {user}: {message}")]
    Iam {
        op: &'static str,
        user: String,
        message: String,
    },
    #[error("DynamoDB table {table}: {message}")]
    Table { table: String, message: String },
    #[error(transparent)]
    Emulator(#[from] EmulatorError),
}

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder()
        .key(k)
        .value(v)
        .build()
        .expect("key and value set")
}

fn iam_err<E: std::fmt::Debug>(op: &'static str, user: &str) -> impl Fn(E) -> SeedError {
    let user = user.to_string();
    move |e| SeedError::Iam {
        op,
        user: user.clone(),
        message: format!("{e:?}"),
    }
}

/// Creates the users of `account` (with `iam` acting in that account), then
/// their keys oldest first with the clock advanced in between, then statuses
/// and last use. Returns the key ids per user, oldest first.
pub async fn populate(
    emu: &Emulator,
    iam: &aws_sdk_iam::Client,
    account: &str,
    users: &[UserSpec],
) -> Result<Created, SeedError> {
    let created_users: Vec<Result<(), SeedError>> = stream::iter(users)
        .map(|u| async move {
            let mut req = iam.create_user().user_name(&u.name).path(&u.path);
            if let Some(e) = &u.email {
                req = req.tags(tag("Email", e));
            }
            if u.exempt {
                req = req.tags(tag("Exempt", "True"));
            }
            req.send()
                .await
                .map(|_| ())
                .map_err(iam_err("CreateUser", &u.name))
        })
        .buffer_unordered(16)
        .collect()
        .await;
    created_users.into_iter().collect::<Result<(), _>>()?;

    let mut ages: Vec<i64> = users
        .iter()
        .flat_map(|u| u.keys.iter().map(|k| k.age_days))
        .collect();
    ages.sort_unstable_by(|a, b| b.cmp(a));
    ages.dedup();
    let mut created: Created = users.iter().map(|u| (u.name.clone(), vec![])).collect();
    for (i, age) in ages.iter().enumerate() {
        let todo: Vec<&str> = users
            .iter()
            .flat_map(|u| {
                u.keys
                    .iter()
                    .filter(|k| k.age_days == *age)
                    .map(|_| u.name.as_str())
            })
            .collect();
        let ids: Vec<Result<(String, String), SeedError>> = stream::iter(todo)
            .map(|name| async move {
                let out = iam
                    .create_access_key()
                    .user_name(name)
                    .send()
                    .await
                    .map_err(iam_err("CreateAccessKey", name))?;
                let id = out
                    .access_key()
                    .map(|k| k.access_key_id().to_string())
                    .unwrap_or_default();
                Ok((name.to_string(), id))
            })
            .buffer_unordered(16)
            .collect()
            .await;
        for r in ids {
            let (name, id) = r?;
            created.entry(name).or_default().push(id);
        }
        let next = ages.get(i + 1).copied().unwrap_or(0);
        emu.advance_clock((age - next) as f64, Some(account))?;
    }
    let now = OffsetDateTime::now_utc();
    for u in users {
        let ids = created.get(&u.name).cloned().unwrap_or_default();
        let mut specs: Vec<&KeySpec> = u.keys.iter().collect();
        specs.sort_by_key(|k| std::cmp::Reverse(k.age_days));
        for (spec, id) in specs.iter().zip(ids.iter()) {
            if !spec.active {
                iam.update_access_key()
                    .user_name(&u.name)
                    .access_key_id(id)
                    .status(StatusType::Inactive)
                    .send()
                    .await
                    .map_err(iam_err("UpdateAccessKey", &u.name))?;
            }
            if let Some(d) = spec.used_days_ago {
                let when = (now - Duration::days(d))
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                emu.mark_key_used(account, id, Some(&when), "s3", "eu-west-1")?;
            }
        }
    }
    Ok(created)
}

/// A user's keys in IAM now, oldest first: (access key id, active).
pub async fn keys(iam: &aws_sdk_iam::Client, user: &str) -> Result<Vec<(String, bool)>, SeedError> {
    let out = iam
        .list_access_keys()
        .user_name(user)
        .send()
        .await
        .map_err(iam_err("ListAccessKeys", user))?;
    let mut keys: Vec<(i128, String, bool)> = out
        .access_key_metadata()
        .iter()
        .map(|k| {
            (
                k.create_date().map(|d| d.as_nanos()).unwrap_or(0),
                k.access_key_id().unwrap_or_default().to_string(),
                k.status() == Some(&StatusType::Active),
            )
        })
        .collect();
    keys.sort();
    Ok(keys
        .into_iter()
        .map(|(_, id, active)| (id, active))
        .collect())
}

/// An agent's records table (`keyfleet-records`) as the agent's StackSet
/// template creates it: key `pk` (string), on demand, with `policy` as its
/// resource policy from its creation. For tests that run an agent in an
/// account without deploying the template.
pub async fn records_table(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    policy: &serde_json::Value,
) -> Result<(), SeedError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let err = |message: String| SeedError::Table {
        table: table.to_string(),
        message,
    };
    ddb.create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| err(e.to_string()))?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .map_err(|e| err(e.to_string()))?,
        )
        .resource_policy(policy.to_string())
        .send()
        .await
        .map_err(|e| err(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()))?;
    Ok(())
}
