//! What a person reads when a command fails: at most two lines, what failed
//! and what to do.
//!
//! ```text
//! keyfleet: reading run latest: S3 ListObjectsV2 s3://keyfleet-reports/runs/ failed: AccessDenied: User: arn:aws:iam::123456789012:user/ops is not authorized to perform: s3:ListBucket ...
//!   To fix: the identity you run as may not do this; the README's "Deploy to AWS" (step 7, Operate) lists what each command needs, and `aws sts get-caller-identity` shows who you are.
//! ```
//!
//! The first line is the error with its context, outermost first, on one
//! line: keyfleet's own words, then the service, the operation and AWS's
//! error code and message, or "could not reach the endpoint" (the
//! libraries describe AWS errors with `keyfleet_protocol::aws_error`, never
//! with the SDK's `Debug` dump). The second line is the advice for the
//! [`Cause`] the first line shows, when there is one. The whole chain goes
//! to the log at debug level (`KEYFLEET_LOG=debug`). `RUST_BACKTRACE` does
//! not turn an error into a backtrace: the `Debug` form, which prints one,
//! is never shown (panics keep theirs).
//!
//! The cause is read from the text, by AWS's error codes (stable across
//! SDKs and services) and the SDK's words for a request that never got an
//! answer: the errors reach the command line from several crates, as text
//! already, and the codes are what a person would search for too.

use keyfleet_protocol::aws_error::one_line;

/// Why a command failed, as far as advice goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// No credentials could be found at all.
    NoCredentials,
    /// Credentials AWS knew, past their expiry.
    CredentialsExpired,
    /// A request refused for when it was signed: the clock is off.
    ClockSkew,
    /// Credentials AWS does not accept (unknown, inactive or deleted key,
    /// wrong secret).
    CredentialsRefused,
    /// No answer: connection refused, DNS, timeout.
    Unreachable,
    AccessDenied,
    /// A function, bucket, queue, secret or StackSet that is not there.
    Missing,
    Throttled,
    Other,
}

const EXPIRED: &[&str] = &[
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "TokenRefreshRequired",
];
const REFUSED: &[&str] = &[
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "AuthFailure",
    "IncompleteSignature",
    "MissingAuthenticationToken",
];
const THROTTLED: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "SlowDown",
    "RequestLimitExceeded",
    "RequestThrottled",
    "ProvisionedThroughputExceededException",
];
const DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "KMS.AccessDeniedException",
    "KMSAccessDeniedException",
    "UnauthorizedOperation",
    "AuthorizationError",
];
const MISSING: &[&str] = &[
    "NoSuchBucket",
    "ResourceNotFoundException",
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
    "NoSuchEntity",
    "NotFoundException",
    "StackSetNotFoundException",
    "StackInstanceNotFoundException",
    "NoSuchKey",
];

/// A request refused for its time: this machine's clock is off.
const SKEWED: &[&str] = &["RequestTimeTooSkewed", "RequestExpired", "SignatureExpired"];

/// The SDK's and keyfleet's words for credentials that could not be found.
const NO_CREDENTIALS: &[&str] = &[
    "no AWS credentials found",
    "the credential provider was not enabled",
    "failed to load credentials",
    "no credentials found in chain",
];
/// ... and for a request that got no answer.
const UNREACHABLE: &[&str] = &[
    "could not reach the endpoint",
    "timed out reaching the endpoint",
    "Connection refused",
    "dns error",
    "failed to lookup address",
    "error trying to connect",
];

/// The cause `text` (an error's one-line form) shows. Credentials come
/// first: a refused key makes every later call fail, whatever it was.
pub fn cause_of(text: &str) -> Cause {
    let tokens: Vec<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
        .map(|t| t.trim_end_matches('.'))
        .filter(|t| !t.is_empty())
        .collect();
    let has = |codes: &[&str]| tokens.iter().any(|t| codes.contains(t));
    let says = |phrases: &[&str]| {
        let lower = text.to_ascii_lowercase();
        phrases
            .iter()
            .any(|p| lower.contains(&p.to_ascii_lowercase()))
    };
    if says(NO_CREDENTIALS) {
        Cause::NoCredentials
    } else if has(SKEWED) || says(&["Signature expired"]) {
        Cause::ClockSkew
    } else if has(EXPIRED) {
        Cause::CredentialsExpired
    } else if has(REFUSED) {
        Cause::CredentialsRefused
    } else if has(THROTTLED) {
        Cause::Throttled
    } else if has(DENIED) || says(&["HTTP 403"]) {
        Cause::AccessDenied
    } else if has(MISSING) || says(&["does not exist", "HTTP 404"]) {
        Cause::Missing
    } else if says(UNREACHABLE) {
        Cause::Unreachable
    } else {
        Cause::Other
    }
}

/// Where the command sent its requests, for the advice on an endpoint it
/// could not reach: set once the configuration is read.
static ENDPOINT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Notes where the command's requests go: `endpoint` (an emulator, a VPC
/// endpoint) or AWS's public endpoints in `region`.
pub fn note_endpoint(endpoint: Option<&str>, region: &str) {
    let _ = ENDPOINT.set(match endpoint {
        Some(url) => format!("{url} ([aws] endpoint_url or --endpoint-url)"),
        None => format!("AWS in {region} ([aws] region)"),
    });
}

/// What to do about `cause`.
pub fn advice(cause: Cause) -> Option<String> {
    if cause == Cause::Unreachable {
        if let Some(endpoint) = ENDPOINT.get() {
            return Some(format!(
                "To fix: check the network and the endpoint: {endpoint}."
            ));
        }
    }
    advice_text(cause).map(str::to_string)
}

fn advice_text(cause: Cause) -> Option<&'static str> {
    Some(match cause {
        Cause::NoCredentials => {
            "To fix: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or run `aws sso login`; against an emulator pass --endpoint-url."
        }
        Cause::CredentialsExpired => {
            "To fix: your AWS credentials have expired; get new ones (`aws sso login`, or your identity provider) and run the command again."
        }
        Cause::ClockSkew => {
            "To fix: AWS refused the request for the time it was signed; set this machine's clock right (AWS allows 5 minutes off) and run the command again."
        }
        Cause::CredentialsRefused => {
            "To fix: AWS does not accept these credentials (an unknown, deactivated or deleted key, or a wrong secret); check AWS_PROFILE or AWS_ACCESS_KEY_ID."
        }
        Cause::Unreachable => {
            "To fix: check the network, [aws] region, and [aws] endpoint_url or --endpoint-url in keyfleet.toml (unset for AWS itself)."
        }
        Cause::AccessDenied => {
            "To fix: the identity you run as may not do this; the README's \"Deploy to AWS\" (steps 7 and 8) lists what each command needs, and `aws sts get-caller-identity` shows who you are."
        }
        Cause::Missing => {
            "To fix: check the names in keyfleet.toml ([coordinator] function, report_bucket, ...) against the deployment (`terraform output`), and the region."
        }
        Cause::Throttled => {
            "To fix: AWS is throttling these calls (keyfleet retried them already); wait a minute and run the command again."
        }
        Cause::Other => return None,
    })
}

/// The longest first line, in characters: an AWS message can be long.
const MAX_LINE: usize = 600;

/// The error as printed: `keyfleet: <what failed>` and, for a known cause,
/// `  <what to do>`.
pub fn render(e: &anyhow::Error) -> String {
    let what = one_line(&format!("{e:#}"));
    let what = match what.char_indices().nth(MAX_LINE) {
        Some((i, _)) => format!("{}...", &what[..i]),
        None => what,
    };
    let mut out = format!("keyfleet: {what}");
    let cause = cause_of(&what);
    let coordinator = e
        .chain()
        .find_map(|c| c.downcast_ref::<crate::deployed::CoordinatorAnswered>());
    let todo = match coordinator {
        // The coordinator met it, under its own role: not the operator's
        // credentials nor keyfleet.toml.
        Some(c) if cause != Cause::Other => Some(format!(
            "To fix: the coordinator met this under its own role; its log says more: aws logs tail /aws/lambda/{} --since 1h (and `keyfleet doctor` checks its deployment).",
            c.function
        )),
        _ => advice(cause),
    };
    if let Some(todo) = todo {
        out.push_str("\n  ");
        out.push_str(&todo);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Texts as the commands meet them (the SDK's and keyfleet's words).
    #[test]
    fn each_cause_is_read_from_the_words_aws_and_the_sdk_use() {
        let table: &[(&str, Cause)] = &[
            ("no AWS credentials found (the credential provider was not enabled: no credentials found in chain. Attempted: Environment: ...)", Cause::NoCredentials),
            ("S3 ListObjectsV2 s3://b/runs/ failed: ExpiredToken: The provided token has expired.", Cause::CredentialsExpired),
            ("invoking the coordinator `keyfleet-coordinator`: ExpiredTokenException: The security token included in the request is expired", Cause::CredentialsExpired),
            ("GetCallerIdentity: InvalidClientTokenId: The security token included in the request is invalid.", Cause::CredentialsRefused),
            ("S3 GetObject s3://b/k failed: InvalidAccessKeyId: The AWS Access Key Id you provided does not exist in our records.", Cause::CredentialsRefused),
            ("invoking the coordinator `f`: no answer (could not reach the endpoint: dispatch failure: io error: client error (Connect): tcp connect error: Connection refused (os error 111))", Cause::Unreachable),
            ("S3 ListObjectsV2 s3://b/ failed: SlowDown: Please reduce your request rate.", Cause::Throttled),
            ("invoking the coordinator `f`: TooManyRequestsException: Rate exceeded", Cause::Throttled),
            ("reading the key ring s: ThrottlingException: Rate exceeded", Cause::Throttled),
            ("invoking the coordinator `f`: AccessDeniedException: User: arn:aws:iam::1:user/u is not authorized to perform: lambda:InvokeFunction", Cause::AccessDenied),
            ("S3 ListObjectsV2 s3://b/runs/ failed: AccessDenied: Access Denied", Cause::AccessDenied),
            ("the coordinator function `f` does not exist here: deploy keyfleet with Terraform", Cause::Missing),
            ("S3 ListObjectsV2 s3://nope/runs/ failed: NoSuchBucket: The specified bucket does not exist", Cause::Missing),
            ("reading the agent StackSet s: StackSetNotFoundException: StackSet s not found", Cause::Missing),
            ("run 2026 failed: no account selected; report: s3://b/r", Cause::Other),
            ("S3 HeadObject s3://b/runs/r/final.json failed: HTTP 403 Forbidden (access denied; the response has no body)", Cause::AccessDenied),
            ("invoking the coordinator `f`: KMS.AccessDeniedException: the key policy refuses", Cause::AccessDenied),
            ("GetCallerIdentity: InvalidSignatureException: Signature expired: 20260101T000000Z is now earlier than ...", Cause::ClockSkew),
            ("assuming arn:aws:iam::1:role/r: AssumeRole returned no credentials", Cause::Other),
        ];
        for (text, cause) in table {
            assert_eq!(cause_of(text), *cause, "{text}");
        }
    }

    /// Two lines at most, the advice on the second, no `Debug` form and
    /// no backtrace (with `RUST_BACKTRACE=1`: cli/tests/it/errors.rs).
    #[test]
    fn an_error_is_two_lines_without_debug_or_backtrace() {
        let inner = anyhow::anyhow!(
            "S3 ListObjectsV2 s3://b/runs/ failed: AccessDenied: Access Denied\nfor this principal"
        );
        let e = inner.context("reading run latest");
        let text = render(&e);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("keyfleet: reading run latest: S3 ListObjectsV2"));
        assert!(lines[0].contains("AccessDenied: Access Denied for this principal"));
        assert!(lines[1].contains("Deploy to AWS"), "{text}");
        assert!(!text.contains("Stack backtrace") && !text.contains("Caused by"));
        let other = render(&anyhow::anyhow!("run r failed: no account selected"));
        assert_eq!(other, "keyfleet: run r failed: no account selected");
        let coordinator = anyhow::Error::new(crate::deployed::CoordinatorAnswered {
            function: "keyfleet-coordinator".into(),
            message: "S3 PutObject s3://b/runs/r/manifest.json failed: AccessDenied: Access Denied"
                .into(),
        });
        let text = render(&coordinator);
        assert!(
            text.contains("aws logs tail /aws/lambda/keyfleet-coordinator"),
            "{text}"
        );
        assert!(!text.contains("the identity you run as"), "{text}");
        let long = render(&anyhow::anyhow!("x".repeat(5000)));
        assert!(long.chars().count() < MAX_LINE + 20, "cut");
    }
}
