//! `keyfleet credential-process`: a program's AWS credentials that follow
//! keyfleet's rotations by themselves, for `credential_process` in
//! `~/.aws/config`.
//!
//! With Secrets Manager delivery (or both), the agent puts each new key of
//! a user in the user's secret `keyfleet/<user>`, which the user alone may
//! read ([`keyfleet_agent`]'s delivery). This command holds the key it last
//! obtained (see [`store`]), reads the secret with it and prints the key
//! the secret holds, in the format SDKs expect from a credential process,
//! with an expiration an hour ahead: the SDK comes back within the hour and
//! picks up the next key long before the old one is deactivated (the
//! notice period is days). So a program configured with it keeps working
//! through rotation, deactivation and deletion with nobody touching it.
//!
//! - First use: `--init` takes the user's current key from
//!   `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or from standard input,
//!   checks with STS whose it is, and stores it.
//! - No secret yet (nothing rotated so far; AWS answers a user without
//!   policies `AccessDenied` for a secret that does not exist): the stored
//!   key is served, with a line on standard error.
//! - The secret unreadable for another reason, or refused after a rotation
//!   was picked up already (throttled, no network, not a key in it, a
//!   policy in the way): the stored key is served for five minutes and the
//!   reason goes to standard error.
//! - The Region is the one given at `--init` (the agent's, where the secret
//!   is), not the program's `AWS_REGION`.
//! - The stored key refused by AWS (deactivated or deleted before this
//!   machine picked up its replacement): the previous stored key is tried;
//!   failing that, the command fails and says what to do.
//!
//! Nothing secret is ever written to standard error; only standard output
//! carries the key, as the credential process protocol requires. It needs
//! no configuration file and makes no call but STS `GetCallerIdentity`
//! (with `--init`) and Secrets Manager `GetSecretValue`: one call an hour
//! per program, $0.05 per 10,000 calls.

pub mod store;

use anyhow::{anyhow, bail, Context, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use keyfleet_protocol::aws_error::describe;
use keyfleet_protocol::Secret;
use serde::Deserialize;
use std::path::PathBuf;
use store::{KeyPair, Stored};
use time::{Duration, OffsetDateTime};

/// How long a key read from the secret is good for, as far as the SDK
/// knows: it asks again within the hour.
const FRESH: Duration = Duration::hours(1);
/// How long a stored key served without reading the secret is good for.
const STALE: Duration = Duration::minutes(5);

/// The command's arguments.
pub struct Args {
    pub user: String,
    pub secret_id: Option<String>,
    pub region: Option<String>,
    pub store: Option<PathBuf>,
    pub init: bool,
    pub endpoint_url: Option<String>,
}

impl Args {
    fn secret_id(&self) -> String {
        self.secret_id
            .clone()
            .unwrap_or_else(|| keyfleet_protocol::secret_name(&self.user))
    }

    fn store_path(&self) -> Result<PathBuf> {
        match &self.store {
            Some(p) => Ok(p.clone()),
            None => store::default_path(&self.user)
                .ok_or_else(|| anyhow!("neither XDG_CONFIG_HOME nor HOME is set: pass --store")),
        }
    }

    /// The Region given now (`--region`, else the environment's), if any.
    fn region_given(&self) -> Option<String> {
        self.region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .filter(|r| !r.is_empty())
    }

    fn init_hint(&self) -> String {
        format!("keyfleet credential-process --user {} --init", self.user)
    }
}

/// The delivery secret's value: AWS's conventional flat object.
#[derive(Deserialize)]
struct Delivered {
    #[serde(rename = "AccessKeyId")]
    access_key_id: String,
    #[serde(rename = "SecretAccessKey")]
    secret_access_key: Secret,
    #[serde(rename = "UserName")]
    user_name: Option<String>,
}

/// What SDKs read from a credential process.
pub fn output(key: &KeyPair, expires: OffsetDateTime) -> String {
    serde_json::json!({
        "Version": 1,
        "AccessKeyId": key.access_key_id,
        "SecretAccessKey": key.secret_access_key.expose(),
        "Expiration": expires
            .replace_nanosecond(0)
            .unwrap_or(expires)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    })
    .to_string()
}

/// The error codes with which AWS refuses a key itself (inactive, deleted,
/// or a secret that does not match), as opposed to what the key may do.
pub fn refuses_the_key(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "UnrecognizedClientException"
                | "InvalidClientTokenId"
                | "InvalidSignatureException"
                | "SignatureDoesNotMatch"
                | "InvalidAccessKeyId"
                | "ExpiredTokenException"
        )
    )
}

/// Runs the command; on success the credentials are on standard output.
pub async fn run(args: Args) -> Result<()> {
    let path = args.store_path()?;
    if args.init {
        let region = args.region_given().ok_or_else(|| {
            anyhow!(
                "no region: pass --region, the Region of the keyfleet agent that rotates {} (where \
                 its delivery secret is)",
                args.user
            )
        })?;
        return init(&args, &path, &region).await;
    }
    let mut stored = store::load(&path, &args.user).map_err(|e| match e {
        store::StoreError::Missing { .. } => anyhow!(
            "{e}: run `{}` once, with the user's current key in AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY or pasted when asked",
            args.init_hint()
        ),
        other => anyhow!(other),
    })?;
    // The secret's Region as stored at --init: the program's own Region
    // (AWS_REGION) may be another.
    let region = args.region.clone().unwrap_or_else(|| stored.region.clone());
    let now = OffsetDateTime::now_utc();
    let mut tried = Vec::new();
    for key in std::iter::once(stored.current.clone()).chain(stored.previous.clone()) {
        match read_secret(&args, &region, &key, stored.previous.is_some()).await {
            Read::Delivered(next) => {
                if stored.advance(next.clone()) {
                    store::save(&path, &stored)?;
                }
                println!("{}", output(&next, now + FRESH));
                return Ok(());
            }
            Read::Unreadable(why, good_for) => {
                eprintln!(
                    "keyfleet credential-process: serving the stored key {}: {why}",
                    key.access_key_id
                );
                println!("{}", output(&key, now + good_for));
                return Ok(());
            }
            Read::KeyRefused(why) => tried.push(format!("{} ({why})", key.access_key_id)),
        }
    }
    bail!(
        "AWS refused the stored key of {}: {}. It was deactivated or deleted before this \
         machine picked up its replacement. Take the current key (keyfleet's email to the \
         owner, or the secret {}) and run `{}`",
        args.user,
        tried.join("; "),
        args.secret_id(),
        args.init_hint()
    )
}

enum Read {
    Delivered(KeyPair),
    /// Why, and how long the stored key is served meanwhile.
    Unreadable(String, Duration),
    KeyRefused(String),
}

async fn sdk(args: &Args, region: &str, key: &KeyPair) -> SdkConfig {
    let credentials = aws_credential_types::Credentials::new(
        &key.access_key_id,
        key.secret_access_key.expose(),
        None,
        None,
        "keyfleet-credential-process",
    );
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(credentials);
    if let Some(url) = &args.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// Reads the delivery secret with `key`. `rotated_before`: this store has
/// picked up a rotation already, so the secret exists and a refusal is not
/// "before the first rotation".
async fn read_secret(args: &Args, region: &str, key: &KeyPair, rotated_before: bool) -> Read {
    let sm = aws_sdk_secretsmanager::Client::new(&sdk(args, region, key).await);
    let id = args.secret_id();
    let out = match sm.get_secret_value().secret_id(&id).send().await {
        Ok(out) => out,
        Err(e) if refuses_the_key(e.code()) => {
            return Read::KeyRefused(e.code().unwrap_or_default().to_string())
        }
        Err(e) => {
            let code = e.code().unwrap_or_default().to_string();
            let not_yet = e
                .as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception())
                || code == "AccessDeniedException";
            // Before the first rotation there is no secret, and AWS answers
            // a user without policies AccessDenied for it: expected for
            // weeks, so the stored key is served for the usual hour. After
            // one, the same answer means something is wrong: five minutes,
            // and said.
            if not_yet && !rotated_before {
                return Read::Unreadable(
                    format!(
                        "secret {id} in {region} is not readable with it ({code}); before \
                         keyfleet's first rotation of {} there is none yet (if there is one, \
                         check --region)",
                        args.user
                    ),
                    FRESH,
                );
            }
            return Read::Unreadable(
                format!(
                    "GetSecretValue {id} in {region}: {}",
                    e.code()
                        .map(|c| format!("{c}: {}", e.message().unwrap_or_default()))
                        .unwrap_or_else(|| describe(&e))
                ),
                STALE,
            );
        }
    };
    match serde_json::from_str::<Delivered>(out.secret_string().unwrap_or_default()) {
        Ok(d) if d.user_name.as_deref().is_none_or(|u| u == args.user) => {
            Read::Delivered(KeyPair {
                access_key_id: d.access_key_id,
                secret_access_key: d.secret_access_key,
            })
        }
        Ok(d) => Read::Unreadable(
            format!(
                "secret {id} holds a key of {}, not of {}",
                d.user_name.unwrap_or_default(),
                args.user
            ),
            STALE,
        ),
        // Never the parser's message: it could quote the secret.
        Err(_) => Read::Unreadable(
            format!("secret {id} does not hold AccessKeyId and SecretAccessKey as JSON"),
            STALE,
        ),
    }
}

/// `--init`: the user's current key, checked with STS and stored.
async fn init(args: &Args, path: &std::path::Path, region: &str) -> Result<()> {
    let key = match (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Ok(id), Ok(secret)) if !id.is_empty() && !secret.is_empty() => KeyPair {
            access_key_id: id,
            secret_access_key: Secret::new(secret),
        },
        _ => pasted()?,
    };
    let sts = aws_sdk_sts::Client::new(&sdk(args, region, &key).await);
    let who = sts.get_caller_identity().send().await.map_err(|e| {
        anyhow!(
            "AWS refused the key {}: {}",
            key.access_key_id,
            describe(&e)
        )
    })?;
    let arn = who.arn().unwrap_or_default();
    let user = arn
        .split_once(":user/")
        .map(|(_, p)| p.rsplit('/').next().unwrap_or(p));
    if user != Some(args.user.as_str()) {
        bail!(
            "the key {} belongs to {arn}, not to the IAM user {}",
            key.access_key_id,
            args.user
        );
    }
    let id = key.access_key_id.clone();
    store::save(path, &Stored::new(&args.user, region, key))?;
    eprintln!(
        "keyfleet credential-process: stored {id} of {arn} in {}",
        path.display()
    );
    Ok(())
}

/// Reads a key pasted on standard input: the key id, then the secret.
fn pasted() -> Result<KeyPair> {
    use std::io::BufRead;
    eprintln!("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set: paste the access key id, then the secret access key, one per line");
    let mut lines = std::io::stdin().lock().lines();
    let mut next = |what: &str| -> Result<String> {
        lines
            .next()
            .transpose()
            .context("reading standard input")?
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .ok_or_else(|| anyhow!("no {what} on standard input"))
    };
    let access_key_id = next("access key id")?;
    let secret_access_key = Secret::new(next("secret access key")?);
    Ok(KeyPair {
        access_key_id,
        secret_access_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_is_what_sdks_read_from_a_credential_process() {
        let key = KeyPair {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: Secret::new("s3cr3t"),
        };
        let at = time::macros::datetime!(2026-12-06 10:00:00.123 UTC);
        let v: serde_json::Value = serde_json::from_str(&output(&key, at)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "Version": 1,
                "AccessKeyId": "AKIAEXAMPLE",
                "SecretAccessKey": "s3cr3t",
                "Expiration": "2026-12-06T10:00:00Z",
            })
        );
    }

    #[test]
    fn only_the_codes_that_refuse_the_key_itself_count_as_refused() {
        for code in [
            "UnrecognizedClientException",
            "InvalidClientTokenId",
            "InvalidSignatureException",
        ] {
            assert!(refuses_the_key(Some(code)), "{code}");
        }
        for code in [
            "AccessDeniedException",
            "ThrottlingException",
            "ResourceNotFoundException",
        ] {
            assert!(!refuses_the_key(Some(code)), "{code}");
        }
        assert!(!refuses_the_key(None));
    }

    #[test]
    fn the_delivery_secrets_shape_is_read_and_a_bad_one_shows_no_secret() {
        let d: Delivered = serde_json::from_str(
            r#"{"AccessKeyId":"AKIA2","SecretAccessKey":"abc","UserName":"alice","CreateDate":"2026-12-06T10:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(
            (d.access_key_id.as_str(), d.user_name.as_deref()),
            ("AKIA2", Some("alice"))
        );
        assert_eq!(d.secret_access_key.expose(), "abc");
    }
}
