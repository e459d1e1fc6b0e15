//! The drill-down (issue 26): what the dashboard reads from the nodes'
//! operator endpoints, behind the numbers — an agency's newest
//! rejections, a node's parked agencies and quarantined records, and a
//! tracking code's legal history.
//!
//! Read-only, with the operator credential (`[operator]` in the
//! configuration), on a thread of its own so that a slow node never holds
//! the keys, and never through a proxy. It reads the endpoint's dashboard
//! routes (`/v1/operator/dashboard/…`), which mask on the node's side
//! (the recipient to its last four digits; numbers, phone numbers and
//! e-mail addresses in references, messages and errors; no title, body or
//! stored bytes), and masks again on arrival, errors included
//! ([`karpoosheh_schemas::mask_personal`]): nothing on screen carries a
//! national ID, a phone number or an address whole. Looking up a tracking
//! code is itself recorded in that mailbox's traffic data by the node.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use karpoosheh_schemas::{
    mask_personal, NoticeHistory, ParkedLot, Problem, QuarantinedView, SourcePosition, TrackingCode,
};
use serde::Deserialize;

use crate::config::OperatorAccess;

/// What a node without the dashboard's routes is told apart by.
const OLDER: &str = "no dashboard routes: an engine older than this monitor";

/// How many rejections one drill-down shows (the newest).
pub const SAMPLE: usize = 50;

/// Quarantined records listed per node.
const QUARANTINE_LIMIT: usize = 200;

/// What the operator asked to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// The newest rejections kept for an agency.
    Rejections { agency: String },
    /// A node's parked agencies and quarantined records (an index into
    /// the targets).
    Inside { node: usize },
    /// A notice's legal history by tracking code.
    Lookup { code: String },
}

/// One node's endpoint: its name on screen and its base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub base: String,
}

/// What came back.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Rejections(Rejections),
    Inside(Inside),
    Lookup(Lookup),
}

/// An agency's newest rejections, merged over the nodes asked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rejections {
    /// Newest first, at most [`SAMPLE`].
    pub samples: Vec<Sample>,
    /// Nodes asked, and what went wrong with any of them.
    pub asked: usize,
    pub notes: Vec<String>,
}

impl Rejections {
    /// Reasons in the sample with how many each, most first.
    pub fn by_reason(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for s in &self.samples {
            for p in &s.problems {
                let r = reason_code(p);
                match counts.iter_mut().find(|(c, _)| *c == r) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((r, 1)),
                }
            }
        }
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        counts
    }
}

/// A problem's reason code as on the wire (`bad_check_digit`).
pub fn reason_code(p: &Problem) -> String {
    serde_json::to_value(p.reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{:?}", p.reason))
}

/// One kept rejection, masked.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at: DateTime<Utc>,
    pub reference: Option<String>,
    pub problems: Vec<Problem>,
    pub position: SourcePosition,
    /// The node it was read from.
    pub node: String,
}

/// A node's parking lots and quarantined records.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Inside {
    pub node: String,
    pub parked: Vec<ParkedLot>,
    pub quarantined: Vec<QuarantinedView>,
}

/// A notice's legal history, and the node that answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    pub history: NoticeHistory,
    pub node: String,
}

#[derive(Deserialize)]
struct WireRejection {
    rejection: WireRejected,
}

#[derive(Deserialize)]
struct WireRejected {
    reference: Option<String>,
    problems: Vec<Problem>,
    position: SourcePosition,
    at: DateTime<Utc>,
}

/// The endpoints a query goes to: the one node in scope, or every node
/// that has one.
pub fn endpoints(
    access: &OperatorAccess,
    names: &[String],
    scope: Option<usize>,
) -> Result<Vec<Endpoint>, String> {
    if access.endpoints.is_empty() {
        return Err("no operator endpoints configured: set [operator] endpoints and token_file in the monitor's configuration (docs/operations.md, \"Drilling down\")".into());
    }
    let bases = access.bases().map_err(|e| e.to_string())?;
    let all: Vec<Endpoint> = bases
        .into_iter()
        .enumerate()
        .filter(|(i, _)| scope.is_none_or(|s| s == *i))
        .filter_map(|(i, b)| {
            Some(Endpoint {
                name: names.get(i).cloned().unwrap_or_else(|| format!("node {i}")),
                base: b?,
            })
        })
        .collect();
    if all.is_empty() {
        return Err(match scope {
            Some(i) => format!(
                "{} has no operator endpoint in the monitor's configuration",
                names.get(i).map_or("that node", String::as_str)
            ),
            None => "no node has an operator endpoint in the monitor's configuration".into(),
        });
    }
    Ok(all)
}

/// Reads the credential (one word of at least 32 characters, in a file
/// not every user can read).
pub fn credential(access: &OperatorAccess) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let path = access
        .token_file
        .as_ref()
        .ok_or("operator.token_file is not set")?;
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("operator.token_file {}: {e}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o004 != 0 {
        return Err(format!(
            "operator.token_file {} is readable by every user (mode {:o}): chmod o-r it",
            path.display(),
            mode & 0o777
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("operator.token_file {}: {e}", path.display()))?;
    let t = text.trim();
    if t.len() < 32 || t.contains(char::is_whitespace) {
        return Err(format!(
            "operator.token_file {}: the credential must be one word of at least 32 characters",
            path.display()
        ));
    }
    Ok(t.to_owned())
}

/// A GET's outcome: the body of a 200, `NotFound` (no such notice), or
/// what went wrong.
enum Got {
    Ok(String),
    NotFound,
}

/// A GET; what goes wrong is masked like everything else shown (a node's
/// error may quote a stored value).
fn get(agent: &ureq::Agent, token: &str, base: &str, path: &str) -> Result<Got, String> {
    get_unmasked(agent, token, base, path).map_err(|e| mask_personal(&e))
}

fn get_unmasked(agent: &ureq::Agent, token: &str, base: &str, path: &str) -> Result<Got, String> {
    let mut r = agent
        .get(&format!("{base}{path}"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .map_err(|e| format!("{base}: {e}"))?;
    let body = r
        .body_mut()
        .with_config()
        .limit(32 << 20)
        .read_to_string()
        .map_err(|e| format!("{base}: {e}"))?;
    match r.status().as_u16() {
        200 => Ok(Got::Ok(body)),
        // The engine's fallback: a route this node does not have.
        404 if body.contains("no such route") => Err(OLDER.into()),
        404 => Ok(Got::NotFound),
        401 => Err("the operator credential was refused (401): is operator.token_file the nodes' credential?".into()),
        code => {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            Err(format!(
                "answered {code}: {}",
                v["message"].as_str().unwrap_or("(no message)")
            ))
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &str, what: &str) -> Result<T, String> {
    serde_json::from_str(body).map_err(|e| format!("{what}: not what this monitor reads ({e})"))
}

/// Asks the endpoints; blocking (the dashboard runs it on a thread).
pub fn fetch(query: &Query, endpoints: &[Endpoint], token: &str) -> Result<Answer, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        // Never through a proxy from the environment: the credential
        // would travel to it in the clear.
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    match query {
        Query::Rejections { agency } => {
            let mut out = Rejections {
                asked: endpoints.len(),
                ..Rejections::default()
            };
            let path = format!("/v1/operator/dashboard/rejections?limit={SAMPLE}&agency={agency}");
            for e in endpoints {
                let got = get(&agent, token, &e.base, &path).and_then(|g| match g {
                    Got::Ok(body) => parse::<Vec<WireRejection>>(&body, "rejections"),
                    Got::NotFound => Err(OLDER.into()),
                });
                match got {
                    Ok(list) => out.samples.extend(list.into_iter().map(|w| {
                        let r = w.rejection;
                        Sample {
                            at: r.at,
                            reference: r.reference.as_deref().map(mask_personal),
                            problems: r
                                .problems
                                .into_iter()
                                .map(|mut p| {
                                    p.message = mask_personal(&p.message);
                                    p.field = p.field.as_deref().map(mask_personal);
                                    p
                                })
                                .collect(),
                            position: match r.position {
                                SourcePosition::File { path, line } => SourcePosition::File {
                                    path: mask_personal(&path),
                                    line,
                                },
                                other => other,
                            },
                            node: e.name.clone(),
                        }
                    })),
                    Err(err) => out.notes.push(format!("{}: {err}", e.name)),
                }
            }
            if out.samples.is_empty() && out.notes.len() == endpoints.len() {
                return Err(out.notes.join("; "));
            }
            // Nodes on one shared store answer the same rejections: once
            // each. Newest first; a node's own order (by ID) kept within a
            // millisecond.
            let mut seen = std::collections::HashSet::new();
            out.samples.retain(|x| {
                seen.insert(format!(
                    "{}|{:?}|{:?}|{:?}",
                    x.at, x.reference, x.position, x.problems
                ))
            });
            out.samples.sort_by_key(|x| std::cmp::Reverse(x.at));
            out.samples.truncate(SAMPLE);
            Ok(Answer::Rejections(out))
        }
        Query::Inside { .. } => {
            let e = endpoints.first().ok_or("no endpoint")?;
            let parked = match get(&agent, token, &e.base, "/v1/operator/parked")? {
                Got::Ok(body) => parse::<Vec<ParkedLot>>(&body, "parked")?,
                Got::NotFound => return Err(format!("{}: no parked route", e.name)),
            };
            let path = format!("/v1/operator/dashboard/quarantine?limit={QUARANTINE_LIMIT}");
            let quarantined = match get(&agent, token, &e.base, &path)? {
                Got::Ok(body) => parse::<Vec<QuarantinedView>>(&body, "quarantine")?
                    .into_iter()
                    .map(|mut q| {
                        q.error = mask_personal(&q.error);
                        q
                    })
                    .collect(),
                Got::NotFound => return Err(format!("{}: {OLDER}", e.name)),
            };
            Ok(Answer::Inside(Inside {
                node: e.name.clone(),
                parked,
                quarantined,
            }))
        }
        Query::Lookup { code } => {
            // What was typed is not echoed: it could be a national ID
            // typed into the wrong box.
            let code = TrackingCode::parse(code.trim())
                .map_err(|e| format!("that is not a tracking code: {e}"))?;
            let path = format!("/v1/operator/dashboard/notices/{code}");
            let mut errors = Vec::new();
            for e in endpoints {
                match get(&agent, token, &e.base, &path) {
                    Ok(Got::Ok(body)) => {
                        return Ok(Answer::Lookup(Lookup {
                            history: parse::<NoticeHistory>(&body, "history")?,
                            node: e.name.clone(),
                        }));
                    }
                    Ok(Got::NotFound) => {}
                    Err(err) => errors.push(format!("{}: {err}", e.name)),
                }
            }
            let mut m = format!(
                "no notice {code} on the {} node(s) that answered",
                endpoints.len() - errors.len()
            );
            for e in errors {
                m += &format!("; {e}");
            }
            Err(m)
        }
    }
}

/// The one fetch in flight at a time: its answer waits in a slot the
/// dashboard's loop looks at between keys.
/// A fetch's generation and what it found.
type Delivered = (u64, Result<Answer, String>);

#[derive(Clone, Default)]
pub(crate) struct Fetcher {
    slot: Arc<Mutex<Option<Delivered>>>,
}

impl Fetcher {
    /// Starts fetching `query` as generation `gen`; an older answer that
    /// arrives later is dropped by the caller (its generation is stale).
    pub fn start(
        &self,
        gen: u64,
        query: Query,
        endpoints: Result<Vec<Endpoint>, String>,
        access: &OperatorAccess,
    ) {
        let slot = self.slot.clone();
        let access = access.clone();
        let spawned = std::thread::Builder::new()
            .name("drill".into())
            .spawn(move || {
                let answer = endpoints
                    .and_then(|e| credential(&access).map(|t| (e, t)))
                    .and_then(|(e, token)| fetch(&query, &e, &token));
                // A later fetch's answer, already there, is never
                // overwritten by this older one.
                let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
                if slot.as_ref().is_none_or(|(g, _)| *g < gen) {
                    *slot = Some((gen, answer));
                }
            });
        if let Err(e) = spawned {
            *self.slot.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((gen, Err(format!("cannot start a thread: {e}"))));
        }
    }

    pub fn take(&self) -> Option<Delivered> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};

    /// A node's operator endpoint that answers `route(path, token)` with
    /// (status, body), one connection at a time.
    fn node(route: fn(&str, &str) -> (u16, String)) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                reader.read_line(&mut first).unwrap();
                let path = first.split_whitespace().nth(1).unwrap_or("").to_owned();
                let mut token = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("authorization") {
                            token = v.trim().trim_start_matches("Bearer ").to_owned();
                        }
                    }
                }
                let (status, body) = route(&path, &token);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        base
    }

    const TOKEN: &str = "an-operator-credential-of-40-characters!";

    fn rejection(reference: &str, at: &str, offset: i64) -> serde_json::Value {
        serde_json::json!({
            "id": offset,
            "rejection": {
                "agency": "tax",
                "reference": reference,
                "problems": [{"reason": "bad_check_digit", "field": "recipient",
                    "message": "recipient 0012345679 fails its check digit"}],
                "position": {"type": "kafka", "topic": "karpoosheh.notices.tax",
                    "partition": 1, "offset": offset},
                "at": at,
            }
        })
    }

    fn shared(path: &str, token: &str) -> (u16, String) {
        if token != TOKEN {
            return (401, r#"{"error":401,"message":"no"}"#.into());
        }
        if path.starts_with("/v1/operator/dashboard/rejections?limit=50&agency=tax") {
            let list = serde_json::json!([
                rejection("REF-09121234567", "2027-01-15T08:00:02Z", 12),
                rejection("REF-2", "2027-01-15T08:00:01Z", 11),
            ]);
            return (200, list.to_string());
        }
        if path.starts_with("/v1/operator/dashboard/notices/") {
            return (
                404,
                r#"{"error":404,"message":"no notice with that tracking code"}"#.into(),
            );
        }
        (404, "{}".into())
    }

    fn own(path: &str, token: &str) -> (u16, String) {
        if token != TOKEN {
            return (401, "{}".into());
        }
        if path.starts_with("/v1/operator/dashboard/rejections") {
            // The same store as the first node's, and one of its own.
            let list = serde_json::json!([
                rejection("REF-09121234567", "2027-01-15T08:00:02Z", 12),
                rejection("REF-3", "2027-01-15T08:00:03Z", 13),
            ]);
            return (200, list.to_string());
        }
        if path.starts_with("/v1/operator/dashboard/notices/") {
            let h = serde_json::json!({
                "tracking_code": "07FJ-CPM0-00C0-HQ", "agency": "tax", "reference": "r",
                "recipient": "******5679", "kind": "official_notice",
                "accepted_at": "2027-01-15T07:40:00+00:00", "expires_at": "2027-04-15T07:40:00+00:00",
                "state": "served", "history": ["legal outcome   SERVED"], "chain": []
            });
            return (200, h.to_string());
        }
        if path == "/v1/operator/parked" {
            return (200, r#"[{"agency":"customs","receipts":3,"oldest_event":"accepted","oldest_at":"2027-01-15T07:00:00Z"}]"#.into());
        }
        if path.starts_with("/v1/operator/dashboard/quarantine") {
            return (200, r#"[{"id":1,"at":"2027-01-15T07:00:00Z","kind":"delivery_record","key":"07FJ-CPM0-00C0-HQ","error":"damaged near 0012345679"}]"#.into());
        }
        (404, r#"{"error":404,"message":"no such route"}"#.into())
    }

    fn eps() -> Vec<Endpoint> {
        vec![
            Endpoint {
                name: "a".into(),
                base: node(shared),
            },
            Endpoint {
                name: "b".into(),
                base: node(own),
            },
        ]
    }

    #[test]
    fn rejections_of_every_node_merged_newest_first_once_each_masked() {
        let q = Query::Rejections {
            agency: "tax".into(),
        };
        let Answer::Rejections(r) = fetch(&q, &eps(), TOKEN).unwrap() else {
            panic!("not rejections")
        };
        let refs: Vec<_> = r
            .samples
            .iter()
            .map(|s| s.reference.clone().unwrap())
            .collect();
        assert_eq!(refs, ["REF-3", "REF-*******4567", "REF-2"]);
        assert_eq!(r.samples[0].node, "b");
        assert_eq!(
            r.samples[0].problems[0].message,
            "recipient ******5679 fails its check digit"
        );
        assert_eq!(r.by_reason(), [("bad_check_digit".to_owned(), 3)]);
        assert!(r.notes.is_empty());
        // One node refusing the credential is a note; all refusing, an error.
        let e = fetch(&q, &eps(), "another-credential-of-forty-characters!!").unwrap_err();
        assert!(e.contains("401"), "{e}");
    }

    #[test]
    fn a_code_is_looked_up_on_every_node_until_one_has_it() {
        let q = Query::Lookup {
            code: " 07fj-cpm0-00c0-hq ".into(),
        };
        let Answer::Lookup(h) = fetch(&q, &eps(), TOKEN).unwrap() else {
            panic!("not a history")
        };
        assert_eq!((h.node.as_str(), h.history.state.as_str()), ("b", "served"));
        let e = fetch(&q, &eps()[..1], TOKEN).unwrap_err();
        assert!(e.contains("no notice 07FJ-CPM0-00C0-HQ"), "{e}");
        let bad = Query::Lookup {
            code: "not-a-code".into(),
        };
        assert!(fetch(&bad, &eps(), TOKEN)
            .unwrap_err()
            .contains("not a tracking code"));
    }

    #[test]
    fn inside_a_node_its_lots_and_masked_records() {
        let Answer::Inside(i) = fetch(&Query::Inside { node: 1 }, &eps()[1..], TOKEN).unwrap()
        else {
            panic!("not inside")
        };
        assert_eq!(i.node, "b");
        assert_eq!(i.parked[0].receipts, 3);
        assert_eq!(i.quarantined[0].error, "damaged near ******5679");
    }

    #[test]
    fn an_older_engine_is_told_apart_from_a_missing_notice() {
        fn older(_: &str, _: &str) -> (u16, String) {
            (404, r#"{"error":404,"message":"no such route"}"#.into())
        }
        let ep = [Endpoint {
            name: "old".into(),
            base: node(older),
        }];
        for q in [
            Query::Rejections {
                agency: "tax".into(),
            },
            Query::Inside { node: 0 },
        ] {
            let e = fetch(&q, &ep, TOKEN).unwrap_err();
            assert!(e.contains("older than this monitor"), "{e}");
        }
        let q = Query::Lookup {
            code: "07FJ-CPM0-00C0-HQ".into(),
        };
        let e = fetch(&q, &ep, TOKEN).unwrap_err();
        assert!(e.contains("older than this monitor"), "{e}");
    }

    #[test]
    fn what_goes_wrong_is_masked_and_what_was_typed_not_echoed() {
        fn quoting(_: &str, _: &str) -> (u16, String) {
            (
                503,
                r#"{"error":503,"message":"rejection 7: bad value \"0012345679\""}"#.into(),
            )
        }
        let ep = [Endpoint {
            name: "n".into(),
            base: node(quoting),
        }];
        let q = Query::Rejections {
            agency: "tax".into(),
        };
        let e = fetch(&q, &ep, TOKEN).unwrap_err();
        assert!(e.contains("******5679") && !e.contains("0012345679"), "{e}");
        let typed = Query::Lookup {
            code: "0012345679".into(),
        };
        let e = fetch(&typed, &ep, TOKEN).unwrap_err();
        assert!(!e.contains("0012345679") && !e.contains("5679"), "{e}");
    }

    #[test]
    fn an_older_answer_never_replaces_a_newer_one() {
        let f = Fetcher::default();
        let access = OperatorAccess::default();
        f.start(2, Query::Inside { node: 0 }, Err("second".into()), &access);
        while f.slot.lock().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        f.start(1, Query::Inside { node: 0 }, Err("first".into()), &access);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(f.take().map(|(g, _)| g), Some(2));
    }

    #[test]
    fn a_credential_every_user_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile_dir();
        let path = dir.join("operator.token");
        std::fs::write(&path, "x".repeat(40)).unwrap();
        let access = OperatorAccess {
            token_file: Some(path.clone()),
            endpoints: vec![],
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(credential(&access).unwrap_err().contains("chmod o-r"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(credential(&access).unwrap().len(), 40);
        std::fs::write(&path, "short").unwrap();
        assert!(credential(&access).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A directory of this test's own (the monitor has no tempfile crate).
    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "karpoosheh-monitor-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn endpoints_follow_the_scope_and_say_what_is_missing() {
        let access = OperatorAccess {
            token_file: None,
            endpoints: vec!["127.0.0.1:9466".into(), "".into()],
        };
        let names = ["n1".to_owned(), "n2".to_owned()];
        let all = endpoints(&access, &names, None).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].base, "http://127.0.0.1:9466");
        assert!(endpoints(&access, &names, Some(1))
            .unwrap_err()
            .contains("n2 has no operator endpoint"));
        assert!(endpoints(&OperatorAccess::default(), &names, None)
            .unwrap_err()
            .contains("no operator endpoints configured"));
    }
}
