//! Who is calling, what they may do, and how often.
//!
//! **API keys** come in the `x-api-key` header (see [`crate::keys`]). A
//! missing or unknown key is a 401, a key without the route's scope a 403,
//! a key past its rate limit a 429 (see [`crate::limit`]). Refused keys
//! have no id to limit them by; a key has 256 random bits, so guessing is
//! hopeless at any rate, and API Gateway's stage throttling bounds it in
//! production.
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
//! **Which routes take the cookie** ([`Access::KeyOrSession`]): only the
//! browser's, outside `/v1`, all `GET`s with the `read` scope: the dashboard
//! `/`, the stored reports `/runs/{run_id}/report.{html,json,csv}` and the
//! key inventory `/export.csv` and `/export.json`. Every `/v1` route
//! ([`Access::Key`]) takes only the `x-api-key` header, as API Gateway in
//! front of it does (it requires its API key on `/v1`, so a cookie could
//! not get a browser there anyway). The two actions thus need the header,
//! which no other site can make a browser send, so there is nothing to
//! forge across sites; and the cookie's routes only read.

use crate::keys::{ApiKeyEntry, Scope};
use crate::limit::Limiter;
use crate::problem::Problem;
use crate::AppState;
use axum::http::{header, HeaderMap, HeaderValue};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the API key.
pub const API_KEY_HEADER: &str = "x-api-key";
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "keyfleet_session";
/// How long a browser session lasts (8 hours).
pub const SESSION_SECONDS: u64 = 8 * 3600;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// An API key with the scope, in the header.
    Key(Scope),
    /// An API key with the scope, in the header or by a session cookie.
    KeyOrSession(Scope),
}

impl Access {
    pub fn scope(self) -> Option<Scope> {
        match self {
            Access::Public => None,
            Access::Key(s) | Access::KeyOrSession(s) => Some(s),
        }
    }
}

/// The authenticated caller, in the request's and the response's
/// extensions (the request log names `key_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub key_id: String,
    pub by_session: bool,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    Missing,
    Invalid,
    SessionEnded,
    Forbidden { key_id: String, scope: Scope },
    Limited { key_id: String, retry_after: u64 },
}

impl Denied {
    pub fn problem(&self) -> Problem {
        match self {
            Denied::Missing => Problem::unauthorized(format!(
                "this route needs an API key in the {API_KEY_HEADER} header"
            )),
            Denied::Invalid => Problem::unauthorized("the API key is not valid"),
            Denied::SessionEnded => Problem::unauthorized(
                "the browser session has ended: log in again, or send an API key in the x-api-key header",
            ),
            Denied::Forbidden { key_id, scope } => Problem::forbidden(format!(
                "API key `{key_id}` does not have the `{scope}` scope this route needs"
            )),
            Denied::Limited { retry_after, .. } => Problem::too_many_requests(*retry_after),
        }
    }

    /// The key id, when the key was recognized.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Denied::Forbidden { key_id, .. } | Denied::Limited { key_id, .. } => Some(key_id),
            _ => None,
        }
    }
}

/// Checks the caller of a request against `access`, and takes a token
/// from the caller's rate limit.
pub fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    access: Access,
) -> Result<Option<Caller>, Denied> {
    let Some(scope) = access.scope() else {
        return Ok(None);
    };
    let (entry, by_session) = match headers.get(API_KEY_HEADER) {
        Some(v) => {
            let key = v.to_str().map_err(|_| Denied::Invalid)?;
            (
                state.keys().verify(key.trim()).ok_or(Denied::Invalid)?,
                false,
            )
        }
        None => match (access, session_cookie(headers)) {
            (Access::KeyOrSession(_), Some(cookie)) => (
                verify_session(state, cookie).ok_or(Denied::SessionEnded)?,
                true,
            ),
            _ => return Err(Denied::Missing),
        },
    };
    admit(state, entry, scope)?;
    Ok(Some(Caller {
        key_id: entry.id.clone(),
        by_session,
    }))
}

/// Scope, then rate limit.
pub fn admit(state: &AppState, entry: &ApiKeyEntry, scope: Scope) -> Result<(), Denied> {
    if !entry.allows(scope) {
        return Err(Denied::Forbidden {
            key_id: entry.id.clone(),
            scope,
        });
    }
    state
        .limiter()
        .check(&entry.id)
        .map_err(|wait| Denied::Limited {
            key_id: entry.id.clone(),
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
    use crate::test_state;
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
        let read = Access::Key(Scope::Read);
        let rotate = Access::Key(Scope::Rotate);
        assert_eq!(authorize(&state, &headers(&[]), read), Err(Denied::Missing));
        assert_eq!(
            authorize(&state, &headers(&[("x-api-key", "kfk_nope")]), read),
            Err(Denied::Invalid)
        );
        assert_eq!(
            authorize(&state, &headers(&[("x-api-key", &reader)]), rotate),
            Err(Denied::Forbidden {
                key_id: "reader".into(),
                scope: Scope::Rotate
            })
        );
        let ok = authorize(&state, &headers(&[("x-api-key", &admin)]), rotate).unwrap();
        assert_eq!(ok.unwrap().key_id, "admin");
        authorize(&state, &headers(&[("x-api-key", &admin)]), read).unwrap();
        let Err(Denied::Limited { retry_after, .. }) =
            authorize(&state, &headers(&[("x-api-key", &admin)]), read)
        else {
            panic!("the third request in a burst of two passed");
        };
        assert_eq!(retry_after, 1);
        clock.advance(Duration::from_secs(1));
        authorize(&state, &headers(&[("x-api-key", &admin)]), read).unwrap();
        // Public routes need nothing.
        assert_eq!(authorize(&state, &headers(&[]), Access::Public), Ok(None));
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
        let c = authorize(&state, &h, Access::KeyOrSession(Scope::Read))
            .unwrap()
            .unwrap();
        assert!(c.by_session);
        assert_eq!(c.key_id, "browser");
        // Header-only routes ignore the cookie.
        assert_eq!(
            authorize(&state, &h, Access::Key(Scope::Read)),
            Err(Denied::Missing)
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
            authorize(&state, &h, Access::KeyOrSession(Scope::Read)),
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
