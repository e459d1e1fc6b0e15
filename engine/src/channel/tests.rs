//! Behaviour of the dispatcher and of the real transports against local
//! servers on 127.0.0.1 (port 0): an HTTP gateway (tiny_http) and a small
//! fake SMTP server written here. Back-offs and timeouts are short.

#![allow(clippy::field_reassign_with_default)] // tests tweak one field of a default config

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use karpoosheh_schemas::{AgencyId, HumanDuration, MailboxId, MailboxKind, TrackingCode};

use super::config::*;
use super::policy::*;
use super::*;
use crate::secret::Secret;

fn ms(v: u64) -> HumanDuration {
    HumanDuration(Duration::from_millis(v))
}

/// Test policy: no rate limit, fast back-off.
fn policy() -> ChannelPolicy {
    ChannelPolicy {
        rate_per_sec: 0.0,
        burst: 1,
        rate_limit_wait: ms(100),
        urgent_reserve: 0.0,
        timeout: ms(500),
        max_attempts: 3,
        backoff_initial: ms(5),
        backoff_max: ms(20),
        breaker_failures: 100,
        breaker_cooldown: ms(50),
    }
}

fn person() -> MailboxId {
    MailboxId::person_from_body(12_345_678).expect("valid national code")
}

fn note(kind: MailboxKind) -> Notification {
    let tc = TrackingCode::from_parts(1_760_000_000_000, 3, 7);
    Notification {
        tracking_code: tc,
        round: 2,
        agency: AgencyId::parse("tax-org").unwrap(),
        title: "ابلاغیه \"مالیات\" \\ سال ۱۴۰۳ & <فوری>".into(),
        to_representative: false,
        recipient_kind: kind,
        idempotency_key: Notification::idempotency_key_for(tc, 2, 0),
        priority: karpoosheh_schemas::Priority::Normal,
        reminder: None,
    }
}

fn sms() -> Target {
    Target {
        kind: ChannelKind::Sms,
        address: Address::Mobile("09121234567".into()),
    }
}

fn push() -> Target {
    Target {
        kind: ChannelKind::Push,
        address: Address::Push(person()),
    }
}

fn email(a: &str) -> Target {
    Target {
        kind: ChannelKind::Email,
        address: Address::Email(a.into()),
    }
}

/// A transport that answers from a script (then repeats `default`) and
/// counts its calls.
struct Scripted {
    kind: ChannelKind,
    script: Mutex<VecDeque<Result<(), SendError>>>,
    default: Result<(), SendError>,
    calls: AtomicU32,
    call_times: Mutex<Vec<Instant>>,
}

impl Scripted {
    fn new(kind: ChannelKind, default: Result<(), SendError>) -> Arc<Scripted> {
        Arc::new(Scripted {
            kind,
            script: Mutex::new(VecDeque::new()),
            default,
            calls: AtomicU32::new(0),
            call_times: Mutex::new(Vec::new()),
        })
    }
    fn then(self: &Arc<Self>, r: Result<(), SendError>) -> Arc<Self> {
        self.script.lock().unwrap().push_back(r);
        self.clone()
    }
    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Transport for Scripted {
    fn kind(&self) -> ChannelKind {
        self.kind
    }
    fn name(&self) -> &'static str {
        "scripted"
    }
    fn send(&self, _n: &Notification, _to: &Address) -> Result<(), SendError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.call_times.lock().unwrap().push(Instant::now());
        self.script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.default.clone())
    }
}

fn transient() -> Result<(), SendError> {
    Err(SendError::Transient("down".into()))
}
fn permanent() -> Result<(), SendError> {
    Err(SendError::Permanent("refused".into()))
}

fn dispatcher(ts: &[(Arc<Scripted>, ChannelPolicy)]) -> Dispatcher {
    Dispatcher::new(
        ts.iter()
            .map(|(t, p)| (t.clone() as Arc<dyn Transport>, p.clone()))
            .collect(),
        vec![ChannelKind::Sms, ChannelKind::Push, ChannelKind::Email],
    )
}

// ---------------------------------------------------------------- dispatcher

#[test]
fn transient_failures_are_retried_with_bounded_backoff_then_succeed() {
    let s = Scripted::new(ChannelKind::Sms, Ok(()))
        .then(transient())
        .then(transient());
    let d = dispatcher(&[(s.clone(), policy())]);
    let r = d.deliver(&note(MailboxKind::Person), &[sms()]);
    assert_eq!(
        r,
        Delivery::Accepted {
            channel: ChannelKind::Sms,
            attempts: 3
        }
    );
    let times = s.call_times.lock().unwrap();
    // Full jitter: each gap is within [0, ceiling] (+ scheduling slack).
    assert!(times[1] - times[0] <= Duration::from_millis(5 + 30));
    assert!(times[2] - times[1] <= Duration::from_millis(10 + 30));
}

#[test]
fn retries_stop_at_max_attempts() {
    let s = Scripted::new(ChannelKind::Sms, transient());
    let d = dispatcher(&[(s.clone(), policy())]);
    let r = d.deliver(&note(MailboxKind::Person), &[sms()]);
    assert_eq!(
        r,
        Delivery::Failed {
            reason: "all_channels_failed",
            transient: true,
            attempts: 3
        }
    );
    assert_eq!(s.calls(), 3);
}

#[test]
fn permanent_failure_is_not_retried_and_falls_through() {
    let s = Scripted::new(ChannelKind::Sms, permanent());
    let p = Scripted::new(ChannelKind::Push, Ok(()));
    let d = dispatcher(&[(s.clone(), policy()), (p.clone(), policy())]);
    let r = d.deliver(&note(MailboxKind::Person), &[push(), sms()]);
    assert_eq!(
        r,
        Delivery::Accepted {
            channel: ChannelKind::Push,
            attempts: 2
        },
        "sms first (configured order, not target order), once"
    );
    assert_eq!(s.calls(), 1);
    // Only permanent failures: not worth trying later.
    let r = d.deliver(&note(MailboxKind::Person), &[sms()]);
    assert_eq!(
        r,
        Delivery::Failed {
            reason: "permanent_failure",
            transient: false,
            attempts: 1
        }
    );
}

#[test]
fn falls_back_to_the_next_channel_when_one_is_down() {
    let s = Scripted::new(ChannelKind::Sms, transient());
    let p = Scripted::new(ChannelKind::Push, transient());
    let e = Scripted::new(ChannelKind::Email, Ok(()));
    let d = dispatcher(&[
        (s.clone(), policy()),
        (p.clone(), policy()),
        (e.clone(), policy()),
    ]);
    let r = d.deliver(
        &note(MailboxKind::Person),
        &[email("ali@example.ir"), sms(), push()],
    );
    assert_eq!(
        r,
        Delivery::Accepted {
            channel: ChannelKind::Email,
            attempts: 7
        }
    );
    assert_eq!((s.calls(), p.calls(), e.calls()), (3, 3, 1));
}

#[test]
fn breaker_opens_skips_the_channel_probes_and_closes() {
    let pol = ChannelPolicy {
        max_attempts: 1,
        breaker_failures: 2,
        breaker_cooldown: ms(80),
        ..policy()
    };
    let s = Scripted::new(ChannelKind::Sms, transient());
    let p = Scripted::new(ChannelKind::Push, Ok(()));
    let d = dispatcher(&[(s.clone(), pol.clone()), (p.clone(), pol)]);
    let n = note(MailboxKind::Person);
    for _ in 0..2 {
        assert!(d.deliver(&n, &[sms(), push()]).is_accepted());
    }
    assert_eq!(s.calls(), 2);
    assert_eq!(
        d.circuit_states(),
        vec![
            (ChannelKind::Sms, CircuitState::Open),
            (ChannelKind::Push, CircuitState::Closed)
        ]
    );
    // Open: SMS is not even tried; push takes the round.
    let r = d.deliver(&n, &[sms(), push()]);
    assert_eq!(
        r,
        Delivery::Accepted {
            channel: ChannelKind::Push,
            attempts: 1
        }
    );
    assert_eq!(s.calls(), 2);
    // SMS alone while open: circuit_open, worth trying later.
    assert_eq!(
        d.deliver(&n, &[sms()]),
        Delivery::Failed {
            reason: "circuit_open",
            transient: true,
            attempts: 0
        }
    );
    // After the cooldown one probe goes through; it fails: open again.
    thread::sleep(Duration::from_millis(100));
    assert!(d.deliver(&n, &[sms(), push()]).is_accepted());
    assert_eq!(s.calls(), 3);
    assert_eq!(d.circuit_states()[0].1, CircuitState::Open);
    assert!(d.deliver(&n, &[sms(), push()]).is_accepted());
    assert_eq!(s.calls(), 3, "re-opened: skipped again");
    // The gateway recovers: the next probe succeeds and closes it.
    s.script.lock().unwrap().push_back(Ok(()));
    thread::sleep(Duration::from_millis(100));
    assert_eq!(
        d.deliver(&n, &[sms(), push()]),
        Delivery::Accepted {
            channel: ChannelKind::Sms,
            attempts: 1
        }
    );
    assert_eq!(d.circuit_states()[0].1, CircuitState::Closed);
}

#[test]
fn no_usable_channel() {
    let s = Scripted::new(ChannelKind::Sms, Ok(()));
    let d = dispatcher(&[(s, policy())]);
    let n = note(MailboxKind::Person);
    let none = Delivery::Failed {
        reason: "no_channel",
        transient: false,
        attempts: 0,
    };
    assert_eq!(d.deliver(&n, &[]), none);
    // E-mail has no transport here.
    assert_eq!(d.deliver(&n, &[email("ali@example.ir")]), none);
}

#[test]
fn natural_persons_are_only_emailed_on_ir_domains() {
    let e = Scripted::new(ChannelKind::Email, Ok(()));
    let d = dispatcher(&[(e.clone(), policy())]);
    let r = d.deliver(&note(MailboxKind::Person), &[email("ali@gmail.com")]);
    assert_eq!(
        r,
        Delivery::Failed {
            reason: "permanent_failure",
            transient: false,
            attempts: 0
        }
    );
    assert_eq!(e.calls(), 0, "refused before the gateway");
    assert!(d
        .deliver(&note(MailboxKind::Person), &[email("ali@Mail.Example.IR")])
        .is_accepted());
    // Legal entities may use any domain.
    assert!(d
        .deliver(&note(MailboxKind::Legal), &[email("info@company.com")])
        .is_accepted());
    assert_eq!(
        email_allowed(MailboxKind::Person, "a@b.com"),
        Err(SendError::Permanent("email_not_ir".into()))
    );
    assert_eq!(
        email_allowed(MailboxKind::Person, "a@x.iran.com"),
        Err(SendError::Permanent("email_not_ir".into()))
    );
    assert_eq!(
        email_allowed(MailboxKind::Legal, "no-at-sign"),
        Err(SendError::Permanent("email_malformed".into()))
    );
    assert!(email_allowed(MailboxKind::Person, "a@ut.ac.ir.").is_ok());
}

#[test]
fn saturated_rate_limit_skips_the_channel() {
    let pol = ChannelPolicy {
        rate_per_sec: 1.0,
        burst: 1,
        rate_limit_wait: ms(10),
        ..policy()
    };
    let s = Scripted::new(ChannelKind::Sms, Ok(()));
    let p = Scripted::new(ChannelKind::Push, Ok(()));
    let d = dispatcher(&[(s.clone(), pol), (p.clone(), policy())]);
    let n = note(MailboxKind::Person);
    assert_eq!(
        d.deliver(&n, &[sms(), push()]),
        Delivery::Accepted {
            channel: ChannelKind::Sms,
            attempts: 1
        }
    );
    assert_eq!(
        d.deliver(&n, &[sms(), push()]),
        Delivery::Accepted {
            channel: ChannelKind::Push,
            attempts: 1
        }
    );
    assert_eq!(
        d.deliver(&n, &[sms()]),
        Delivery::Failed {
            reason: "rate_limited",
            transient: true,
            attempts: 0
        }
    );
    assert_eq!(s.calls(), 1);
}

#[test]
fn urgent_notices_use_the_reserve_of_a_saturated_gateway() {
    // 10/s with a fifth (two sends of the burst of ten) kept for urgent.
    let pol = ChannelPolicy {
        rate_per_sec: 10.0,
        burst: 10,
        rate_limit_wait: ms(10),
        urgent_reserve: 0.2,
        ..policy()
    };
    let s = Scripted::new(ChannelKind::Sms, Ok(()));
    let d = dispatcher(&[(s.clone(), pol)]);
    let bulk = Notification {
        priority: karpoosheh_schemas::Priority::Bulk,
        ..note(MailboxKind::Person)
    };
    let urgent = Notification {
        priority: karpoosheh_schemas::Priority::Urgent,
        ..note(MailboxKind::Person)
    };
    // The campaign saturates the gateway: eight go, then rate_limited.
    let mut sent = 0;
    while d.deliver(&bulk, &[sms()]).is_accepted() {
        sent += 1;
        assert!(sent <= 8, "the campaign took the reserve");
    }
    assert_eq!(sent, 8);
    // The urgent notices still go out at once, twice.
    for _ in 0..2 {
        assert_eq!(
            d.deliver(&urgent, &[sms()]),
            Delivery::Accepted {
                channel: ChannelKind::Sms,
                attempts: 1
            }
        );
    }
    assert_eq!(s.calls(), 10);
}

#[test]
fn concurrent_deliveries_respect_the_rate_limit() {
    let pol = ChannelPolicy {
        rate_per_sec: 100.0,
        burst: 10,
        rate_limit_wait: HumanDuration(Duration::from_secs(5)),
        ..policy()
    };
    let s = Scripted::new(ChannelKind::Sms, Ok(()));
    let d = Arc::new(dispatcher(&[(s.clone(), pol)]));
    let started = Instant::now();
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let d = d.clone();
            thread::spawn(move || {
                for _ in 0..10 {
                    assert!(d
                        .deliver(&note(MailboxKind::Person), &[sms()])
                        .is_accepted());
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let took = started.elapsed();
    assert_eq!(s.calls(), 60);
    // 10 from the burst, 50 more at 100/s: at least 0.5 s.
    assert!(took >= Duration::from_millis(480), "{took:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
    // And no one-second window holds more than rate + burst sends.
    let mut times = s.call_times.lock().unwrap().clone();
    times.sort();
    for (i, t) in times.iter().enumerate() {
        let in_window = times[i..]
            .iter()
            .take_while(|u| **u - *t < Duration::from_millis(300))
            .count();
        assert!(in_window <= 10 + 30 + 2, "{in_window} sends in 300 ms");
    }
}

#[test]
fn simulated_gateways_from_default_config_deliver() {
    let mut cfg = ChannelsConfig::default();
    for s in [
        &mut cfg.sms.simulated,
        &mut cfg.email.simulated,
        &mut cfg.push.simulated,
    ] {
        *s = SimulatedConfig::zero_latency();
    }
    let d = Dispatcher::from_config(&cfg).unwrap();
    assert_eq!(
        d.gateways(),
        vec![
            (ChannelKind::Sms, "simulated"),
            (ChannelKind::Push, "simulated"),
            (ChannelKind::Email, "simulated")
        ]
    );
    let r = d.deliver(&note(MailboxKind::Person), &[email("a@b.ir"), push()]);
    assert_eq!(
        r,
        Delivery::Accepted {
            channel: ChannelKind::Push,
            attempts: 1
        }
    );
}

// ---------------------------------------------------------------- config

#[test]
fn defaults_are_valid_and_bad_combinations_are_refused() {
    ChannelsConfig::default().validate().unwrap();
    let bad = |f: &dyn Fn(&mut ChannelsConfig), needle: &str| {
        let mut c = ChannelsConfig::default();
        f(&mut c);
        let e = c.validate().unwrap_err();
        assert!(e.contains(needle), "{e} should mention {needle}");
        assert!(Dispatcher::from_config(&c).is_err());
    };
    bad(
        &|c| c.order = vec![ChannelKind::Sms, ChannelKind::Push],
        "channels.email",
    );
    bad(&|c| c.order.push(ChannelKind::Sms), "twice");
    bad(
        &|c| c.sms.gateway = SmsGateway::Http,
        "channels.sms.http.url",
    );
    bad(
        &|c| {
            c.sms.gateway = SmsGateway::Http;
            c.sms.http.url = "http://127.0.0.1:1/send".into();
            c.sms.http.body_template = "{\"to\":\"{mobile}\"}".into();
        },
        "mobile",
    );
    bad(
        &|c| c.email.text_template = "{national_id}".into(),
        "national_id",
    );
    bad(
        &|c| c.push.policy.max_attempts = 0,
        "channels.push.policy.max_attempts",
    );
    bad(&|c| c.sms.policy.backoff_max = ms(1), "backoff_max");
    bad(
        &|c| c.sms.simulated.transient_failure_rate = 1.5,
        "transient_failure_rate",
    );
    bad(
        &|c| {
            c.email.gateway = EmailGateway::Smtp;
            c.email.smtp.from = "not an address".into();
        },
        "smtp.from",
    );
    // A disabled channel may be left out of the order.
    let mut c = ChannelsConfig::default();
    c.email.enabled = false;
    c.order.retain(|k| *k != ChannelKind::Email);
    c.validate().unwrap();
    assert_eq!(Dispatcher::from_config(&c).unwrap().gateways().len(), 2);
}

#[test]
fn secrets_are_masked_when_printed() {
    let mut c = crate::Config::default();
    c.channels.sms.http.bearer_token = Secret::new("tok-SECRET-1");
    c.channels.push.webhook.basic_password = Secret::new("pw-SECRET-2");
    c.channels.email.smtp.password = Secret::new("pw-SECRET-3");
    c.channels
        .sms
        .http
        .headers
        .insert("X-Api-Key".into(), Secret::new("key-SECRET-4"));
    let printed = toml::to_string_pretty(&c).unwrap();
    let debugged = format!("{c:?}");
    for out in [&printed, &debugged] {
        assert!(!out.contains("SECRET"), "a secret leaked:\n{out}");
        assert!(out.contains(crate::secret::MASK));
    }
    // Loading still reads the real values.
    let c = crate::Config::load(
        None,
        vec![(
            "KARPOOSHEH__CHANNELS__EMAIL__SMTP__PASSWORD".to_string(),
            "from-env".to_string(),
        )],
        &["channels.email.smtp.username=mailer".into()],
    )
    .unwrap();
    assert_eq!(c.channels.email.smtp.password.expose(), "from-env");
}

// ---------------------------------------------------------------- HTTP

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

enum Reply {
    Status(u16),
    Sleep(Duration),
}

/// A local HTTP gateway answering from a script; records what it got.
struct FakeGateway {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    replies: Arc<Mutex<VecDeque<Reply>>>,
}

impl FakeGateway {
    fn start() -> FakeGateway {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let addr = server.server_addr().to_ip().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let replies: Arc<Mutex<VecDeque<Reply>>> = Arc::new(Mutex::new(VecDeque::new()));
        let (s, r) = (seen.clone(), replies.clone());
        thread::spawn(move || {
            for mut req in server.incoming_requests() {
                let mut body = String::new();
                req.as_reader().read_to_string(&mut body).unwrap();
                s.lock().unwrap().push(Seen {
                    method: req.method().to_string(),
                    url: req.url().to_string(),
                    headers: req
                        .headers()
                        .iter()
                        .map(|h| (h.field.to_string(), h.value.to_string()))
                        .collect(),
                    body,
                });
                let reply = r.lock().unwrap().pop_front().unwrap_or(Reply::Status(200));
                let s = thread::spawn(move || {
                    let code = match reply {
                        Reply::Status(c) => c,
                        Reply::Sleep(d) => {
                            thread::sleep(d);
                            200
                        }
                    };
                    let _ =
                        req.respond(tiny_http::Response::from_string("{}").with_status_code(code));
                });
                drop(s);
            }
        });
        FakeGateway {
            url: format!("http://{addr}"),
            seen,
            replies,
        }
    }
    fn reply(&self, r: Reply) {
        self.replies.lock().unwrap().push_back(r);
    }
    fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().unwrap().clone()
    }
}

fn sms_config(gw: &FakeGateway) -> SmsConfig {
    let mut c = SmsConfig::default();
    c.gateway = SmsGateway::Http;
    c.policy.timeout = ms(300);
    c.http.url = format!("{}/v1/sms/send", gw.url);
    c.http.bearer_token = Secret::new("t0ken");
    c
}

#[test]
fn http_sms_renders_the_template_sends_auth_and_idempotency_key() {
    let gw = FakeGateway::start();
    let t = HttpTransport::sms(&sms_config(&gw)).unwrap();
    assert_eq!((t.kind(), t.name()), (ChannelKind::Sms, "http-sms"));
    let mut n = note(MailboxKind::Person);
    n.to_representative = true;
    t.send(&n, &Address::Mobile("09121234567".into())).unwrap();
    let seen = gw.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.url, "/v1/sms/send");
    assert_eq!(seen.header("Authorization"), Some("Bearer t0ken"));
    assert_eq!(
        seen.header("Idempotency-Key"),
        Some(n.idempotency_key.as_str())
    );
    assert!(seen
        .header("Content-Type")
        .unwrap()
        .starts_with("application/json"));
    let v: serde_json::Value = serde_json::from_str(&seen.body).expect("valid JSON body");
    assert_eq!(v["from"], "4040");
    assert_eq!(v["to"], "09121234567");
    assert_eq!(v["idempotency_key"], n.idempotency_key);
    let text = v["text"].as_str().unwrap();
    assert!(text.contains("tax-org"), "{text}");
    assert!(text.contains(&n.tracking_code.to_string()), "{text}");
    assert!(text.contains("اطلاع‌رسانی 2 از 3"), "{text}");
    assert!(
        text.contains("نماینده"),
        "representative is told so: {text}"
    );
    assert!(
        text.chars().count() <= 201,
        "about three SMS segments at most: {}",
        text.chars().count()
    );
}

/// A reminder of a response deadline goes with the reminder text, not a
/// round's ("1 of 3").
#[test]
fn http_sms_sends_a_reminder_with_its_own_text() {
    let gw = FakeGateway::start();
    let t = HttpTransport::sms(&sms_config(&gw)).unwrap();
    let mut n = note(MailboxKind::Person);
    n.round = 0;
    use chrono::TimeZone;
    // 11:00 UTC on 9 December 2026: 14:30 on 18 Azar 1405 in Tehran.
    n.reminder = Some(chrono::Utc.with_ymd_and_hms(2026, 12, 9, 11, 0, 0).unwrap());
    t.send(&n, &Address::Mobile("09121234567".into())).unwrap();
    let v: serde_json::Value = serde_json::from_str(&gw.last().body).unwrap();
    let text = v["text"].as_str().unwrap();
    assert!(text.contains("یادآوری"), "{text}");
    assert!(
        text.contains("تا 1405/09/18 14:30 است"),
        "the deadline: {text}"
    );
    assert!(text.contains(&n.tracking_code.to_string()), "{text}");
    assert!(!text.contains("اطلاع‌رسانی"), "not a round: {text}");
    assert!(text.chars().count() <= 201, "{}", text.chars().count());
}

#[test]
fn http_sms_form_body_basic_auth_and_url_placeholders() {
    let gw = FakeGateway::start();
    let mut c = sms_config(&gw);
    c.http.bearer_token = Secret::default();
    c.http.basic_username = "karpoosheh".into();
    c.http.basic_password = Secret::new("p@ss");
    c.http.url = format!("{}/send?receptor={{to}}&ref={{idempotency_key}}", gw.url);
    c.http.body_format = BodyFormat::Form;
    c.http.body_template = "sender={from}&message={title}".into();
    c.http.headers.insert("X-Api-Key".into(), Secret::new("k1"));
    let t = HttpTransport::sms(&c).unwrap();
    let n = note(MailboxKind::Person);
    t.send(&n, &Address::Mobile("09121234567".into())).unwrap();
    let seen = gw.last();
    // base64("karpoosheh:p@ss")
    assert_eq!(
        seen.header("Authorization"),
        Some("Basic a2FycG9vc2hlaDpwQHNz")
    );
    assert_eq!(seen.header("X-Api-Key"), Some("k1"));
    assert_eq!(
        seen.url,
        format!("/send?receptor=09121234567&ref={}", n.idempotency_key)
    );
    assert_eq!(
        seen.header("Content-Type"),
        Some("application/x-www-form-urlencoded")
    );
    let mut parts = seen.body.split('&');
    assert_eq!(parts.next(), Some("sender=4040"));
    let msg = parts.next().unwrap().strip_prefix("message=").unwrap();
    assert!(
        !msg.contains(' ') && !msg.contains('&') && !msg.contains('"'),
        "{msg}"
    );
    // Percent-decoding gives the Persian title back exactly.
    let bytes: Vec<u8> = {
        let b = msg.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                out.push(
                    u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap(), 16).unwrap(),
                );
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        out
    };
    assert_eq!(String::from_utf8(bytes).unwrap(), n.title);
}

#[test]
fn http_status_classification_against_a_real_server() {
    let gw = FakeGateway::start();
    let t = HttpTransport::sms(&sms_config(&gw)).unwrap();
    let n = note(MailboxKind::Person);
    let to = Address::Mobile("09121234567".into());
    gw.reply(Reply::Status(200));
    assert_eq!(t.send(&n, &to), Ok(()));
    gw.reply(Reply::Status(429));
    assert_eq!(
        t.send(&n, &to),
        Err(SendError::Transient("http_status_429".into()))
    );
    gw.reply(Reply::Status(500));
    assert_eq!(
        t.send(&n, &to),
        Err(SendError::Transient("http_status_500".into()))
    );
    gw.reply(Reply::Status(400));
    assert_eq!(
        t.send(&n, &to),
        Err(SendError::Permanent("http_status_400".into()))
    );
    gw.reply(Reply::Status(302));
    assert!(
        !t.send(&n, &to).unwrap_err().is_transient(),
        "redirects are not followed"
    );
    // A server that answers after the timeout (300 ms).
    gw.reply(Reply::Sleep(Duration::from_millis(1500)));
    let started = Instant::now();
    assert_eq!(t.send(&n, &to), Err(SendError::Transient("timeout".into())));
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
    // Nobody listening: transient; no address in the reason.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut c = sms_config(&gw);
    c.http.url = format!("http://127.0.0.1:{port}/send");
    let t = HttpTransport::sms(&c).unwrap();
    let e = t.send(&n, &to).unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(!e.to_string().contains("0912"), "{e}");
}

#[test]
fn http_sms_through_the_dispatcher_retries_a_503_then_is_accepted() {
    let gw = FakeGateway::start();
    let mut c = sms_config(&gw);
    c.policy = ChannelPolicy {
        timeout: ms(300),
        ..policy()
    };
    let d = Dispatcher::new(
        vec![(Arc::new(HttpTransport::sms(&c).unwrap()), c.policy.clone())],
        vec![ChannelKind::Sms],
    );
    gw.reply(Reply::Status(503));
    let n = note(MailboxKind::Person);
    assert_eq!(
        d.deliver(&n, &[sms()]),
        Delivery::Accepted {
            channel: ChannelKind::Sms,
            attempts: 2
        }
    );
    let seen = gw.seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].header("Idempotency-Key"),
        seen[1].header("Idempotency-Key"),
        "a retry carries the same key, so the gateway can dedupe"
    );
}

#[test]
fn push_webhook_posts_json_with_auth_header() {
    let gw = FakeGateway::start();
    let mut c = PushConfig::default();
    c.gateway = PushGateway::Webhook;
    c.policy.timeout = ms(300);
    c.webhook.url = format!("{}/hooks/notify", gw.url);
    c.webhook
        .headers
        .insert("X-Webhook-Secret".into(), Secret::new("s3cret"));
    let t = HttpTransport::push(&c).unwrap();
    assert_eq!((t.kind(), t.name()), (ChannelKind::Push, "push-webhook"));
    let n = note(MailboxKind::Person);
    t.send(&n, &Address::Push(person())).unwrap();
    let seen = gw.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.url, "/hooks/notify");
    assert_eq!(seen.header("X-Webhook-Secret"), Some("s3cret"));
    assert_eq!(
        seen.header("Idempotency-Key"),
        Some(n.idempotency_key.as_str())
    );
    let v: serde_json::Value = serde_json::from_str(&seen.body).expect("valid JSON");
    assert_eq!(v["mailbox_id"], person().to_string());
    assert_eq!(v["tracking_code"], n.tracking_code.to_string());
    assert_eq!(v["round"], 2);
    assert_eq!(v["agency"], "tax-org");
    assert_eq!(v["title"], n.title, "quotes and backslashes survive");
    assert_eq!(v["representative"], false);
    assert_eq!(v["idempotency_key"], n.idempotency_key);
    gw.reply(Reply::Status(503));
    assert!(t
        .send(&n, &Address::Push(person()))
        .unwrap_err()
        .is_transient());
    gw.reply(Reply::Status(404));
    assert!(!t
        .send(&n, &Address::Push(person()))
        .unwrap_err()
        .is_transient());
    assert_eq!(
        t.send(&n, &Address::Mobile("0912".into())),
        Err(SendError::Permanent("address_kind_mismatch".into()))
    );
}

// ---------------------------------------------------------------- SMTP

/// A minimal SMTP server for one session: answers `rcpt_reply` to RCPT
/// and hands back the DATA it received.
fn fake_smtp(rcpt_reply: &'static str) -> (u16, thread::JoinHandle<(Vec<String>, String)>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = thread::spawn(move || {
        let (stream, _) = l.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut w: TcpStream = stream.try_clone().unwrap();
        let mut r = BufReader::new(stream);
        let mut commands = Vec::new();
        let mut data = String::new();
        w.write_all(b"220 fake.smtp.test ESMTP\r\n").unwrap();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let cmd = line.trim_end().to_string();
            let verb = cmd
                .split([' ', ':'])
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            commands.push(cmd.clone());
            let reply: &str = match verb.as_str() {
                "EHLO" | "HELO" => "250-fake.smtp.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
                "MAIL" => "250 OK\r\n",
                "RCPT" => rcpt_reply,
                "DATA" => {
                    w.write_all(b"354 go ahead\r\n").unwrap();
                    loop {
                        let mut l = String::new();
                        if r.read_line(&mut l).unwrap_or(0) == 0 || l == ".\r\n" {
                            break;
                        }
                        data.push_str(&l);
                    }
                    "250 queued\r\n"
                }
                "QUIT" => {
                    w.write_all(b"221 bye\r\n").unwrap();
                    break;
                }
                "RSET" | "NOOP" => "250 OK\r\n",
                _ => "502 not implemented\r\n",
            };
            w.write_all(reply.as_bytes()).unwrap();
        }
        (commands, data)
    });
    (port, h)
}

fn smtp_config(port: u16) -> EmailConfig {
    let mut c = EmailConfig::default();
    c.gateway = EmailGateway::Smtp;
    c.policy.timeout = ms(2000);
    c.smtp.host = "127.0.0.1".into();
    c.smtp.port = port;
    c.smtp.tls = SmtpTls::None;
    c.smtp.hello_name = "karpoosheh.test".into();
    c
}

#[test]
fn smtp_delivers_with_message_id_and_idempotency_header() {
    let (port, server) = fake_smtp("250 OK\r\n");
    let t = SmtpTransport::new(&smtp_config(port)).unwrap();
    assert_eq!((t.kind(), t.name()), (ChannelKind::Email, "smtp"));
    let n = note(MailboxKind::Person);
    t.send(&n, &Address::Email("ali@example.ir".into()))
        .unwrap();
    let (commands, data) = server.join().unwrap();
    assert_eq!(commands[0], "EHLO karpoosheh.test");
    assert!(
        commands
            .iter()
            .any(|c| c == "MAIL FROM:<no-reply@karpoosheh.ir>"),
        "{commands:?}"
    );
    assert!(
        commands.iter().any(|c| c == "RCPT TO:<ali@example.ir>"),
        "{commands:?}"
    );
    let header = |name: &str| {
        data.lines()
            .find(|l| {
                l.to_ascii_lowercase()
                    .starts_with(&format!("{}:", name.to_ascii_lowercase()))
            })
            .map(|l| l[name.len() + 1..].trim().to_string())
    };
    assert_eq!(
        header("Message-ID"),
        Some(format!("<{}@karpoosheh.ir>", n.idempotency_key))
    );
    assert_eq!(
        header("X-Karpoosheh-Idempotency-Key"),
        Some(n.idempotency_key.clone())
    );
    assert_eq!(header("To"), Some("ali@example.ir".into()));
    assert!(header("From").unwrap().contains("no-reply@karpoosheh.ir"));
    assert!(
        header("Subject")
            .unwrap()
            .to_ascii_lowercase()
            .starts_with("=?utf-8?"),
        "Persian subject is RFC 2047 encoded: {data}"
    );
    assert!(header("Content-Type").unwrap().starts_with("text/plain"));
}

#[test]
fn smtp_rejections_are_classified() {
    let (port, server) = fake_smtp("550 no such user\r\n");
    let t = SmtpTransport::new(&smtp_config(port)).unwrap();
    let n = note(MailboxKind::Person);
    assert_eq!(
        t.send(&n, &Address::Email("ali@example.ir".into())),
        Err(SendError::Permanent("smtp_550".into()))
    );
    let _ = server.join();
    let (port, server) = fake_smtp("451 try later\r\n");
    let t = SmtpTransport::new(&smtp_config(port)).unwrap();
    assert_eq!(
        t.send(&n, &Address::Email("ali@example.ir".into())),
        Err(SendError::Transient("smtp_451".into()))
    );
    let _ = server.join();
    // Nobody listening.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let t = SmtpTransport::new(&smtp_config(port)).unwrap();
    assert!(t
        .send(&n, &Address::Email("ali@example.ir".into()))
        .unwrap_err()
        .is_transient());
    // The .ir rule holds in the transport too, before any connection.
    assert_eq!(
        t.send(&n, &Address::Email("ali@gmail.com".into())),
        Err(SendError::Permanent("email_not_ir".into()))
    );
}

// ---------------------------------------------------------------- metrics

#[test]
fn channel_metrics_are_emitted_with_bounded_labels_and_no_personal_data() {
    // A recorder local to this thread: other tests running in parallel
    // cannot disturb the values.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[0.001, 0.01, 0.1, 1.0])
        .unwrap()
        .build_recorder();
    let handle = recorder.handle();
    let n = note(MailboxKind::Person);
    metrics::with_local_recorder(&recorder, || {
        let s = Scripted::new(ChannelKind::Sms, transient()).then(Ok(()));
        let s_pol = ChannelPolicy {
            max_attempts: 2,
            breaker_failures: 2,
            breaker_cooldown: HumanDuration(Duration::from_secs(60)),
            ..policy()
        };
        let p = Scripted::new(ChannelKind::Push, permanent());
        let p_pol = ChannelPolicy {
            rate_per_sec: 5.0,
            burst: 1,
            rate_limit_wait: ms(300),
            ..policy()
        };
        let e = Scripted::new(ChannelKind::Email, Ok(()));
        let e_pol = ChannelPolicy {
            rate_per_sec: 1.0,
            burst: 1,
            rate_limit_wait: ms(10),
            ..policy()
        };
        let d = dispatcher(&[(s, s_pol), (p, p_pol), (e, e_pol)]);
        let all = [sms(), push(), email("ali@example.ir")];
        // SMS accepts.
        assert!(d.deliver(&n, &[sms()]).is_accepted());
        // SMS fails twice (one retry) and its breaker opens; push refuses
        // for good (burst token); e-mail accepts (burst token).
        assert_eq!(
            d.deliver(&n, &all),
            Delivery::Accepted {
                channel: ChannelKind::Email,
                attempts: 4
            }
        );
        // SMS skipped (open); push waits ~200 ms for a token, refused;
        // e-mail would wait ~1 s > 10 ms: saturated.
        assert_eq!(
            d.deliver(&n, &all),
            Delivery::Failed {
                reason: "all_channels_failed",
                transient: true,
                attempts: 1
            }
        );
    });
    let text = handle.render();
    let missing: Vec<_> = crate::metric_names::CHANNEL
        .iter()
        .filter(|m| !text.contains(*m))
        .collect();
    assert!(missing.is_empty(), "never emitted: {missing:?}\n{text}");
    for line in [
        r#"karpoosheh_channel_attempts_total{channel="sms",gateway="scripted",outcome="accepted"} 1"#,
        r#"karpoosheh_channel_attempts_total{channel="sms",gateway="scripted",outcome="transient"} 2"#,
        r#"karpoosheh_channel_attempts_total{channel="push",gateway="scripted",outcome="permanent"} 2"#,
        r#"karpoosheh_channel_retries_total{channel="sms"} 1"#,
        r#"karpoosheh_channel_circuit_state{channel="sms"} 2"#,
        r#"karpoosheh_channel_circuit_opened_total{channel="sms"} 1"#,
        r#"karpoosheh_channel_rate_limit_rejected_total{channel="email"} 1"#,
        r#"karpoosheh_channel_gateway_info{channel="push",gateway="scripted"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line}\n{text}");
    }
    let waited: f64 = text
        .lines()
        .find(|l| {
            l.starts_with(r#"karpoosheh_channel_rate_limit_wait_seconds_sum{channel="push"}"#)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("push waited for a token");
    assert!((0.1..0.35).contains(&waited), "push waited {waited} s");
    // One wait, as a histogram (a typed counterpart Prometheus accepts);
    // SMS never waited, yet its series is there from the start.
    for line in [
        r#"karpoosheh_channel_rate_limit_wait_seconds_count{channel="push"} 1"#,
        r#"karpoosheh_channel_rate_limit_wait_seconds_count{channel="sms"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
    }
    assert!(text.contains("karpoosheh_channel_send_seconds_bucket"));
    for pd in [
        "0912",
        "ali@",
        &person().to_string(),
        &n.tracking_code.to_string(),
    ] {
        assert!(!text.contains(pd), "{pd} leaked into metrics");
    }
}
