//! The inbox API (issue 22), for citizens' inbox apps, on its own address
//! (`inbox.listen`), apart from the metrics endpoint (docs/inbox-api.md):
//!
//! - `GET /v1/mailbox`: a mailbox (the caller's own, or with `for=` one
//!   they represent), newest first, paged by cursor, filterable by agency,
//!   kind, life event and unread; metadata only;
//! - `GET /v1/notices/<code>`: open a notice: its body and attachments'
//!   metadata when the session's level reaches the notice's
//!   `min_access_level` (article 18), else 403 with the level required.
//!   The first opening by each side is an `opened` event of the notice;
//! - `POST /v1/notices/<code>/confirmations`: confirm (article 29), under
//!   the same rules as a confirmation from `karpoosheh.acks`; the token
//!   authenticates the person, so the node vouches for it;
//! - `POST /v1/notices/<code>/shares`, `DELETE .../shares/<id>`: share the
//!   notice with an approved agency or withdraw the share (article 27);
//! - `GET /v1/agency/status?reference=`: for agencies, not people: what
//!   happened to one of the calling agency's notices (`crate::status`),
//!   with the agency's key from the registry instead of a person's token;
//! - `GET /v1/openapi.json`: the OpenAPI 3.1 document of all of this.
//!
//! Who may act for a mailbox is `crate::model::standing` (the holder; a
//! representative within their delegation; a guardian). Every call needs a
//! bearer token of the identity provider (`identity`): 401 with the reason
//! otherwise. Every call that touches a mailbox is recorded as traffic
//! data (`AccessStore`) before it is answered; one that cannot be recorded
//! is not answered (503). A notice or mailbox the caller may not see is the
//! same 404 as none: nothing tells whether it exists. Writes (opened,
//! confirmations, shares) go through the article-29 scheduler's worker
//! that owns the notice, so they never race a round. Each call's work
//! (token, store reads, the scheduler's answer, the traffic record) runs
//! as plain blocking code in one hop to the server's blocking pool.

mod openapi;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use karpoosheh_schemas::{
    AccessLevel, AgencyId, Confirmation, LifeEvent, MailboxId, NoticeKind, TrackingCode,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::agencies::{AgencyRegistry, AgencyStatus};
use crate::delivery::{
    ActOutcome, CancelOutcome, ConfirmOutcome, InboxAct, Registry, SchedulerHandle,
};
use crate::http::{client_key, Buckets};
use crate::identity::{Session, TokenError, Verifier};
use crate::internal_events::InboxAnswered;
use crate::model::{standing, AccessRecord, DeliveryRecord, Standing, StoredNotice};
use crate::store::Store;

/// `[inbox]` in the engine configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InboxConfig {
    /// Address of the inbox API; empty to not serve it. Needs
    /// `identity.jwks_file` and `delivery.enabled`.
    pub listen: String,
    /// Calls answered per client address per minute (before the token is
    /// looked at: a flood of bad tokens is cut here); more get 429.
    pub requests_per_client_per_minute: f64,
    /// Calls answered per person (the token's subject) per minute, from
    /// all their apps together; more get 429.
    pub requests_per_subject_per_minute: f64,
    /// Serve HTTPS with this certificate chain (PEM, leaf first) and
    /// `tls_key_file`, for deployments without a terminating proxy; both
    /// or neither.
    pub tls_cert_file: std::path::PathBuf,
    pub tls_key_file: std::path::PathBuf,
}

impl Default for InboxConfig {
    fn default() -> Self {
        InboxConfig {
            listen: String::new(),
            // An app paging a mailbox and opening notices, with room to
            // spare; a proxy in front puts many people behind one address.
            requests_per_client_per_minute: 600.0,
            requests_per_subject_per_minute: 120.0,
            tls_cert_file: Default::default(),
            tls_key_file: Default::default(),
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
        if self.tls_cert_file.as_os_str().is_empty() != self.tls_key_file.as_os_str().is_empty() {
            return Err(
                "inbox.tls_cert_file and inbox.tls_key_file go together: set both, or neither"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Notices per page, at most.
pub const MAX_PAGE: usize = 100;
const DEFAULT_PAGE: usize = 20;
/// Notices one listing call reads at most while filtering; a page that
/// filled less says so by its `next` cursor.
const MAX_SCANNED: usize = 1000;

/// What the inbox API works with.
#[derive(Clone)]
pub struct InboxParts {
    pub store: Arc<dyn Store>,
    pub verifier: Arc<Verifier>,
    /// Records openings, confirmations and shares.
    pub scheduler: Arc<SchedulerHandle>,
    /// Mailbox profiles: representatives, delegations, status.
    pub registry: Arc<dyn Registry>,
    /// Agencies a notice may be shared with; `None`: sharing is refused.
    pub agencies: Option<AgencyRegistry>,
    /// This node (`node_id`): a notice's follow-up belongs to the node
    /// that stored it, named by its tracking code.
    pub node_id: u16,
    /// The longest agency reference (`limits.max_reference_chars`).
    pub max_reference_chars: usize,
}

#[derive(Clone)]
struct Api {
    parts: InboxParts,
    clients: Arc<std::sync::Mutex<Buckets<std::net::IpAddr>>>,
    subjects: Arc<std::sync::Mutex<Buckets<MailboxId>>>,
    /// The agencies' status calls, per agency (after its key).
    agency_calls: Arc<std::sync::Mutex<Buckets<AgencyId>>>,
}

/// The inbox API's routes.
pub fn router(parts: InboxParts, cfg: &InboxConfig) -> axum::Router {
    InboxAnswered::zero();
    axum::Router::new()
        .route("/v1/mailbox", axum::routing::get(mailbox))
        .route("/v1/notices/{code}", axum::routing::get(notice))
        .route(
            "/v1/notices/{code}/confirmations",
            axum::routing::post(confirm),
        )
        .route("/v1/notices/{code}/shares", axum::routing::post(share))
        .route(
            "/v1/notices/{code}/shares/{share_id}",
            axum::routing::delete(unshare),
        )
        .route("/v1/agency/status", axum::routing::get(agency_status))
        .route("/v1/agency/cancel", axum::routing::post(agency_cancel))
        .route(
            "/v1/openapi.json",
            axum::routing::get(|| async { Json(openapi::document()) }),
        )
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(axum::middleware::from_fn(measured))
        .with_state(Api {
            parts,
            clients: Arc::new(std::sync::Mutex::new(Buckets::new(
                cfg.requests_per_client_per_minute,
                200_000,
            ))),
            subjects: Arc::new(std::sync::Mutex::new(Buckets::new(
                cfg.requests_per_subject_per_minute,
                200_000,
            ))),
            agency_calls: Arc::new(std::sync::Mutex::new(Buckets::new(
                cfg.requests_per_subject_per_minute,
                10_000,
            ))),
        })
}

/// Counts and times every answer by route (never by caller).
async fn measured(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = match req.extensions().get::<MatchedPath>().map(|p| p.as_str()) {
        Some("/v1/mailbox") => "mailbox",
        Some("/v1/notices/{code}") => "notice",
        Some("/v1/notices/{code}/confirmations") => "confirm",
        Some("/v1/notices/{code}/shares") => "share",
        Some("/v1/notices/{code}/shares/{share_id}") => "unshare",
        Some("/v1/openapi.json") => "openapi",
        Some("/v1/agency/status") => "agency_status",
        Some("/v1/agency/cancel") => "agency_cancel",
        _ => "other",
    };
    let r = next.run(req).await;
    InboxAnswered {
        route,
        status: r.status().as_u16(),
        elapsed: started.elapsed(),
    }
    .emit();
    r
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

/// Whether one more call of `key` is within its bucket.
fn allow<K: std::hash::Hash + Eq>(buckets: &std::sync::Mutex<Buckets<K>>, key: K) -> bool {
    buckets.lock().unwrap_or_else(|p| p.into_inner()).allow(key)
}

/// A refused credential: `401` with the reason and the challenge.
fn unauthorized(reason: &str, message: &str) -> Response {
    let mut r = problem(StatusCode::UNAUTHORIZED, reason, message);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    r
}

fn problem(status: StatusCode, error: &str, message: &str) -> Response {
    (status, Json(json!({ "error": error, "message": message }))).into_response()
}

fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such notice in a mailbox you may see",
    )
}

fn unavailable() -> Response {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the store did not answer; try again",
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
    if !allow(&api.clients, client_key(peer.ip())) {
        return Err(too_many());
    }
    let token = crate::http::bearer(headers);
    let s = api
        .parts
        .verifier
        .verify(token.trim(), chrono::Utc::now())
        .map_err(|e: TokenError| unauthorized(e.reason(), &e.to_string()))?;
    if !allow(&api.subjects, s.subject) {
        return Err(too_many());
    }
    Ok(Session {
        address: Some(peer.ip()),
        ..s
    })
}

/// Runs a call's whole work on the server's blocking pool: store reads,
/// the scheduler's answer and the traffic record are blocking calls, and
/// one hop there and back per call costs less than one per step.
async fn on_pool(f: impl FnOnce() -> Response + Send + 'static) -> Response {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| unavailable())
}

/// A store or scheduler call's result, or the 503 to answer.
#[allow(clippy::result_large_err)]
fn io<T, E>(r: Result<T, E>) -> Result<T, Response> {
    r.map_err(|_| unavailable())
}

/// Records the call in the traffic data before it is answered: a call
/// that cannot be recorded is not answered (503).
#[allow(clippy::result_large_err)]
fn record(
    api: &Api,
    s: &Session,
    mailbox: MailboxId,
    action: &str,
    code: Option<TrackingCode>,
    status: StatusCode,
) -> Result<(), Response> {
    let rec = AccessRecord {
        at: crate::model::to_millis(chrono::Utc::now()),
        mailbox,
        actor: Some(s.subject),
        action: action.to_owned(),
        tracking_code: code,
        client: s.client.clone(),
        status: status.as_u16(),
        address: s.address.map(|a| a.to_string()),
    };
    io(api.parts.store.record_access(&[rec]))
}

/// Records the call, then answers `r` (or 503 if it cannot be recorded).
fn recorded(
    api: &Api,
    s: &Session,
    mailbox: MailboxId,
    action: &str,
    code: Option<TrackingCode>,
    r: Response,
) -> Response {
    match record(api, s, mailbox, action, code, r.status()) {
        Ok(()) => r,
        Err(e) => e,
    }
}

/// The caller's standing for `holder`'s mailbox now, from its profile.
#[allow(clippy::result_large_err)]
fn standing_for(api: &Api, s: &Session, holder: MailboxId) -> Result<Option<Standing>, Response> {
    let profile = io(api.parts.registry.profile(holder))?;
    Ok(standing(
        profile.as_ref(),
        holder,
        s.subject,
        chrono::Utc::now(),
    ))
}

/// What a listing shows of a notice: never its body.
fn summary(
    n: &StoredNotice,
    rec: Option<&DeliveryRecord>,
    st: &Standing,
    level: AccessLevel,
) -> serde_json::Value {
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
        "openable": level >= n.notice.min_access_level,
        "opened": rec.is_some_and(|r| r.opened.iter().any(|o| o.by_representative == st.by_representative)),
        "confirmations": rec.map_or(0, |r| r.confirmations.len()),
        "state": rec.map(|r| r.state.name()),
        // The sender's response deadline, when it set one.
        "respond_by": rec.and_then(|r| r.respond_by),
    })
}

/// The level that opens notices for this caller: their session's, within
/// their delegation's.
fn level_of(s: &Session, st: &Standing) -> AccessLevel {
    s.level.min(st.max_access_level)
}

#[derive(Deserialize)]
struct StatusQuery {
    reference: String,
}

/// An agency's call about one of its references: the client's and the
/// agency's rate limits, the agency's key (the registry's
/// `api_keys_sha256`; a dissolved agency is refused) and the reference.
#[allow(clippy::result_large_err)]
fn agency_call(
    api: &Api,
    peer: std::net::SocketAddr,
    headers: &HeaderMap,
    q: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<(AgencyId, String), Response> {
    if !allow(&api.clients, client_key(peer.ip())) {
        return Err(too_many());
    }
    let Some(registry) = api.parts.agencies.as_ref() else {
        return Err(problem(
            StatusCode::NOT_FOUND,
            "not_found",
            "this node has no agency registry",
        ));
    };
    registry.maybe_reload();
    let credential = crate::http::bearer(headers).trim();
    let agency = match registry.authenticate(credential) {
        Ok((_, AgencyStatus::Dissolved)) => {
            return Err(problem(
                StatusCode::FORBIDDEN,
                "agency_not_allowed",
                "the agency is dissolved",
            ))
        }
        Ok((agency, _)) if !allow(&api.agency_calls, agency.clone()) => return Err(too_many()),
        Ok((agency, _)) => agency,
        Err(e) => return Err(unauthorized(e.reason(), &e.to_string())),
    };
    match q {
        Ok(Query(q))
            if !q.reference.is_empty()
                && q.reference.chars().count() <= api.parts.max_reference_chars =>
        {
            Ok((agency, q.reference))
        }
        _ => Err(problem(
            StatusCode::BAD_REQUEST,
            "bad_reference",
            &format!(
                "reference= must be one of your references (1-{} characters)",
                api.parts.max_reference_chars
            ),
        )),
    }
}

/// An agency's call about a stored notice, as its recipient's traffic data
/// records it: no person acting, the app `agency:<id>`.
struct AgencyCall<'a> {
    agency: &'a AgencyId,
    action: &'static str,
    code: TrackingCode,
    status: u16,
    peer: std::net::SocketAddr,
}

#[allow(clippy::result_large_err)]
fn record_agency(api: &Api, mailbox: MailboxId, c: AgencyCall<'_>) -> Result<(), Response> {
    io(api.parts.store.record_access(&[AccessRecord {
        at: crate::model::to_millis(chrono::Utc::now()),
        mailbox,
        actor: None,
        action: c.action.to_owned(),
        tracking_code: Some(c.code),
        client: Some(format!("agency:{}", c.agency)),
        status: c.status,
        address: Some(c.peer.ip().to_string()),
    }]))
}

async fn agency_cancel(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    q: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    on_pool(move || cancel_for_agency(api, peer, &headers, q)).await
}

/// An agency cancels one of its scheduled sends (`deliver_at`) before it
/// lands: decided by the worker owning the notice against the engine's
/// clock, durable before the answer, and told on the receipts topic as
/// `cancelled`. Recorded in the recipient's traffic data
/// (`agency_cancel`, app `agency:<id>`).
fn cancel_for_agency(
    api: Api,
    peer: std::net::SocketAddr,
    headers: &HeaderMap,
    q: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (agency, reference) = match agency_call(&api, peer, headers, q) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let store = &api.parts.store;
    let code = match io(store.reference(&agency, &reference)) {
        Ok(Some(code)) => code,
        Ok(None) => {
            return problem(
                StatusCode::NOT_FOUND,
                "not_found",
                "no notice of yours with this reference",
            )
        }
        Err(r) => return r,
    };
    if let Some(r) = other_node(&api, code) {
        return r;
    }
    // The recipient from the record the worker decided on (it outlives
    // the notice's body).
    let (outcome, mailbox) = match api.parts.scheduler.cancel(code) {
        Ok(x) => x,
        Err(_) => return unavailable(),
    };
    let (status, body) = match outcome {
        CancelOutcome::Cancelled { at, new } => (
            StatusCode::OK,
            json!({
                "tracking_code": code.to_string(),
                "state": "cancelled",
                "cancelled_at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "new": new,
            }),
        ),
        CancelOutcome::TooLate { state } => (
            StatusCode::CONFLICT,
            json!({
                "error": "too_late_to_cancel",
                "message": "the notice is no longer held: it landed in its mailbox at its deliver_at, or was never a scheduled send (state says which); it cannot be cancelled",
                "tracking_code": code.to_string(),
                "state": state,
            }),
        ),
        CancelOutcome::Missing => {
            return problem(
                StatusCode::NOT_FOUND,
                "not_found",
                "no notice of yours with this reference",
            )
        }
    };
    if let Some(mailbox) = mailbox {
        let call = AgencyCall {
            agency: &agency,
            action: "agency_cancel",
            code,
            status: status.as_u16(),
            peer,
        };
        if let Err(r) = record_agency(&api, mailbox, call) {
            return r;
        }
    }
    (status, Json(body)).into_response()
}

async fn agency_status(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    q: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    on_pool(move || status_for_agency(api, peer, &headers, q)).await
}

/// An agency's question about its reference: authenticated by its key
/// (the registry's `api_keys_sha256`), answered only about its own
/// notices, recorded in the recipient's traffic data (`agency_status`,
/// app `agency:<id>`).
fn status_for_agency(
    api: Api,
    peer: std::net::SocketAddr,
    headers: &HeaderMap,
    q: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (agency, reference) = match agency_call(&api, peer, headers, q) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let st = match crate::status::status_of(api.parts.store.as_ref(), &agency, &reference) {
        Ok(st) => st,
        Err(_) => return unavailable(),
    };
    if !st.found() {
        return problem(
            StatusCode::NOT_FOUND,
            "not_found",
            "no notice and no kept rejection of yours with this reference",
        );
    }
    if let Some(n) = st.notice.as_ref() {
        if let Some(mailbox) = n.recipient {
            let call = AgencyCall {
                agency: &agency,
                action: "agency_status",
                code: n.tracking_code,
                status: 200,
                peer,
            };
            if let Err(r) = record_agency(&api, mailbox, call) {
                return r;
            }
        }
    }
    Json(st).into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    before: Option<String>,
    limit: Option<usize>,
    agency: Option<String>,
    kind: Option<String>,
    life_event: Option<String>,
    unread: Option<bool>,
    /// A mailbox the caller represents; default their own.
    #[serde(rename = "for")]
    for_mailbox: Option<String>,
}

struct Filters {
    agency: Option<AgencyId>,
    kind: Option<NoticeKind>,
    life_event: Option<LifeEvent>,
    unread: bool,
}

#[allow(clippy::result_large_err)]
fn filters(q: &ListQuery) -> Result<Filters, Response> {
    let bad = |what: &str| {
        problem(
            StatusCode::BAD_REQUEST,
            "bad_filter",
            &format!("{what} is not a known value (docs/inbox-api.md)"),
        )
    };
    Ok(Filters {
        agency: match q.agency.as_deref() {
            None => None,
            Some(a) => Some(AgencyId::parse(a).map_err(|_| bad("agency"))?),
        },
        kind: match q.kind.as_deref() {
            None => None,
            Some(k) => Some(NoticeKind::parse(k).ok_or_else(|| bad("kind"))?),
        },
        life_event: match q.life_event.as_deref() {
            None => None,
            Some(l) => Some(LifeEvent::parse(l).ok_or_else(|| bad("life_event"))?),
        },
        unread: q.unread.unwrap_or(false),
    })
}

async fn mailbox(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    on_pool(move || list(api, peer, &headers, q)).await
}

fn list(
    api: Api,
    peer: std::net::SocketAddr,
    headers: &HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let s = match session(&api, peer, headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(Query(q)) = q else {
        return problem(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "the query string does not parse (docs/inbox-api.md)",
        );
    };
    let before = match q.before.as_deref().map(TrackingCode::parse) {
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
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return problem(
            StatusCode::BAD_REQUEST,
            "bad_limit",
            "limit must be between 1 and 100",
        );
    }
    let f = match filters(&q) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let holder = match q.for_mailbox.as_deref().map(MailboxId::parse) {
        None => s.subject,
        Some(Ok(id)) => id,
        Some(Err(_)) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "bad_mailbox",
                "for must be a national code or national ID",
            )
        }
    };
    let st = match standing_for(&api, &s, holder) {
        Ok(Some(st)) => st,
        Ok(None) if holder == s.subject => {
            let r = problem(
                StatusCode::FORBIDDEN,
                "mailbox_not_accessible",
                "in this mailbox's state only its guardian may act for it",
            );
            return recorded(&api, &s, holder, "list_refused", None, r);
        }
        // Not theirs to see: as if it did not exist.
        Ok(None) => {
            let r = problem(StatusCode::NOT_FOUND, "not_found", "no such mailbox");
            return recorded(&api, &s, s.subject, "list_missing", None, r);
        }
        Err(r) => return r,
    };
    let level = level_of(&s, &st);
    // Unfiltered, a page of the store is the page asked for; filtered,
    // larger pages are read and sifted.
    let filtered = f.agency.is_some()
        || f.kind.is_some()
        || f.life_event.is_some()
        || f.unread
        || !st.agencies.is_empty();
    let read_page = if filtered { MAX_PAGE } else { limit };
    let store = &api.parts.store;
    let st2 = &st;
    let listed = io((|| {
        let mut out = Vec::new();
        let mut cursor = before;
        let mut scanned = 0;
        let mut next = None;
        'pages: loop {
            let page = store.mailbox(holder, cursor, read_page.min(MAX_SCANNED - scanned))?;
            for n in page.notices {
                scanned += 1;
                let keep = st2.covers(&n.notice.agency)
                    && f.agency.as_ref().is_none_or(|a| &n.notice.agency == a)
                    && f.kind.is_none_or(|k| n.notice.kind == k)
                    && f.life_event.is_none_or(|l| n.notice.life_event == l);
                let code = n.tracking_code;
                if keep {
                    let rec = store.delivery(code)?;
                    // A scheduled send not yet landed (or cancelled) is
                    // not in the mailbox.
                    // Every stored notice has its record from the same
                    // write: none yet is a write in progress (ScyllaDB
                    // writes the rows side by side), shown to nobody.
                    let in_mailbox = rec.as_ref().is_some_and(|r| r.in_mailbox());
                    let opened = rec.as_ref().is_some_and(|r| {
                        r.opened
                            .iter()
                            .any(|o| o.by_representative == st2.by_representative)
                    });
                    if in_mailbox && !(f.unread && opened) {
                        out.push(summary(&n, rec.as_ref(), st2, level));
                    }
                }
                if out.len() == limit || scanned == MAX_SCANNED {
                    next = Some(code);
                    break 'pages;
                }
            }
            match page.next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        // A cursor after the very last notice reads an empty page next:
        // harmless, and cheaper than looking ahead.
        Ok::<_, crate::store::StoreError>((out, next))
    })());
    let (notices, next) = match listed {
        Ok(x) => x,
        Err(r) => return r,
    };
    let r = Json(json!({
        "mailbox": holder.to_string(),
        "notices": notices,
        "next": next.map(|c| c.to_string()),
    }))
    .into_response();
    recorded(&api, &s, holder, "list", None, r)
}

/// A notice the caller may reach: the notice, their standing for its
/// mailbox, their level and the notice's delivery record as read; or the
/// answer already recorded (404 or 403).
#[allow(clippy::large_enum_variant)]
enum Reached {
    Yes(StoredNotice, Standing, AccessLevel, DeliveryRecord),
    No(Response),
}

/// Finds notice `code` for the caller, recording a refusal as `action`
/// + `_missing` / `_refused`.
fn reach(api: &Api, s: &Session, code: &str, action: &str) -> Reached {
    let missing = format!("{action}_missing");
    let Ok(code) = TrackingCode::parse(code) else {
        return Reached::No(recorded(api, s, s.subject, &missing, None, not_found()));
    };
    let store = &api.parts.store;
    // A scheduled send not yet landed (or cancelled) is no notice to the
    // inbox, to anyone.
    let rec = match io(store.delivery(code)) {
        // No record yet: a write in progress (see `list`).
        Ok(rec) => rec.filter(|r| r.in_mailbox()),
        Err(r) => return Reached::No(r),
    };
    let (n, rec) = match (io(store.notice(code)), rec) {
        (Ok(Some(n)), Some(rec)) => (n, rec),
        (Err(r), _) => return Reached::No(r),
        _ => {
            return Reached::No(recorded(
                api,
                s,
                s.subject,
                &missing,
                Some(code),
                not_found(),
            ))
        }
    };
    let holder = n.notice.recipient;
    match standing_for(api, s, holder) {
        Ok(Some(st)) if st.covers(&n.notice.agency) => {
            let level = level_of(s, &st);
            Reached::Yes(n, st, level, rec)
        }
        Ok(None) if holder == s.subject => {
            let r = problem(
                StatusCode::FORBIDDEN,
                "mailbox_not_accessible",
                "in this mailbox's state only its guardian may act for it",
            );
            Reached::No(recorded(
                api,
                s,
                holder,
                &format!("{action}_refused"),
                Some(code),
                r,
            ))
        }
        Ok(_) => Reached::No(recorded(
            api,
            s,
            s.subject,
            &missing,
            Some(code),
            not_found(),
        )),
        Err(r) => Reached::No(r),
    }
}

fn level_refused(required: AccessLevel, held: AccessLevel) -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(json!({
            "error": "access_level_insufficient",
            "message": "this notice needs a session of a higher access level (article 18)",
            "required": required,
            "held": held,
        })),
    )
        .into_response()
}

/// On a fleet sharing one store, a notice's events are written only by
/// the node that stored it (its tracking code names it): elsewhere an act
/// is answered 421 with that node, for a proxy to send it there.
fn other_node(api: &Api, code: TrackingCode) -> Option<Response> {
    (code.node() != api.parts.node_id).then(|| {
        (
            StatusCode::MISDIRECTED_REQUEST,
            Json(json!({
                "error": "other_node",
                "message": "this notice's events are recorded by another node: send the call to it",
                "node": code.node(),
            })),
        )
            .into_response()
    })
}

fn not_permitted(what: &str) -> Response {
    problem(
        StatusCode::FORBIDDEN,
        "not_permitted",
        &format!("your delegation for this mailbox does not let you {what}"),
    )
}

/// Hands an act to the scheduler; 503 when it cannot take it now.
#[allow(clippy::result_large_err)]
fn act(api: &Api, code: TrackingCode, a: InboxAct) -> Result<ActOutcome, Response> {
    io(api.parts.scheduler.act(code, a))
}

async fn notice(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> Response {
    on_pool(move || notice_now(api, peer, &headers, code)).await
}

fn notice_now(api: Api, peer: std::net::SocketAddr, headers: &HeaderMap, code: String) -> Response {
    let s = match session(&api, peer, headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (n, st, level, rec) = match reach(&api, &s, &code, "open") {
        Reached::Yes(n, st, level, rec) => (n, st, level, rec),
        Reached::No(r) => return r,
    };
    let (code, holder) = (n.tracking_code, n.notice.recipient);
    if level < n.notice.min_access_level {
        let r = level_refused(n.notice.min_access_level, level);
        return recorded(&api, &s, holder, "open_refused", Some(code), r);
    }
    // The record as `reach` read it.
    let mut rec = Some(rec);
    // Opening is an event of the notice, recorded before it is shown, the
    // first time by this side (the scheduler checks again: acts are
    // idempotent).
    let by_representative = st.by_representative;
    let first = rec.as_ref().is_some_and(|r| {
        !r.opened
            .iter()
            .any(|o| o.by_representative == by_representative)
    });
    if first {
        if let Some(r) = other_node(&api, code) {
            return r;
        }
        match act(&api, code, InboxAct::Open { by_representative }) {
            Ok(ActOutcome::Done { .. }) => {}
            Ok(_) => return recorded(&api, &s, s.subject, "open_missing", Some(code), not_found()),
            Err(r) => return r,
        }
        let store = &api.parts.store;
        rec = match io(store.delivery(code)) {
            Ok(rec) => rec,
            Err(r) => return r,
        };
    }
    let mut v = summary(&n, rec.as_ref(), &st, level);
    v["body"] = json!(n.notice.body);
    v["attachments"] = json!(n
        .notice
        .attachments
        .iter()
        .map(|a| json!({"name": a.name, "media_type": a.media_type, "size": a.size, "sha256": a.sha256}))
        .collect::<Vec<_>>());
    v["content_hash"] = json!(crate::model::hex(&n.content_hash));
    v["verification_code"] = json!(karpoosheh_schemas::verification_code(
        &code,
        &n.content_hash
    ));
    v["shares"] = json!(rec
        .as_ref()
        .map(|r| r
            .shares
            .iter()
            .map(|sh| json!({"share_id": sh.share_id, "agency": sh.with, "at": sh.at, "revoked_at": sh.revoked_at}))
            .collect::<Vec<_>>())
        .unwrap_or_default());
    recorded(
        &api,
        &s,
        holder,
        "open",
        Some(code),
        Json(v).into_response(),
    )
}

/// An app's idempotency key: 1-64 of `A-Z a-z 0-9 - _ .`.
fn idempotency_key(headers: &HeaderMap) -> Option<&str> {
    let k = headers.get("idempotency-key")?.to_str().ok()?;
    (!k.is_empty()
        && k.len() <= 64
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
    .then_some(k)
}

async fn confirm(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> Response {
    on_pool(move || confirm_now(api, peer, &headers, code)).await
}

fn confirm_now(
    api: Api,
    peer: std::net::SocketAddr,
    headers: &HeaderMap,
    code: String,
) -> Response {
    let s = match session(&api, peer, headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    // A retried call must not count twice: two confirmations serve a
    // notice (article 29).
    let Some(key) = idempotency_key(headers) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "idempotency_key_required",
            "send an Idempotency-Key header (1-64 of A-Z a-z 0-9 - _ .), the same on a retry",
        );
    };
    let (n, st, level) = match reach(&api, &s, &code, "confirm") {
        Reached::Yes(n, st, level, _) => (n, st, level),
        Reached::No(r) => return r,
    };
    let (code, holder) = (n.tracking_code, n.notice.recipient);
    let refused = if level < n.notice.min_access_level {
        Some(level_refused(n.notice.min_access_level, level))
    } else if !st.may_confirm {
        Some(not_permitted("confirm"))
    } else {
        other_node(&api, code)
    };
    if let Some(r) = refused {
        return recorded(&api, &s, holder, "confirm_refused", Some(code), r);
    }
    let now = chrono::Utc::now();
    // The ID is the app's key, bound to the person and the notice, so no
    // one else's key can collide with it.
    let id = crate::evidence::b64url(&crate::evidence::merkle::sha256(&[
        b"karpoosheh-inbox-confirmation-v1",
        s.subject.to_string().as_bytes(),
        code.to_string().as_bytes(),
        key.as_bytes(),
    ]));
    let c = Confirmation {
        schema_version: karpoosheh_schemas::SCHEMA_VERSION,
        confirmation_id: format!("inbox:{id}"),
        tracking_code: code,
        confirmed_by: s.subject,
        confirmed_at: now,
    };
    let outcome = match io(api.parts.scheduler.confirm(vec![c])) {
        Ok(o) => o.into_iter().next().unwrap_or(ConfirmOutcome::Duplicate),
        Err(r) => return r,
    };
    outcome.emit();
    let r = match outcome {
        ConfirmOutcome::Applied { count, served } => Json(json!({
            "outcome": "applied", "confirmations": count, "served": served,
        }))
        .into_response(),
        ConfirmOutcome::Duplicate => Json(json!({"outcome": "duplicate"})).into_response(),
        ConfirmOutcome::Rejected(reason) => {
            problem(StatusCode::CONFLICT, reason.code(), reason.describe())
        }
    };
    recorded(&api, &s, holder, "confirm", Some(code), r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareBody {
    agency: String,
}

async fn share(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Path(code): Path<String>,
    body: Result<Json<ShareBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    on_pool(move || share_now(api, peer, &headers, code, body)).await
}

fn share_now(
    api: Api,
    peer: std::net::SocketAddr,
    headers: &HeaderMap,
    code: String,
    body: Result<Json<ShareBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let s = match session(&api, peer, headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(Json(body)) = body else {
        return problem(
            StatusCode::BAD_REQUEST,
            "bad_body",
            "the body must be JSON: {\"agency\": \"<agency id>\"}",
        );
    };
    let (n, st, level) = match reach(&api, &s, &code, "share") {
        Reached::Yes(n, st, level, _) => (n, st, level),
        Reached::No(r) => return r,
    };
    let (code, holder) = (n.tracking_code, n.notice.recipient);
    let approved = AgencyId::parse(&body.agency).ok().filter(|a| {
        api.parts.agencies.as_ref().is_some_and(|reg| {
            reg.maybe_reload();
            reg.status(a) == Some(AgencyStatus::Approved)
        })
    });
    let refused = if level < n.notice.min_access_level {
        Err(level_refused(n.notice.min_access_level, level))
    } else if !st.may_share {
        Err(not_permitted("share"))
    } else {
        approved.ok_or_else(|| {
            problem(
                StatusCode::CONFLICT,
                "agency_not_approved",
                "a notice can be shared only with an approved agency",
            )
        })
    };
    let refused = match (refused, other_node(&api, code)) {
        (Ok(_), Some(r)) => Err(r),
        (r, _) => r,
    };
    let with = match refused {
        Ok(a) => a,
        Err(r) => return recorded(&api, &s, holder, "share_refused", Some(code), r),
    };
    let a = InboxAct::Share {
        with,
        by_representative: st.by_representative,
    };
    let r = match act(&api, code, a) {
        Ok(ActOutcome::Done { share_id, new }) => (
            if new {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            Json(json!({"share_id": share_id, "new": new})),
        )
            .into_response(),
        Ok(ActOutcome::Refused(why)) => problem(
            StatusCode::CONFLICT,
            why,
            "the notice cannot be shared (docs/inbox-api.md)",
        ),
        Ok(ActOutcome::Missing) => not_found(),
        Err(r) => return r,
    };
    recorded(&api, &s, holder, "share", Some(code), r)
}

async fn unshare(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Path((code, share_id)): Path<(String, String)>,
) -> Response {
    on_pool(move || unshare_now(api, peer, &headers, code, share_id)).await
}

fn unshare_now(
    api: Api,
    peer: std::net::SocketAddr,
    headers: &HeaderMap,
    code: String,
    share_id: String,
) -> Response {
    let s = match session(&api, peer, headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (n, st, _) = match reach(&api, &s, &code, "unshare") {
        Reached::Yes(n, st, level, _) => (n, st, level),
        Reached::No(r) => return r,
    };
    let (code, holder) = (n.tracking_code, n.notice.recipient);
    if let Some(r) = other_node(&api, code) {
        return r;
    }
    if !st.may_share {
        let r = not_permitted("withdraw a share");
        return recorded(&api, &s, holder, "unshare_refused", Some(code), r);
    }
    let r = match act(&api, code, InboxAct::Unshare { share_id }) {
        Ok(ActOutcome::Done { new, .. }) => {
            Json(json!({"revoked": true, "new": new})).into_response()
        }
        Ok(ActOutcome::Refused(_)) | Ok(ActOutcome::Missing) => problem(
            StatusCode::NOT_FOUND,
            "no_such_share",
            "this notice has no share with that ID",
        ),
        Err(r) => return r,
    };
    recorded(&api, &s, holder, "unshare", Some(code), r)
}

#[cfg(test)]
mod tests;
