//! Who is calling, what they may do, and how often.
//!
//! # Decision: no API Gateway API keys; SigV4 on `/v1`, Bearer keys elsewhere
//!
//! The API used to take one credential, a keyfleet key in `x-api-key`,
//! registered twice: as its SHA-256 in the keys secret, and *with the same
//! value* as an API Gateway API key (which API Gateway wanted on `/v1`).
//! API Gateway returns API key values to anyone allowed `apigateway:GET`
//! (`aws apigateway get-api-keys --include-values`), which read-only
//! policies such as ReadOnlyAccess and SecurityAudit grant. So an auditor
//! could read back a key that starts emergency rotations. AWS's guidance is
//! the same: API Gateway API keys identify callers for usage plans and are
//! not for authorization. Now:
//!
//! - **`/v1` behind API Gateway is SigV4** (the methods' authorization is
//!   `AWS_IAM`). API Gateway checks the signature and puts the caller's
//!   ARN in the event's request context (`identity.userArn`); the Lambda
//!   layer ([`crate::lambda`]) turns that into a [`SigV4Principal`] request
//!   extension, and the keys secret's `principals` list maps it to scopes
//!   ([`crate::principals`]: an assumed-role session stands for its role).
//!   A signed caller that no entry lists gets 403. Nothing a read-only
//!   principal can read from API Gateway is a credential: a signature is
//!   made per request with the caller's own AWS credentials.
//! - **keyfleet's own keys** (for clients without AWS credentials, and the
//!   dashboard's login form) travel in `Authorization: Bearer <key>` and
//!   are checked by the function against the hashes ([`crate::keys`]); API
//!   Gateway never stores them. Since one API Gateway method has one
//!   authorization type and a SigV4 method refuses a Bearer header, key
//!   clients reach the same operations under **`/keys/v1`** (mounted by
//!   [`crate::routes::router`] next to `/v1`), which API Gateway sends to
//!   the function with authorization `NONE` (its `/{proxy+}` route, like
//!   the dashboard). A second door rather than a second stage or API: one
//!   deployment, one set of logs and limits, and the path says which
//!   credential a client needs.
//! - **`x-api-key` is not read any more**: whatever it holds opens
//!   nothing, so a key an operator still has registered in API Gateway
//!   grants nothing either (a 401's detail says to use `Authorization`).
//!
//! **Which credential each route takes** ([`Access`]): the API's routes
//! (`/v1/...` and `/keys/v1/...`, [`Access::Api`]) take a [`SigV4Principal`]
//! when the request carries one, else a Bearer key; the browser's routes
//! outside `/v1` ([`Access::KeyOrSession`]) take a Bearer key or the session
//! cookie, never a principal (a browser cannot sign). The function does not
//! insist that `/v1` be signed: behind API Gateway nothing unsigned reaches
//! it (and a SigV4 method refuses a Bearer `Authorization` header), and
//! `keyfleet serve` has no gateway, so there `/v1` takes Bearer keys.
//!
//! **`keyfleet serve`** (local, no API Gateway) authenticates API keys
//! only. A [`SigV4Principal`] exists only as a request extension that the
//! Lambda layer builds from API Gateway's request context; no header can
//! create one, so serve trusts no client-supplied principal, ever.
//!
//! **Refusals.** A missing or unknown key is a 401, a credential without
//! the route's scope a 403, a caller past its rate limit a 429 (see
//! [`crate::limit`]; a key is limited by its id, a principal by its
//! entry's ARN). Refused keys have no id to limit them by; a key has 256
//! random bits, so guessing is hopeless at any rate, and API Gateway's stage
//! throttling bounds it in production.
//!
//! **Browser sessions.** A browser without JavaScript cannot set a header,
//! so the dashboard has a login form that POSTs the key once
//! (`/login`); the answer sets a cookie that holds *not* the key but a
//! signed statement "key id K until T": `v1.<key id>.<expiry>.<mac>`, the
//! MAC being HMAC-SHA256 under the process's session key over the id, the
//! expiry and the key's stored hash. So the cookie is worthless without the
//! session key, it expires by itself after [`SESSION_SECONDS`], and removing
//! (or replacing) an API key ends its sessions at once. It is `HttpOnly`,
//! `SameSite=Strict`, and `Secure` when the request came over HTTPS (always
//! on Lambda behind API Gateway). Being signed rather than stored, a
//! session works on every Lambda instance that holds the same session key
//! (the keys secret's `session_key`, see [`crate::keys::KeysDocument`]);
//! without one each process draws its own, and a browser that lands on
//! another instance is asked to log in again.
//!
//! **Which routes take the cookie**: only the browser's, outside `/v1`, all
//! `GET`s with the `read` scope: the dashboard `/`, the stored reports
//! `/runs/{run_id}/report.{html,json,csv}` and the key inventory
//! `/export.csv` and `/export.json`. No API route takes it, so the two
//! actions need a header (or a signature), which no other site can make a
//! browser send: there is nothing to forge across sites, and the cookie's
//! routes only read.

use crate::keys::{ApiKeyEntry, Scope};
use crate::limit::Limiter;
use crate::problem::Problem;
use crate::AppState;
use axum::http::{header, HeaderMap, HeaderValue};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The scheme of the `Authorization` header that carries an API key.
pub const BEARER: &str = "Bearer";
/// The header keys travelled in before, which API Gateway reads its own
/// API keys from. Never read for a credential; only named in a 401, so a
/// client that still sends it learns why it is refused.
pub const LEGACY_KEY_HEADER: &str = "x-api-key";
/// Where API key clients find the API's routes behind API Gateway (its
/// `/v1` takes SigV4 only).
pub const KEYS_PREFIX: &str = "/keys";
/// `WWW-Authenticate` of a 401: the scheme a key client should use.
pub const WWW_AUTHENTICATE: &str = "Bearer realm=\"keyfleet\"";
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "keyfleet_session";
/// How long a browser session lasts (8 hours).
pub const SESSION_SECONDS: u64 = 8 * 3600;

/// The caller's ARN as API Gateway verified it (SigV4, `AWS_IAM`
/// methods): a request extension that only [`crate::lambda`] inserts, from
/// the event's request context. Never built from a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigV4Principal(pub String);

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// The API's routes: a SigV4 principal listed with the scope, or an
    /// API key with the scope in `Authorization: Bearer`.
    Api(Scope),
    /// The browser's routes: an API key with the scope in `Authorization:
    /// Bearer`, or a session cookie of one.
    KeyOrSession(Scope),
}

impl Access {
    pub fn scope(self) -> Option<Scope> {
        match self {
            Access::Public => None,
            Access::Api(s) | Access::KeyOrSession(s) => Some(s),
        }
    }
}

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// An API key in `Authorization: Bearer`.
    Key,
    /// The dashboard's session cookie (of an API key).
    Session,
    /// A SigV4 signature API Gateway checked.
    Principal,
}

/// The authenticated caller, in the request's and the response's
/// extensions (the request log names `caller`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's id, or the principal's ARN as API Gateway gave it (an
    /// assumed-role session's ARN names the session).
    pub id: String,
    pub via: Via,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No credential this route takes; `legacy` when the request had
    /// `x-api-key`, which is not read any more.
    Missing {
        legacy: bool,
    },
    Invalid,
    SessionEnded,
    /// A signed principal that no entry of the keys secret lists.
    Unlisted {
        principal: String,
    },
    /// `caller`: the key id or the principal's ARN.
    Forbidden {
        caller: String,
        via: Via,
        scope: Scope,
    },
    Limited {
        caller: String,
        retry_after: u64,
    },
}

impl Denied {
    pub fn problem(&self) -> Problem {
        match self {
            Denied::Missing { legacy } => Problem::unauthorized(format!(
                "this route needs an API key in the Authorization header (`{BEARER} <key>`), \
                 or, on /v1 behind API Gateway, a request signed with AWS SigV4{}",
                if *legacy {
                    format!(
                        "; the {LEGACY_KEY_HEADER} header is not read any more (API Gateway shows \
                         its values to read-only principals)"
                    )
                } else {
                    String::new()
                }
            )),
            Denied::Invalid => Problem::unauthorized("the API key is not valid"),
            Denied::SessionEnded => Problem::unauthorized(format!(
                "the browser session has ended: log in again, or send an API key in the \
                 Authorization header (`{BEARER} <key>`)"
            )),
            Denied::Unlisted { principal } => Problem::forbidden(format!(
                "IAM principal `{principal}` is not one the API accepts (the keys secret's \
                 principals list neither it nor its role)"
            )),
            Denied::Forbidden { caller, via, scope } => Problem::forbidden(format!(
                "{} `{caller}` does not have the `{scope}` scope this route needs",
                match via {
                    Via::Principal => "IAM principal",
                    Via::Key | Via::Session => "API key",
                }
            )),
            Denied::Limited { retry_after, .. } => Problem::too_many_requests(*retry_after),
        }
    }

    /// Who was refused, when the credential was recognized (the request log).
    pub fn caller(&self) -> Option<&str> {
        match self {
            Denied::Forbidden { caller, .. } | Denied::Limited { caller, .. } => Some(caller),
            Denied::Unlisted { principal } => Some(principal),
            _ => None,
        }
    }
}

/// What the `Authorization` header holds.
enum Credential<'h> {
    None,
    Bearer(&'h str),
    /// Another scheme (SigV4's `AWS4-HMAC-SHA256` reaching `keyfleet
    /// serve`, Basic, ...): nothing this API takes.
    Other,
}

fn credential(headers: &HeaderMap) -> Credential<'_> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Credential::None;
    };
    let Ok(v) = v.to_str() else {
        return Credential::Other;
    };
    match v.trim().split_once(' ') {
        // The scheme is case-insensitive (RFC 9110, 11.1).
        Some((scheme, token)) if scheme.eq_ignore_ascii_case(BEARER) => {
            Credential::Bearer(token.trim())
        }
        _ => Credential::Other,
    }
}

/// Checks the caller of a request against `access`, and takes a token
/// from the caller's rate limit. `principal` is the request's
/// [`SigV4Principal`], if the Lambda layer found one.
pub fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    principal: Option<&SigV4Principal>,
    access: Access,
) -> Result<Option<Caller>, Denied> {
    let Some(scope) = access.scope() else {
        return Ok(None);
    };
    if let (Access::Api(_), Some(SigV4Principal(arn))) = (access, principal) {
        let entry = state
            .principals()
            .lookup(arn)
            .ok_or_else(|| Denied::Unlisted {
                principal: arn.clone(),
            })?;
        let caller = Caller {
            id: arn.clone(),
            via: Via::Principal,
        };
        // Every session of a role shares the role's bucket.
        check(state, &caller, &entry.arn, entry.allows(scope), scope)?;
        return Ok(Some(caller));
    }
    let (entry, via) = match credential(headers) {
        Credential::Bearer(key) => (state.keys().verify(key).ok_or(Denied::Invalid)?, Via::Key),
        Credential::Other => return Err(Denied::Invalid),
        Credential::None => match (access, session_cookie(headers)) {
            (Access::KeyOrSession(_), Some(cookie)) => (
                verify_session(state, cookie).ok_or(Denied::SessionEnded)?,
                Via::Session,
            ),
            _ => {
                return Err(Denied::Missing {
                    legacy: headers.contains_key(LEGACY_KEY_HEADER),
                })
            }
        },
    };
    let caller = Caller {
        id: entry.id.clone(),
        via,
    };
    check(state, &caller, &entry.id, entry.allows(scope), scope)?;
    Ok(Some(caller))
}

/// Scope, then rate limit, for an API key (the login form's check).
pub fn admit(state: &AppState, entry: &ApiKeyEntry, scope: Scope) -> Result<(), Denied> {
    let caller = Caller {
        id: entry.id.clone(),
        via: Via::Key,
    };
    check(state, &caller, &entry.id, entry.allows(scope), scope)
}

/// Scope, then the rate limit of `bucket`.
fn check(
    state: &AppState,
    caller: &Caller,
    bucket: &str,
    allowed: bool,
    scope: Scope,
) -> Result<(), Denied> {
    if !allowed {
        return Err(Denied::Forbidden {
            caller: caller.id.clone(),
            via: caller.via,
            scope,
        });
    }
    state
        .limiter()
        .check(bucket)
        .map_err(|wait| Denied::Limited {
            caller: caller.id.clone(),
            retry_after: Limiter::retry_after_secs(wait),
        })
}

/// The session cookie's value, if the request has one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
}

fn mac(session_key: &[u8; 32], id: &str, expires: u64, sha256: &str) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(session_key).expect("HMAC takes any key length");
    m.update(format!("v1\n{id}\n{expires}\n{sha256}").as_bytes());
    m
}

/// A session cookie value for `entry`, valid until `expires` (Unix seconds).
pub fn sign_session(session_key: &[u8; 32], entry: &ApiKeyEntry, expires: u64) -> String {
    let tag = mac(session_key, &entry.id, expires, &entry.sha256)
        .finalize()
        .into_bytes();
    format!("v1.{}.{expires}.{}", entry.id, hex::encode(tag))
}

/// The key entry a session cookie stands for, if its MAC is good, it has
/// not expired and the key is still configured.
pub fn verify_session<'s>(state: &'s AppState, cookie: &str) -> Option<&'s ApiKeyEntry> {
    let rest = cookie.strip_prefix("v1.")?;
    let mut parts = rest.rsplitn(3, '.');
    let (tag, expires, id) = (parts.next()?, parts.next()?, parts.next()?);
    let expires: u64 = expires.parse().ok()?;
    let entry = state.keys().get(id)?;
    let tag = hex::decode(tag).ok()?;
    mac(state.session_key(), id, expires, &entry.sha256)
        .verify_slice(&tag)
        .ok()?;
    (state.clock().unix_seconds() < expires).then_some(entry)
}

/// Whether the request came over HTTPS (as far as the API can tell).
pub fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// `Set-Cookie` for a new session.
pub fn session_set_cookie(value: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; Max-Age={SESSION_SECONDS}; HttpOnly; SameSite=Strict{secure}"
    ))
    .expect("a session cookie is a valid header value")
}

/// `Set-Cookie` that ends the session.
pub fn session_clear_cookie(secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}"
    ))
    .expect("a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate;
    use crate::limit::{Clock, ManualClock, RateLimit};
    use crate::principals::PrincipalEntry;
    use crate::{test_state, test_state_with_principals};
    use std::sync::Arc;
    use std::time::Duration;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn bearer(key: &str) -> HeaderMap {
        headers(&[("authorization", &format!("Bearer {key}"))])
    }

    #[test]
    fn keys_are_checked_then_scopes_then_limits() {
        let (reader, er) = generate("reader", &[Scope::Read]);
        let (admin, ea) = generate("admin", &[Scope::Read, Scope::Rotate]);
        let clock = ManualClock::new();
        let state = test_state(
            vec![er, ea],
            RateLimit {
                per_minute: 60,
                burst: 2,
            },
            Arc::new(clock.clone()),
        );
        let read = Access::Api(Scope::Read);
        let rotate = Access::Api(Scope::Rotate);
        assert_eq!(
            authorize(&state, &headers(&[]), None, read),
            Err(Denied::Missing { legacy: false })
        );
        assert_eq!(
            authorize(&state, &bearer("kfk_nope"), None, read),
            Err(Denied::Invalid)
        );
        assert_eq!(
            authorize(&state, &bearer(&reader), None, rotate),
            Err(Denied::Forbidden {
                caller: "reader".into(),
                via: Via::Key,
                scope: Scope::Rotate
            })
        );
        let ok = authorize(&state, &bearer(&admin), None, rotate).unwrap();
        assert_eq!(
            ok,
            Some(Caller {
                id: "admin".into(),
                via: Via::Key
            })
        );
        authorize(&state, &bearer(&admin), None, read).unwrap();
        let Err(Denied::Limited { retry_after, .. }) =
            authorize(&state, &bearer(&admin), None, read)
        else {
            panic!("the third request in a burst of two passed");
        };
        assert_eq!(retry_after, 1);
        clock.advance(Duration::from_secs(1));
        authorize(&state, &bearer(&admin), None, read).unwrap();
        // Public routes need nothing.
        assert_eq!(
            authorize(&state, &headers(&[]), None, Access::Public),
            Ok(None)
        );
    }

    #[test]
    fn a_key_counts_only_as_a_bearer_credential() {
        let (admin, ea) = generate("admin", &[Scope::Read, Scope::Rotate]);
        let state = test_state(
            vec![ea.clone()],
            RateLimit::default(),
            Arc::new(ManualClock::new()),
        );
        let rotate = Access::Api(Scope::Rotate);
        // The scheme is case-insensitive; spaces around the key do not count.
        for value in [
            format!("Bearer {admin}"),
            format!("bearer {admin}"),
            format!("BEARER   {admin} "),
        ] {
            let h = headers(&[("authorization", &value)]);
            assert_eq!(
                authorize(&state, &h, None, rotate).unwrap().unwrap().via,
                Via::Key,
                "{value}"
            );
        }
        // x-api-key (where API Gateway's keys travel, and the value API
        // Gateway would hand to a reader) opens nothing, and says why.
        let legacy = headers(&[("x-api-key", &admin)]);
        for access in [
            rotate,
            Access::Api(Scope::Read),
            Access::KeyOrSession(Scope::Read),
        ] {
            assert_eq!(
                authorize(&state, &legacy, None, access),
                Err(Denied::Missing { legacy: true })
            );
        }
        let detail = Denied::Missing { legacy: true }.problem().detail;
        assert!(
            detail.contains("Authorization") && detail.contains("x-api-key"),
            "{detail}"
        );
        assert!(!detail.contains(&admin));
        // Another scheme, the hash, the key without its scheme: not a key.
        for value in [
            format!("Basic {admin}"),
            format!("AWS4-HMAC-SHA256 Credential={admin}"),
            format!("Bearer {}", ea.sha256),
            admin.clone(),
            "Bearer".to_string(),
        ] {
            let h = headers(&[("authorization", &value)]);
            assert_eq!(
                authorize(&state, &h, None, rotate),
                Err(Denied::Invalid),
                "{value}"
            );
        }
    }

    fn principals_state(limit: RateLimit, clock: ManualClock) -> AppState {
        test_state_with_principals(
            vec![],
            vec![
                PrincipalEntry {
                    arn: "arn:aws:iam::111122223333:role/SecurityAuditors".into(),
                    scopes: vec![Scope::Read],
                },
                PrincipalEntry {
                    arn: "arn:aws:iam::111122223333:role/ops/Responders".into(),
                    scopes: vec![Scope::Read, Scope::Rotate],
                },
            ],
            limit,
            Arc::new(clock),
        )
    }

    fn signed(arn: &str) -> SigV4Principal {
        SigV4Principal(arn.to_string())
    }

    #[test]
    fn an_assumed_role_session_of_a_listed_role_gets_the_roles_scopes() {
        let state = principals_state(RateLimit::default(), ManualClock::new());
        let none = headers(&[]);
        let session = signed("arn:aws:sts::111122223333:assumed-role/Responders/pager-duty");
        for scope in Scope::ALL {
            let c = authorize(&state, &none, Some(&session), Access::Api(scope))
                .unwrap()
                .unwrap();
            assert_eq!(c.via, Via::Principal);
            // The log names the session, not just the role.
            assert_eq!(c.id, session.0);
        }
        let auditor = signed("arn:aws:sts::111122223333:assumed-role/SecurityAuditors/jane");
        assert!(authorize(&state, &none, Some(&auditor), Access::Api(Scope::Read)).is_ok());
    }

    #[test]
    fn a_read_only_principal_cannot_rotate() {
        let state = principals_state(RateLimit::default(), ManualClock::new());
        let auditor = signed("arn:aws:sts::111122223333:assumed-role/SecurityAuditors/jane");
        let denied = authorize(
            &state,
            &headers(&[]),
            Some(&auditor),
            Access::Api(Scope::Rotate),
        )
        .unwrap_err();
        assert_eq!(
            denied,
            Denied::Forbidden {
                caller: auditor.0.clone(),
                via: Via::Principal,
                scope: Scope::Rotate
            }
        );
        let p = denied.problem();
        assert_eq!(p.status(), 403);
        assert!(
            p.detail.contains("IAM principal") && p.detail.contains("rotate"),
            "{}",
            p.detail
        );
    }

    #[test]
    fn an_unlisted_principal_gets_403() {
        let (admin, ea) = generate("admin", &[Scope::Read, Scope::Rotate]);
        let state = test_state_with_principals(
            vec![ea],
            vec![PrincipalEntry {
                arn: "arn:aws:iam::111122223333:role/SecurityAuditors".into(),
                scopes: vec![Scope::Read],
            }],
            RateLimit::default(),
            Arc::new(ManualClock::new()),
        );
        for arn in [
            "arn:aws:sts::111122223333:assumed-role/Admin/x",
            "arn:aws:sts::444455556666:assumed-role/SecurityAuditors/x",
            "arn:aws:iam::111122223333:root",
            "arn:aws:iam::111122223333:user/SecurityAuditors",
        ] {
            let denied = authorize(
                &state,
                &headers(&[]),
                Some(&signed(arn)),
                Access::Api(Scope::Read),
            )
            .unwrap_err();
            assert_eq!(
                denied,
                Denied::Unlisted {
                    principal: arn.into()
                }
            );
            assert_eq!(denied.problem().status(), 403);
            assert_eq!(denied.caller(), Some(arn));
            // A Bearer key in the same request does not rescue a signed
            // caller API Gateway vouched for (behind a SigV4 method the
            // Authorization header is the signature anyway).
            assert_eq!(
                authorize(
                    &state,
                    &bearer(&admin),
                    Some(&signed(arn)),
                    Access::Api(Scope::Read)
                ),
                Err(Denied::Unlisted {
                    principal: arn.into()
                })
            );
        }
    }

    #[test]
    fn principals_open_only_the_api_routes_and_share_their_roles_limit() {
        let clock = ManualClock::new();
        let state = principals_state(
            RateLimit {
                per_minute: 60,
                burst: 2,
            },
            clock.clone(),
        );
        let a = signed("arn:aws:sts::111122223333:assumed-role/SecurityAuditors/a");
        let b = signed("arn:aws:sts::111122223333:assumed-role/SecurityAuditors/b");
        // A browser route does not take a principal (a browser cannot sign).
        assert_eq!(
            authorize(
                &state,
                &headers(&[]),
                Some(&a),
                Access::KeyOrSession(Scope::Read)
            ),
            Err(Denied::Missing { legacy: false })
        );
        let read = Access::Api(Scope::Read);
        authorize(&state, &headers(&[]), Some(&a), read).unwrap();
        authorize(&state, &headers(&[]), Some(&b), read).unwrap();
        // A third session of the same role finds the bucket empty.
        let c = signed("arn:aws:sts::111122223333:assumed-role/SecurityAuditors/c");
        assert!(matches!(
            authorize(&state, &headers(&[]), Some(&c), read),
            Err(Denied::Limited { .. })
        ));
        // Another role has its own.
        let r = signed("arn:aws:sts::111122223333:assumed-role/Responders/r");
        authorize(&state, &headers(&[]), Some(&r), read).unwrap();
        clock.advance(Duration::from_secs(1));
        authorize(&state, &headers(&[]), Some(&c), read).unwrap();
    }

    #[test]
    fn a_session_stands_for_its_key_until_it_expires_and_only_where_allowed() {
        let (_, entry) = generate("browser", &[Scope::Read]);
        let clock = ManualClock::new();
        let state = test_state(
            vec![entry.clone()],
            RateLimit::default(),
            Arc::new(clock.clone()),
        );
        let expires = clock.unix_seconds() + SESSION_SECONDS;
        let value = sign_session(state.session_key(), &entry, expires);
        assert!(!value.contains(&entry.sha256));
        let cookie = format!("other=1; {SESSION_COOKIE}={value}");
        let h = headers(&[("cookie", &cookie)]);
        let c = authorize(&state, &h, None, Access::KeyOrSession(Scope::Read))
            .unwrap()
            .unwrap();
        assert_eq!(c.via, Via::Session);
        assert_eq!(c.id, "browser");
        // The API's routes ignore the cookie.
        assert_eq!(
            authorize(&state, &h, None, Access::Api(Scope::Read)),
            Err(Denied::Missing { legacy: false })
        );
        // A forged or altered cookie is refused.
        for bad in [
            value.replace("browser", "admin"),
            // The MAC's last digit changed.
            format!(
                "{}{}",
                &value[..value.len() - 1],
                if value.ends_with('0') { '1' } else { '0' }
            ),
            sign_session(&[9; 32], &entry, expires),
            format!(
                "v1.browser.{}.{}",
                expires + 1,
                value.rsplit('.').next().unwrap()
            ),
            "garbage".to_string(),
        ] {
            assert!(verify_session(&state, &bad).is_none(), "{bad}");
        }
        clock.advance(Duration::from_secs(SESSION_SECONDS));
        assert_eq!(
            authorize(&state, &h, None, Access::KeyOrSession(Scope::Read)),
            Err(Denied::SessionEnded)
        );
    }

    #[test]
    fn removing_a_key_ends_its_sessions() {
        let (_, entry) = generate("gone", &[Scope::Read]);
        let (_, other) = generate("other", &[Scope::Read]);
        let a = test_state(
            vec![entry.clone()],
            RateLimit::default(),
            Arc::new(ManualClock::new()),
        );
        let value = sign_session(a.session_key(), &entry, u64::MAX);
        assert!(verify_session(&a, &value).is_some());
        let b = a.with_keys_for_test(vec![other]);
        assert!(verify_session(&b, &value).is_none());
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_over_https() {
        let c = session_set_cookie("v", true).to_str().unwrap().to_string();
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        let c = session_set_cookie("v", false).to_str().unwrap().to_string();
        assert!(!c.contains("Secure"));
        assert!(is_https(&headers(&[("x-forwarded-proto", "https")])));
        assert!(!is_https(&headers(&[])));
    }
}
