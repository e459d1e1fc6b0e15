//! The inbox API (issue 22), for citizens' inbox apps, on its own address
//! (`inbox.listen`), apart from the metrics endpoint. Built so far:
//!
//! - `GET /v1/mailbox?before=<tracking-code>&limit=<1-100>`: the caller's
//!   own mailbox, newest first, paged by cursor: each notice's metadata
//!   (never its body), and whether the session's level may open it;
//! - `GET /v1/notices/<tracking-code>`: one notice of the caller's
//!   mailbox, with its body and attachments' metadata when the session's
//!   access level is at least the notice's `min_access_level` (article
//!   18), else 403 with the level required.
//!
//! Every call needs a bearer token of the identity provider (`identity`):
//! 401 with the reason otherwise. Every answered call is recorded as
//! traffic data (`AccessStore`) before it is answered; one that cannot be
//! recorded is not answered (503). A notice in another mailbox, or none, is
//! the same 404: nothing tells whether it exists. Store reads run on the
//! server's blocking pool.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use karpoosheh_schemas::TrackingCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::http::{client_key, Buckets};
use crate::identity::{Session, TokenError, Verifier};
use crate::model::{AccessRecord, StoredNotice};
use crate::store::Store;

/// `[inbox]` in the engine configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InboxConfig {
    /// Address of the inbox API; empty to not serve it. Needs
    /// `identity.jwks_file`.
    pub listen: String,
    /// Calls answered per client address per minute (before the token is
    /// looked at: a flood of bad tokens is cut here); more get 429.
    pub requests_per_client_per_minute: f64,
    /// Calls answered per person (the token's subject) per minute, from
    /// all their apps together; more get 429.
    pub requests_per_subject_per_minute: f64,
}

impl Default for InboxConfig {
    fn default() -> Self {
        InboxConfig {
            listen: String::new(),
            // An app paging a mailbox and opening notices, with room to
            // spare; a proxy in front puts many people behind one address.
            requests_per_client_per_minute: 600.0,
            requests_per_subject_per_minute: 120.0,
        }
    }
}

impl InboxConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            (
                "inbox.requests_per_client_per_minute",
                self.requests_per_client_per_minute,
            ),
            (
                "inbox.requests_per_subject_per_minute",
                self.requests_per_subject_per_minute,
            ),
        ] {
            if !(v.is_finite() && v >= 1.0) {
                return Err(format!("{name} is {v}; it must be a number of at least 1"));
            }
        }
        Ok(())
    }
}

/// Notices per page, at most.
pub const MAX_PAGE: usize = 100;
const DEFAULT_PAGE: usize = 20;

#[derive(Clone)]
struct Api {
    store: Arc<dyn Store>,
    verifier: Arc<Verifier>,
    clients: Arc<std::sync::Mutex<Buckets<std::net::IpAddr>>>,
    subjects: Arc<std::sync::Mutex<Buckets<karpoosheh_schemas::MailboxId>>>,
}

/// The inbox API's routes over `store`, callers checked by `verifier`.
pub fn router(store: Arc<dyn Store>, verifier: Arc<Verifier>, cfg: &InboxConfig) -> axum::Router {
    axum::Router::new()
        .route("/v1/mailbox", axum::routing::get(mailbox))
        .route("/v1/notices/{code}", axum::routing::get(notice))
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(Api {
            store,
            verifier,
            clients: Arc::new(std::sync::Mutex::new(Buckets::new(
                cfg.requests_per_client_per_minute,
                200_000,
            ))),
            subjects: Arc::new(std::sync::Mutex::new(Buckets::new(
                cfg.requests_per_subject_per_minute,
                200_000,
            ))),
        })
}

fn too_many() -> Response {
    let mut r = problem(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many calls; try again in a minute",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    r
}

fn problem(status: StatusCode, error: &str, message: &str) -> Response {
    (status, Json(json!({ "error": error, "message": message }))).into_response()
}

fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such notice in this mailbox",
    )
}

/// The caller's session, or the 401 (or 429) to answer. The client's
/// address is limited before the token is looked at, the person after.
#[allow(clippy::result_large_err)] // answered at once, never propagated far
fn session(
    api: &Api,
    peer: std::net::SocketAddr,
    headers: &HeaderMap,
) -> Result<Session, Response> {
    let client = client_key(peer.ip());
    if !api
        .clients
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .allow(client)
    {
        return Err(too_many());
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let s = api
        .verifier
        .verify(token.trim(), chrono::Utc::now())
        .map_err(|e: TokenError| {
            let mut r = problem(StatusCode::UNAUTHORIZED, e.reason(), &e.to_string());
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            r
        })?;
    if !api
        .subjects
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .allow(s.subject)
    {
        return Err(too_many());
    }
    Ok(s)
}

/// Runs a store read on the blocking pool.
#[allow(clippy::result_large_err)]
async fn read<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        _ => Err(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the store did not answer; try again",
        )),
    }
}

/// Records the call in the traffic data before it is answered: a call
/// that cannot be recorded is not answered (503).
async fn record(
    api: &Api,
    s: &Session,
    action: &str,
    code: Option<TrackingCode>,
    status: StatusCode,
) -> Result<(), Response> {
    let rec = AccessRecord {
        at: crate::model::to_millis(chrono::Utc::now()),
        mailbox: s.subject,
        actor: s.subject,
        action: action.to_owned(),
        tracking_code: code,
        client: s.client.clone(),
        status: status.as_u16(),
    };
    let store = api.store.clone();
    read(move || store.record_access(&[rec])).await
}

/// What a listing shows of a notice: never its body.
fn summary(n: &StoredNotice, s: &Session) -> serde_json::Value {
    json!({
        "tracking_code": n.tracking_code.to_string(),
        "agency": n.notice.agency,
        "kind": n.notice.kind,
        "title": n.notice.title,
        "life_event": n.notice.life_event,
        "min_access_level": n.notice.min_access_level,
        "accepted_at": n.accepted_at,
        "expires_at": n.notice.expires_at,
        "attachments": n.notice.attachments.len(),
        "openable": s.level >= n.notice.min_access_level,
    })
}

#[derive(Deserialize)]
struct Page {
    before: Option<String>,
    limit: Option<usize>,
}

async fn mailbox(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Response {
    let s = match session(&api, peer, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let before = match page.before.as_deref().map(TrackingCode::parse) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(_)) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "bad_cursor",
                "before must be a tracking code from a previous page's next",
            )
        }
    };
    let limit = page.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return problem(
            StatusCode::BAD_REQUEST,
            "bad_limit",
            "limit must be between 1 and 100",
        );
    }
    let store = api.store.clone();
    let subject = s.subject;
    let page = match read(move || store.mailbox(subject, before, limit)).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(r) = record(&api, &s, "list", None, StatusCode::OK).await {
        return r;
    }
    Json(json!({
        "notices": page.notices.iter().map(|n| summary(n, &s)).collect::<Vec<_>>(),
        "next": page.next.map(|c| c.to_string()),
    }))
    .into_response()
}

async fn notice(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> Response {
    let s = match session(&api, peer, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(code) = TrackingCode::parse(&code) else {
        return record(&api, &s, "open_missing", None, StatusCode::NOT_FOUND)
            .await
            .err()
            .unwrap_or_else(not_found);
    };
    let store = api.store.clone();
    let n = match read(move || store.notice(code)).await {
        Ok(Some(n)) if n.notice.recipient == s.subject => n,
        Ok(_) => {
            return record(&api, &s, "open_missing", Some(code), StatusCode::NOT_FOUND)
                .await
                .err()
                .unwrap_or_else(not_found)
        }
        Err(r) => return r,
    };
    if s.level < n.notice.min_access_level {
        if let Err(r) = record(&api, &s, "open_refused", Some(code), StatusCode::FORBIDDEN).await {
            return r;
        }
        return (
            StatusCode::FORBIDDEN,
            Json(json!({
                "error": "access_level_insufficient",
                "message": "this notice needs a session of a higher access level (article 18)",
                "required": n.notice.min_access_level,
                "held": s.level,
            })),
        )
            .into_response();
    }
    if let Err(r) = record(&api, &s, "open", Some(code), StatusCode::OK).await {
        return r;
    }
    let mut v = summary(&n, &s);
    v["body"] = json!(n.notice.body);
    v["attachments"] = json!(n
        .notice
        .attachments
        .iter()
        .map(|a| json!({"name": a.name, "media_type": a.media_type, "size": a.size, "sha256": a.sha256}))
        .collect::<Vec<_>>());
    v["content_hash"] = json!(crate::model::hex(&n.content_hash));
    Json(v).into_response()
}

#[cfg(test)]
mod tests;
