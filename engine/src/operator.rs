//! The operators' endpoint (issue 22): what `karpoosheh mailbox`, `notice`,
//! `rejections`, `dead-letters`, `quarantine` and `access-log` read, served by a running
//! node on `operator.listen` to a caller holding the operator credential
//! (a bearer token in `operator.token_file`), read-only, so that those
//! commands work while a node holds the store. The commands read through
//! [`Inspect`]: the store itself when they can open it, else this
//! endpoint ([`Remote`]).
//!
//! Every read of a mailbox or a notice here is traffic data of that
//! mailbox (`operator_mailbox`, `operator_notice`, `operator_access_log`,
//! with no caller and the `operator` app), recorded before it is answered.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use karpoosheh_schemas::{AgencyId, DeadLetter, MailboxId, TrackingCode};
pub use karpoosheh_schemas::{NoticeHistory, ParkedLot, QuarantinedView};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub mod render;

use crate::model::{
    AccessRecord, DeliveryRecord, MailboxPage, StoredEvent, StoredNotice, StoredRejection,
};
use crate::secret::Secret;
use crate::store::{Store, StoreError};

/// `[operator]` in the engine configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct OperatorConfig {
    /// Address of the operators' endpoint; empty: not served. Keep it on
    /// loopback or an operators' network.
    pub listen: String,
    /// A file holding the operator credential: one line, at least 32
    /// characters (e.g. `head -c 32 /dev/urandom | base64`), readable by
    /// the engine's user and the operators only.
    pub token_file: PathBuf,
}

/// The shortest credential accepted.
pub const MIN_TOKEN: usize = 32;

impl OperatorConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !self.listen.is_empty() && self.token_file.as_os_str().is_empty() {
            return Err(
                "operator.listen is set: operator.token_file must name the operator credential"
                    .into(),
            );
        }
        Ok(())
    }

    /// The credential, from its file: refused when every user of the
    /// machine may read the file (as every secret file is), or when it is
    /// not one word of at least [`MIN_TOKEN`] characters.
    pub fn token(&self) -> Result<Secret, String> {
        let text = crate::secret::read_secret_file(&self.token_file)
            .map_err(|e| format!("operator.token_file: {e}"))?;
        let t = text.trim();
        if t.len() < MIN_TOKEN || t.contains(char::is_whitespace) {
            return Err(format!(
                "operator.token_file {}: the credential must be one word of at least {MIN_TOKEN} characters",
                self.token_file.display()
            ));
        }
        Ok(Secret::new(t))
    }
}

/// A notice as the operators see it: the notice (while kept), its legal
/// history and its chain of events.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoticeView {
    pub notice: Option<StoredNotice>,
    pub delivery: Option<DeliveryRecord>,
    pub events: Vec<StoredEvent>,
}

/// The dashboard's history of a notice: what `karpoosheh notice` prints,
/// masked ([`NoticeHistory`]).
fn history_of(rec: &DeliveryRecord, events: &[StoredEvent]) -> NoticeHistory {
    use karpoosheh_schemas::mask_personal;
    // What an app or a gateway wrote into the record (a confirmation's
    // ID, a failure's text) may quote a number or an address: masked
    // in a copy, before it is rendered.
    let mut rec = rec.clone();
    for c in &mut rec.confirmations {
        c.confirmation_id = mask_personal(&c.confirmation_id);
    }
    for r in &mut rec.rounds {
        for d in &mut r.deliveries {
            d.failure = d.failure.as_deref().map(mask_personal);
        }
    }
    let rec = &rec;
    let word = |v: serde_json::Value| -> String {
        match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Object(o) => o.keys().next().cloned().unwrap_or_default(),
            other => other.to_string(),
        }
    };
    NoticeHistory {
        tracking_code: rec.tracking_code.to_string(),
        agency: rec.agency.as_str().to_owned(),
        reference: mask_personal(&rec.reference),
        recipient: karpoosheh_schemas::mask_id(&rec.recipient.to_string()),
        kind: word(serde_json::to_value(rec.kind).unwrap_or_default()),
        accepted_at: rec.accepted_at.to_rfc3339(),
        expires_at: rec.expires_at.to_rfc3339(),
        state: word(serde_json::to_value(rec.state).unwrap_or_default()),
        history: render::render_history(rec)
            .lines()
            .map(str::to_owned)
            .collect(),
        // Event names, our own times and hashes: nothing personal,
        // and a hash or a time must stay whole to be checked.
        chain: render::render_chain(events)
            .lines()
            .map(str::to_owned)
            .collect(),
    }
}

/// A rejection as the dashboard shows it: the reference, the messages,
/// the fields and a file's path masked ([`karpoosheh_schemas::mask_personal`]).
fn masked_rejection(mut r: StoredRejection) -> StoredRejection {
    use karpoosheh_schemas::{mask_personal, SourcePosition};
    let j = &mut r.rejection;
    j.reference = j.reference.as_deref().map(mask_personal);
    for p in &mut j.problems {
        p.message = mask_personal(&p.message);
        p.field = p.field.as_deref().map(mask_personal);
    }
    if let SourcePosition::File { path, .. } = &mut j.position {
        *path = mask_personal(path);
    }
    r
}

/// What the operators' commands read, from the store or a running node.
pub trait Inspect {
    fn mailbox(
        &self,
        id: MailboxId,
        before: Option<TrackingCode>,
        limit: usize,
    ) -> Result<MailboxPage, String>;
    fn notice(&self, code: TrackingCode) -> Result<NoticeView, String>;
    fn rejections(
        &self,
        agency: Option<&AgencyId>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredRejection>, String>;
    fn dead_letters(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, DeadLetter)>, String>;
    fn access_log(&self, id: MailboxId, limit: usize) -> Result<Vec<AccessRecord>, String>;
    /// Records set aside because they could not be read back, oldest first.
    fn quarantined(&self, limit: usize) -> Result<Vec<crate::model::Quarantined>, String>;
    /// The newest rejections kept for an agency (`None`: unattributed).
    fn latest_rejections(
        &self,
        agency: Option<&AgencyId>,
        limit: usize,
    ) -> Result<Vec<StoredRejection>, String>;
    /// This node's parking lots that hold receipts.
    fn parked(&self) -> Result<Vec<ParkedLot>, String>;
    /// What happened to an agency's reference (`karpoosheh status`).
    fn status(
        &self,
        agency: &AgencyId,
        reference: &str,
    ) -> Result<crate::status::NoticeStatus, String>;
}

fn s(e: StoreError) -> String {
    e.to_string()
}

impl Inspect for Arc<dyn Store> {
    fn mailbox(
        &self,
        id: MailboxId,
        before: Option<TrackingCode>,
        limit: usize,
    ) -> Result<MailboxPage, String> {
        self.as_ref().mailbox(id, before, limit).map_err(s)
    }
    fn notice(&self, code: TrackingCode) -> Result<NoticeView, String> {
        Ok(NoticeView {
            notice: self.as_ref().notice(code).map_err(s)?,
            delivery: self.as_ref().delivery(code).map_err(s)?,
            events: self.as_ref().events(code).map_err(s)?,
        })
    }
    fn rejections(
        &self,
        agency: Option<&AgencyId>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredRejection>, String> {
        self.as_ref().rejections(agency, after, limit).map_err(s)
    }
    fn dead_letters(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, DeadLetter)>, String> {
        self.as_ref().dead_letters(after, limit).map_err(s)
    }
    fn access_log(&self, id: MailboxId, limit: usize) -> Result<Vec<AccessRecord>, String> {
        self.as_ref().access_log(id, limit).map_err(s)
    }
    fn quarantined(&self, limit: usize) -> Result<Vec<crate::model::Quarantined>, String> {
        self.as_ref().quarantined(limit).map_err(s)
    }
    fn latest_rejections(
        &self,
        agency: Option<&AgencyId>,
        limit: usize,
    ) -> Result<Vec<StoredRejection>, String> {
        self.as_ref().latest_rejections(agency, limit).map_err(s)
    }
    fn parked(&self) -> Result<Vec<ParkedLot>, String> {
        let mut lots = Vec::new();
        for (agency, receipts) in self.as_ref().parked_agencies().map_err(s)? {
            if receipts == 0 {
                continue;
            }
            // Read only: a damaged receipt is the deliverer's to set aside.
            let oldest = self.as_ref().oldest_parked(&agency).map_err(s)?;
            let first = oldest.as_ref();
            lots.push(ParkedLot {
                oldest_event: first.and_then(|r| {
                    serde_json::to_value(r).ok()?["event"]
                        .as_str()
                        .map(str::to_owned)
                }),
                oldest_at: first.map(|r| r.at),
                agency,
                receipts,
            });
        }
        Ok(lots)
    }
    fn status(
        &self,
        agency: &AgencyId,
        reference: &str,
    ) -> Result<crate::status::NoticeStatus, String> {
        crate::status::status_of(self.as_ref(), agency, reference).map_err(s)
    }
}

/// A running node's operators' endpoint.
pub struct Remote {
    base: String,
    token: Secret,
    agent: ureq::Agent,
}

impl Remote {
    /// The endpoint at `listen` (host:port) with the credential of `cfg`.
    pub fn new(cfg: &OperatorConfig) -> Result<Remote, String> {
        Ok(Remote {
            base: format!("http://{}", cfg.listen),
            token: cfg.token()?,
            agent: ureq::Agent::config_builder()
                // Never through a proxy from the environment: the
                // credential would travel to it in the clear.
                .proxy(None)
                .timeout_global(Some(std::time::Duration::from_secs(30)))
                .http_status_as_error(false)
                .build()
                .into(),
        })
    }

    fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let url = format!("{}{path}", self.base);
        let r = self
            .agent
            .get(&url)
            .header("Authorization", &format!("Bearer {}", self.token.expose()))
            .call();
        self.answer(r)
    }

    /// A call's answer: its JSON when `200`, else the node's message.
    fn answer<T: serde::de::DeserializeOwned>(
        &self,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, String> {
        let mut r = r.map_err(|e| format!("the node's operator endpoint at {}: {e}", self.base))?;
        let body = r
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .map_err(|e| e.to_string())?;
        if r.status() != 200 {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            return Err(format!(
                "the node's operator endpoint answered {}: {}",
                r.status(),
                v["message"].as_str().unwrap_or(&body)
            ));
        }
        serde_json::from_str(&body).map_err(|e| format!("the node's answer: {e}"))
    }
}

fn opt<T: std::fmt::Display>(name: &str, v: Option<T>) -> String {
    v.map(|v| format!("&{name}={v}")).unwrap_or_default()
}

/// `v` for a query string, percent-encoded as the channels' URL
/// templates are (an agency's reference is its own text).
fn query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    crate::channel::escape_into(&mut out, v, crate::channel::Escape::Url);
    out
}

impl Remote {
    /// Has the node re-send an agency's receipts of `since..until`
    /// (`karpoosheh receipts replay`); as long as it takes (an agency with
    /// millions of notices: minutes).
    pub fn replay(
        &self,
        agency: &AgencyId,
        since: chrono::DateTime<chrono::Utc>,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<crate::status::Replayed, String> {
        let t = |d: chrono::DateTime<chrono::Utc>| {
            query_value(&d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        };
        let url = format!(
            "{}/v1/operator/replay?agency={}&since={}&until={}",
            self.base,
            agency.as_str(),
            t(since),
            t(until)
        );
        let r = self
            .agent
            .post(&url)
            .config()
            .timeout_global(Some(std::time::Duration::from_secs(6 * 3600)))
            .build()
            .header("Authorization", &format!("Bearer {}", self.token.expose()))
            .send_empty();
        self.answer(r)
    }

    /// A notice's legal history as the dashboard shows it.
    pub fn history(&self, code: TrackingCode) -> Result<NoticeHistory, String> {
        self.get(&format!("/v1/operator/dashboard/notices/{code}"))
    }
}

impl Inspect for Remote {
    fn mailbox(
        &self,
        id: MailboxId,
        before: Option<TrackingCode>,
        limit: usize,
    ) -> Result<MailboxPage, String> {
        self.get(&format!(
            "/v1/operator/mailbox/{id}?limit={limit}{}",
            opt("before", before)
        ))
    }
    fn notice(&self, code: TrackingCode) -> Result<NoticeView, String> {
        self.get(&format!("/v1/operator/notices/{code}"))
    }
    fn rejections(
        &self,
        agency: Option<&AgencyId>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredRejection>, String> {
        self.get(&format!(
            "/v1/operator/rejections?limit={limit}{}{}",
            opt("agency", agency.map(|a| a.as_str())),
            opt("after", after)
        ))
    }
    fn dead_letters(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, DeadLetter)>, String> {
        self.get(&format!(
            "/v1/operator/dead-letters?limit={limit}{}",
            opt("after", after)
        ))
    }
    fn access_log(&self, id: MailboxId, limit: usize) -> Result<Vec<AccessRecord>, String> {
        self.get(&format!("/v1/operator/access-log/{id}?limit={limit}"))
    }
    fn quarantined(&self, limit: usize) -> Result<Vec<crate::model::Quarantined>, String> {
        self.get(&format!("/v1/operator/quarantine?limit={limit}"))
    }
    fn latest_rejections(
        &self,
        agency: Option<&AgencyId>,
        limit: usize,
    ) -> Result<Vec<StoredRejection>, String> {
        self.get(&format!(
            "/v1/operator/rejections?latest=true&limit={limit}{}",
            opt("agency", agency.map(|a| a.as_str()))
        ))
    }
    fn parked(&self) -> Result<Vec<ParkedLot>, String> {
        self.get("/v1/operator/parked")
    }
    fn status(
        &self,
        agency: &AgencyId,
        reference: &str,
    ) -> Result<crate::status::NoticeStatus, String> {
        self.get(&format!(
            "/v1/operator/status?agency={}&reference={}",
            agency.as_str(),
            query_value(reference)
        ))
    }
}

#[derive(Clone)]
struct Op {
    store: Arc<dyn Store>,
    /// A replay is running (one at a time: a second would send everything
    /// again in new batches).
    replaying: Arc<std::sync::atomic::AtomicBool>,
    /// SHA-256 of the credential: compared whole, in constant time.
    token: [u8; 32],
}

/// The endpoint's routes over `store`, for holders of `token`.
pub fn router(store: Arc<dyn Store>, token: &Secret) -> axum::Router {
    axum::Router::new()
        .route("/v1/operator/mailbox/{id}", axum::routing::get(mailbox))
        .route("/v1/operator/notices/{code}", axum::routing::get(notice))
        // What the dashboard shows: masked on this side, so that nothing
        // personal crosses to an operator's screen whole.
        .route(
            "/v1/operator/dashboard/notices/{code}",
            axum::routing::get(history),
        )
        .route(
            "/v1/operator/dashboard/rejections",
            axum::routing::get(dashboard_rejections),
        )
        .route(
            "/v1/operator/dashboard/quarantine",
            axum::routing::get(dashboard_quarantine),
        )
        .route("/v1/operator/parked", axum::routing::get(parked))
        .route("/v1/operator/rejections", axum::routing::get(rejections))
        .route(
            "/v1/operator/dead-letters",
            axum::routing::get(dead_letters),
        )
        .route(
            "/v1/operator/access-log/{id}",
            axum::routing::get(access_log),
        )
        .route("/v1/operator/quarantine", axum::routing::get(quarantine))
        .route("/v1/operator/status", axum::routing::get(status))
        .route("/v1/operator/replay", axum::routing::post(replay))
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "no such route") })
        .with_state(Op {
            store,
            replaying: Arc::default(),
            token: crate::evidence::merkle::sha256(&[token.expose().as_bytes()]),
        })
}

fn problem(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": status.as_u16(), "message": message})),
    )
        .into_response()
}

fn allowed(op: &Op, headers: &HeaderMap) -> bool {
    let h = crate::evidence::merkle::sha256(&[crate::http::bearer(headers).as_bytes()]);
    crate::secret::digests_equal(&h, &op.token)
}

/// Checks the credential, then runs `f` on the blocking pool.
async fn guarded(
    op: Op,
    headers: HeaderMap,
    f: impl FnOnce(&Op) -> Result<Response, String> + Send + 'static,
) -> Response {
    if !allowed(&op, &headers) {
        let mut r = problem(
            StatusCode::UNAUTHORIZED,
            "the operator credential is missing or wrong",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    tokio::task::spawn_blocking(move || {
        f(&op).unwrap_or_else(|e| problem(StatusCode::SERVICE_UNAVAILABLE, &e))
    })
    .await
    .unwrap_or_else(|_| problem(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
}

/// An operator's read of a mailbox, in its traffic data.
fn record(
    op: &Op,
    mailbox: MailboxId,
    action: &str,
    code: Option<TrackingCode>,
    peer: std::net::SocketAddr,
) -> Result<(), String> {
    op.store
        .record_access(&[AccessRecord {
            at: crate::model::to_millis(chrono::Utc::now()),
            mailbox,
            actor: None,
            action: action.into(),
            tracking_code: code,
            client: Some("operator".into()),
            status: 200,
            address: Some(peer.ip().to_string()),
        }])
        .map_err(s)
}

#[derive(Deserialize)]
struct Page {
    before: Option<String>,
    after: Option<u64>,
    agency: Option<String>,
    limit: Option<usize>,
    /// Rejections: the newest first (no `after` then).
    #[serde(default)]
    latest: bool,
}

fn bad(what: &str) -> Response {
    problem(StatusCode::BAD_REQUEST, what)
}

/// The `agency` asked for, if any; what is wrong when it is not an
/// agency ID.
fn agency_of(p: &Page) -> Result<Option<AgencyId>, &'static str> {
    p.agency
        .as_deref()
        .map(AgencyId::parse)
        .transpose()
        .map_err(|_| "not an agency ID")
}

fn limit(p: &Page) -> usize {
    p.limit.unwrap_or(20).clamp(1, 10_000)
}

async fn mailbox(
    State(op): State<Op>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(p): Query<Page>,
) -> Response {
    let Ok(id) = karpoosheh_schemas::parse_recipient(&id) else {
        return bad("not a mailbox ID");
    };
    let before = match p.before.as_deref().map(TrackingCode::parse) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(_)) => return bad("before is not a tracking code"),
    };
    guarded(op, headers, move |op| {
        record(op, id, "operator_mailbox", None, peer)?;
        let page = Inspect::mailbox(&op.store, id, before, limit(&p))?;
        Ok(Json(page).into_response())
    })
    .await
}

async fn notice(
    State(op): State<Op>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> Response {
    let Ok(code) = TrackingCode::parse(&code) else {
        return bad("not a tracking code");
    };
    guarded(op, headers, move |op| {
        let view = Inspect::notice(&op.store, code)?;
        let whose = view
            .notice
            .as_ref()
            .map(|n| n.notice.recipient)
            .or(view.delivery.as_ref().map(|d| d.recipient));
        match whose {
            None => Ok(problem(
                StatusCode::NOT_FOUND,
                "no notice with that tracking code",
            )),
            Some(m) => {
                record(op, m, "operator_notice", Some(code), peer)?;
                Ok(Json(view).into_response())
            }
        }
    })
    .await
}

#[derive(Deserialize)]
struct StatusQuery {
    agency: String,
    reference: String,
}

async fn status(
    State(op): State<Op>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<StatusQuery>,
) -> Response {
    let Ok(agency) = AgencyId::parse(&q.agency) else {
        return bad("not an agency ID");
    };
    guarded(op, headers, move |op| {
        let st = Inspect::status(&op.store, &agency, &q.reference)?;
        if let Some(n) = &st.notice {
            if let Some(m) = n.recipient {
                record(op, m, "operator_status", Some(n.tracking_code), peer)?;
            }
        }
        Ok(Json(st).into_response())
    })
    .await
}

#[derive(Deserialize)]
struct ReplayQuery {
    agency: String,
    since: String,
    until: String,
}

/// `karpoosheh receipts replay` through a running node: its outbox sends
/// them (crate::status::replay).
async fn replay(
    State(op): State<Op>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<ReplayQuery>,
) -> Response {
    let Ok(agency) = AgencyId::parse(&q.agency) else {
        return bad("not an agency ID");
    };
    let time = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    let (Some(since), Some(until)) = (time(&q.since), time(&q.until)) else {
        return bad("since and until must be RFC 3339 times");
    };
    if since >= until {
        return bad("since must be before until");
    }
    guarded(op, headers, move |op| {
        use std::sync::atomic::Ordering;
        if op.replaying.swap(true, Ordering::SeqCst) {
            return Ok(problem(
                StatusCode::CONFLICT,
                "a replay is running on this node; wait for it to end",
            ));
        }
        // A write on an operator's word: who asked, for what, in the log.
        tracing::warn!(
            agency = agency.as_str(),
            since = %since,
            until = %until,
            from = %peer.ip(),
            "receipts replay requested through the operators' endpoint"
        );
        let done = crate::status::replay(op.store.as_ref(), &agency, since, until);
        op.replaying.store(false, Ordering::SeqCst);
        let done = done.map_err(|e| e.to_string())?;
        tracing::warn!(
            agency = agency.as_str(),
            notices = done.notices,
            receipts = done.receipts,
            rejections = done.rejections,
            "receipts replay done"
        );
        Ok(Json(done).into_response())
    })
    .await
}

async fn rejections(State(op): State<Op>, headers: HeaderMap, Query(p): Query<Page>) -> Response {
    let agency = match agency_of(&p) {
        Ok(a) => a,
        Err(why) => return bad(why),
    };
    if p.latest && p.after.is_some() {
        return bad("latest reads the newest rejections: it takes no after");
    }
    guarded(op, headers, move |op| {
        let list = if p.latest {
            Inspect::latest_rejections(&op.store, agency.as_ref(), limit(&p))?
        } else {
            Inspect::rejections(&op.store, agency.as_ref(), p.after, limit(&p))?
        };
        Ok(Json(list).into_response())
    })
    .await
}

async fn history(
    State(op): State<Op>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> Response {
    let Ok(code) = TrackingCode::parse(&code) else {
        return bad("not a tracking code");
    };
    guarded(op, headers, move |op| {
        match op.store.delivery(code).map_err(s)? {
            None => Ok(problem(
                StatusCode::NOT_FOUND,
                "no notice with that tracking code",
            )),
            Some(rec) => {
                record(op, rec.recipient, "operator_notice", Some(code), peer)?;
                let events = op.store.events(code).map_err(s)?;
                Ok(Json(history_of(&rec, &events)).into_response())
            }
        }
    })
    .await
}

async fn dashboard_rejections(
    State(op): State<Op>,
    headers: HeaderMap,
    Query(p): Query<Page>,
) -> Response {
    let agency = match agency_of(&p) {
        Ok(a) => a,
        Err(why) => return bad(why),
    };
    guarded(op, headers, move |op| {
        let list: Vec<StoredRejection> =
            Inspect::latest_rejections(&op.store, agency.as_ref(), limit(&p))?
                .into_iter()
                .map(masked_rejection)
                .collect();
        Ok(Json(list).into_response())
    })
    .await
}

async fn dashboard_quarantine(
    State(op): State<Op>,
    headers: HeaderMap,
    Query(p): Query<Page>,
) -> Response {
    guarded(op, headers, move |op| {
        let list: Vec<QuarantinedView> = Inspect::quarantined(&op.store, limit(&p))?
            .into_iter()
            .map(|q| QuarantinedView {
                id: q.id,
                at: q.at,
                kind: q.kind,
                key: q.key,
                error: karpoosheh_schemas::mask_personal(&q.error),
            })
            .collect();
        Ok(Json(list).into_response())
    })
    .await
}

async fn parked(State(op): State<Op>, headers: HeaderMap) -> Response {
    guarded(op, headers, move |op| {
        Ok(Json(Inspect::parked(&op.store)?).into_response())
    })
    .await
}

async fn dead_letters(State(op): State<Op>, headers: HeaderMap, Query(p): Query<Page>) -> Response {
    guarded(op, headers, move |op| {
        let list = Inspect::dead_letters(&op.store, p.after, limit(&p))?;
        Ok(Json(list).into_response())
    })
    .await
}

async fn quarantine(State(op): State<Op>, headers: HeaderMap, Query(p): Query<Page>) -> Response {
    guarded(op, headers, move |op| {
        let list = Inspect::quarantined(&op.store, limit(&p))?;
        Ok(Json(list).into_response())
    })
    .await
}

async fn access_log(
    State(op): State<Op>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(p): Query<Page>,
) -> Response {
    let Ok(id) = karpoosheh_schemas::parse_recipient(&id) else {
        return bad("not a mailbox ID");
    };
    guarded(op, headers, move |op| {
        record(op, id, "operator_access_log", None, peer)?;
        let list = Inspect::access_log(&op.store, id, limit(&p))?;
        Ok(Json(list).into_response())
    })
    .await
}

#[cfg(test)]
mod tests;
