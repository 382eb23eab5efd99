//! The browser session: `/login` takes an API key from the form and sets
//! the session cookie ([`crate::auth`]), `/logout` clears it.

use super::BasePath;
use crate::auth::{self, Caller, Denied, Via};
use crate::dashboard;
use crate::keys::Scope;
use crate::{AppState, SecureCookies};
use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    api_key: String,
}

fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    state.secure_cookies() == SecureCookies::Always || auth::is_https(headers)
}

pub(super) async fn login(
    State(state): State<AppState>,
    base: Option<Extension<BasePath>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let base = base.map(|Extension(b)| b.0).unwrap_or_default();
    let Ok(Form(form)) = form else {
        return dashboard::login_page(
            StatusCode::BAD_REQUEST,
            Some("the form has no API key"),
            &base,
        );
    };
    let Some(entry) = state.keys().verify(form.api_key.trim()) else {
        return dashboard::refusal(&Denied::Invalid, &base);
    };
    let caller = Caller {
        id: entry.id.clone(),
        via: Via::Key,
    };
    let mut resp = match auth::admit(&state, entry, Scope::Read) {
        Err(denied) => dashboard::refusal(&denied, &base),
        Ok(()) => {
            let expires = state.clock().unix_seconds() + auth::SESSION_SECONDS;
            let cookie = auth::sign_session(state.session_key(), entry, expires);
            let mut r = StatusCode::SEE_OTHER.into_response();
            r.headers_mut().insert(
                header::SET_COOKIE,
                auth::session_set_cookie(&cookie, secure(&state, &headers)),
            );
            r.headers_mut().insert(header::LOCATION, location(&base));
            r
        }
    };
    resp.extensions_mut().insert(caller);
    resp
}

fn location(base: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{base}/")).unwrap_or(HeaderValue::from_static("/"))
}

pub(super) async fn logout(
    State(state): State<AppState>,
    base: Option<Extension<BasePath>>,
    headers: HeaderMap,
) -> Response {
    let base = base.map(|Extension(b)| b.0).unwrap_or_default();
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        auth::session_clear_cookie(secure(&state, &headers)),
    );
    r.headers_mut().insert(header::LOCATION, location(&base));
    r
}
