//! `[channels]`: which gateways notify people, and how hard each may be
//! pushed. The defaults need no file: every channel uses the *simulated*
//! gateway, so `karpoosheh demo` runs anywhere; production switches to
//! `http` (SMS), `smtp` (e-mail) and `webhook` (push).

use std::collections::BTreeMap;
use std::time::Duration;

use karpoosheh_schemas::HumanDuration;
use serde::{Deserialize, Serialize};

use super::policy::ChannelPolicy;
use super::template::{Template, BODY_FIELDS, TEXT_FIELDS};
use super::{channel_label, ChannelKind};
use crate::secret::Secret;

fn dur(ms: u64) -> HumanDuration {
    HumanDuration(Duration::from_millis(ms))
}

/// The default SMS / push text. Persian, one or two SMS segments: who
/// sent it, the tracking code, which of the three rounds, and what to do.
pub const DEFAULT_TEXT: &str = "کارپوشه ملی: ابلاغیه جدید از {agency}{for_representative}، کد رهگیری {tracking_code}، اطلاع‌رسانی {round} از {rounds}. برای مشاهده و تأیید وارد کارپوشه شوید.";

/// The default reminder text (a notice's response deadline, `respond_by`,
/// is near and it was neither opened nor confirmed). The inbox app shows
/// the deadline itself.
pub const DEFAULT_REMINDER_TEXT: &str = "کارپوشه ملی: یادآوری — مهلت پاسخ به ابلاغیه {agency}{for_representative} با کد رهگیری {tracking_code} تا {respond_by} است. برای مشاهده و تأیید وارد کارپوشه شوید.";

/// The default e-mail subject of a reminder.
pub const DEFAULT_REMINDER_SUBJECT: &str =
    "یادآوری مهلت ابلاغیه در کارپوشه ملی — کد رهگیری {tracking_code}";

/// The default e-mail subject.
pub const DEFAULT_SUBJECT: &str = "ابلاغیه جدید در کارپوشه ملی — کد رهگیری {tracking_code}";

/// The SMS gateway's request body when `body_template` is empty.
pub const DEFAULT_SMS_BODY: &str =
    r#"{"from":"{from}","to":"{to}","text":"{text}","idempotency_key":"{idempotency_key}"}"#;

/// The push webhook's request body when `body_template` is empty.
pub const DEFAULT_PUSH_BODY: &str = r#"{"mailbox_id":"{to}","tracking_code":"{tracking_code}","round":{round},"agency":"{agency}","title":"{title}","representative":{representative},"text":"{text}","idempotency_key":"{idempotency_key}"}"#;

/// `[channels]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelsConfig {
    /// The order channels are tried in for one person; the first that
    /// accepts wins.
    pub order: Vec<ChannelKind>,
    /// `karpoosheh run` refuses to start the follow-up while an enabled
    /// channel uses the simulated gateway, unless this is true: a
    /// simulated gateway notifies nobody, yet agencies are sent
    /// `notification_sent` for it. For test nodes; `karpoosheh demo`
    /// always simulates.
    pub allow_simulated: bool,
    pub sms: SmsConfig,
    pub email: EmailConfig,
    pub push: PushConfig,
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        ChannelsConfig {
            // SMS first: every active person has a verified mobile and it is
            // read within minutes; push is cheap but needs the app; e-mail
            // is the slowest to be read.
            order: vec![ChannelKind::Sms, ChannelKind::Push, ChannelKind::Email],
            allow_simulated: false,
            sms: SmsConfig::default(),
            email: EmailConfig::default(),
            push: PushConfig::default(),
        }
    }
}

/// `[channels.sms]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsConfig {
    pub enabled: bool,
    pub gateway: SmsGateway,
    /// The sender line (1401 art. 26: the 4040 short code).
    pub sender: String,
    /// The SMS text; placeholders `{agency}` `{tracking_code}` `{round}`
    /// `{rounds}` `{title}` `{for_representative}`.
    pub text_template: String,
    /// The text of a reminder before a response deadline; the same
    /// placeholders.
    pub reminder_template: String,
    pub policy: ChannelPolicy,
    pub http: HttpGatewayConfig,
    pub simulated: SimulatedConfig,
}

impl Default for SmsConfig {
    fn default() -> Self {
        SmsConfig {
            enabled: true,
            // Runs anywhere; production sets "http".
            gateway: SmsGateway::Simulated,
            sender: "4040".into(),
            text_template: DEFAULT_TEXT.into(),
            reminder_template: DEFAULT_REMINDER_TEXT.into(),
            policy: ChannelPolicy::default(),
            http: HttpGatewayConfig::default(),
            simulated: SimulatedConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmsGateway {
    Simulated,
    Http,
}

/// `[channels.email]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    pub enabled: bool,
    pub gateway: EmailGateway,
    pub subject_template: String,
    pub text_template: String,
    /// A reminder's subject and text (response deadlines).
    pub reminder_subject_template: String,
    pub reminder_template: String,
    pub policy: ChannelPolicy,
    pub smtp: SmtpConfig,
    pub simulated: SimulatedConfig,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            enabled: true,
            gateway: EmailGateway::Simulated,
            subject_template: DEFAULT_SUBJECT.into(),
            text_template: DEFAULT_TEXT.into(),
            reminder_subject_template: DEFAULT_REMINDER_SUBJECT.into(),
            reminder_template: DEFAULT_REMINDER_TEXT.into(),
            policy: ChannelPolicy::default(),
            smtp: SmtpConfig::default(),
            simulated: SimulatedConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailGateway {
    Simulated,
    Smtp,
}

/// `[channels.push]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    pub enabled: bool,
    pub gateway: PushGateway,
    /// The `{text}` of the webhook body (what the app shows).
    pub text_template: String,
    /// The `{text}` of a reminder before a response deadline.
    pub reminder_template: String,
    pub policy: ChannelPolicy,
    pub webhook: HttpGatewayConfig,
    pub simulated: SimulatedConfig,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            enabled: true,
            gateway: PushGateway::Simulated,
            text_template: DEFAULT_TEXT.into(),
            reminder_template: DEFAULT_REMINDER_TEXT.into(),
            policy: ChannelPolicy::default(),
            webhook: HttpGatewayConfig::default(),
            simulated: SimulatedConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushGateway {
    Simulated,
    Webhook,
}

/// How placeholder values in an HTTP body are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// Values are JSON-string-escaped (the template supplies the quotes).
    Json,
    /// Values are percent-encoded (`a=b&c=d` bodies).
    Form,
}

/// An HTTP gateway: `[channels.sms.http]` and `[channels.push.webhook]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpGatewayConfig {
    /// `http://` or `https://` URL; may contain placeholders, which are
    /// percent-encoded (for query-string gateways).
    pub url: String,
    /// `POST`, `PUT` or `GET` (GET sends no body).
    pub method: String,
    pub body_format: BodyFormat,
    /// Empty means the channel's built-in body (see the docs).
    pub body_template: String,
    /// Empty means derived from `body_format`.
    pub content_type: String,
    /// Header carrying the idempotency key; empty to send none.
    pub idempotency_header: String,
    /// `Authorization: Bearer <token>` when set.
    pub bearer_token: Secret,
    /// HTTP basic auth when `basic_username` is set.
    pub basic_username: String,
    pub basic_password: Secret,
    /// Extra headers (e.g. an API key); values are masked when printed.
    pub headers: BTreeMap<String, Secret>,
}

impl Default for HttpGatewayConfig {
    fn default() -> Self {
        HttpGatewayConfig {
            url: String::new(),
            method: "POST".into(),
            body_format: BodyFormat::Json,
            body_template: String::new(),
            content_type: String::new(),
            // The de-facto standard header name (IETF draft).
            idempotency_header: "Idempotency-Key".into(),
            bearer_token: Secret::default(),
            basic_username: String::new(),
            basic_password: Secret::default(),
            headers: BTreeMap::new(),
        }
    }
}

impl HttpGatewayConfig {
    fn validate(&self, at: &str, default_body: &str) -> Result<(), String> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!(
                "{at}.url must be an http:// or https:// URL (set it, or use the simulated gateway)"
            ));
        }
        Template::parse(&self.url, BODY_FIELDS).map_err(|e| format!("{at}.url: {e}"))?;
        if !matches!(self.method.as_str(), "POST" | "PUT" | "GET") {
            return Err(format!("{at}.method must be POST, PUT or GET"));
        }
        let body = if self.body_template.is_empty() {
            default_body
        } else {
            &self.body_template
        };
        Template::parse(body, BODY_FIELDS).map_err(|e| format!("{at}.body_template: {e}"))?;
        if !self.bearer_token.is_empty() && !self.basic_username.is_empty() {
            return Err(format!(
                "{at}: set bearer_token or basic_username/basic_password, not both"
            ));
        }
        for name in self.headers.keys().chain(Some(&self.idempotency_header)) {
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!("{at}: {name:?} is not a valid header name"));
            }
        }
        Ok(())
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS; refused if not offered.
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
    /// No encryption: a trusted relay on localhost or a private network.
    None,
}

/// `[channels.email.smtp]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// Empty for no authentication.
    pub username: String,
    pub password: Secret,
    /// The From address, e.g. `Karpoosheh <no-reply@example.ir>`.
    pub from: String,
    /// Name sent in EHLO; empty means this machine's host name.
    pub hello_name: String,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: "localhost".into(),
            // Submission port with STARTTLS: what relays expect today.
            port: 587,
            tls: SmtpTls::Starttls,
            username: String::new(),
            password: Secret::default(),
            from: "Karpoosheh <no-reply@karpoosheh.ir>".into(),
            hello_name: String::new(),
        }
    }
}

/// A simulated gateway (`[channels.<channel>.simulated]`): sends nothing,
/// for the demo and load tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatedConfig {
    /// Mean time a send takes; `"0s"` with no jitter sends instantly
    /// (benchmarks).
    pub latency: HumanDuration,
    /// Uniform spread around the mean (± this much).
    pub latency_jitter: HumanDuration,
    /// Share of sends failing transiently, 0-1.
    pub transient_failure_rate: f64,
    /// Share of sends failing permanently, 0-1.
    pub permanent_failure_rate: f64,
    /// A degraded window starts this often; `"0s"` disables them.
    pub slowdown_every: HumanDuration,
    /// How long a degraded window lasts.
    pub slowdown_for: HumanDuration,
    /// Latency multiplier inside a degraded window.
    pub slowdown_factor: f64,
    /// Transient failure rate inside a degraded window, 0-1.
    pub slowdown_failure_rate: f64,
    /// Random seed; 0 picks one at start-up. A fixed seed makes a
    /// single-threaded run repeatable.
    pub seed: u64,
}

impl Default for SimulatedConfig {
    fn default() -> Self {
        SimulatedConfig {
            // Roughly a real gateway's answer time.
            latency: dur(20),
            latency_jitter: dur(10),
            // Enough failures that the demo shows retries.
            transient_failure_rate: 0.02,
            permanent_failure_rate: 0.002,
            // A short outage every few minutes shows the breaker and the
            // fallback at work in the demo.
            slowdown_every: dur(180_000),
            slowdown_for: dur(15_000),
            slowdown_factor: 10.0,
            slowdown_failure_rate: 0.5,
            seed: 0,
        }
    }
}

impl SimulatedConfig {
    /// Instant, never failing: for throughput benchmarks.
    pub fn zero_latency() -> SimulatedConfig {
        SimulatedConfig {
            latency: dur(0),
            latency_jitter: dur(0),
            transient_failure_rate: 0.0,
            permanent_failure_rate: 0.0,
            slowdown_every: dur(0),
            ..SimulatedConfig::default()
        }
    }

    fn validate(&self, at: &str) -> Result<(), String> {
        let rate = |v: f64, name: &str| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{at}.{name} must be between 0 and 1"))
            }
        };
        rate(self.transient_failure_rate, "transient_failure_rate")?;
        rate(self.permanent_failure_rate, "permanent_failure_rate")?;
        rate(self.slowdown_failure_rate, "slowdown_failure_rate")?;
        if self.transient_failure_rate + self.permanent_failure_rate > 1.0 {
            return Err(format!(
                "{at}: transient_failure_rate + permanent_failure_rate must not exceed 1"
            ));
        }
        if !self.slowdown_factor.is_finite() || self.slowdown_factor < 1.0 {
            return Err(format!("{at}.slowdown_factor must be at least 1"));
        }
        if !self.slowdown_every.0.is_zero() && self.slowdown_for.0 >= self.slowdown_every.0 {
            return Err(format!(
                "{at}.slowdown_for must be shorter than {at}.slowdown_every"
            ));
        }
        Ok(())
    }
}

impl ChannelsConfig {
    /// Whether `kind` is enabled.
    pub fn enabled(&self, kind: ChannelKind) -> bool {
        match kind {
            ChannelKind::Sms => self.sms.enabled,
            ChannelKind::Email => self.email.enabled,
            ChannelKind::Push => self.push.enabled,
        }
    }

    /// Gateways that work but send credentials, phone numbers or e-mail
    /// addresses unencrypted to another machine, in words for a warning.
    pub fn insecure(&self) -> Vec<String> {
        let mut out = Vec::new();
        let local = |host: &str| {
            let h = host.trim_start_matches('[').trim_end_matches(']');
            h == "localhost"
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        };
        let http = |at: &str, g: &HttpGatewayConfig, out: &mut Vec<String>| {
            if let Some(rest) = g.url.strip_prefix("http://") {
                let host = rest.split(['/', '?']).next().unwrap_or("");
                let host = host.rsplit_once(':').map_or(host, |(h, p)| {
                    if p.chars().all(|c| c.is_ascii_digit()) {
                        h
                    } else {
                        host
                    }
                });
                if !local(host) {
                    out.push(format!(
                        "{at}: the gateway is plain http:// on another machine: every recipient's address and message{} cross the network unencrypted; use https://",
                        if g.bearer_token.is_empty() && g.basic_password.is_empty() && g.headers.is_empty() { "" } else { ", and the gateway's credentials," }
                    ));
                }
            }
        };
        if self.sms.enabled && self.sms.gateway == SmsGateway::Http {
            http("channels.sms.http", &self.sms.http, &mut out);
        }
        if self.push.enabled && self.push.gateway == PushGateway::Webhook {
            http("channels.push.webhook", &self.push.webhook, &mut out);
        }
        let smtp = &self.email.smtp;
        if self.email.enabled
            && self.email.gateway == EmailGateway::Smtp
            && smtp.tls == SmtpTls::None
            && !local(&smtp.host)
        {
            out.push(format!(
                "channels.email.smtp: no TLS to {}: e-mail addresses, messages{} cross the network unencrypted; use starttls or tls",
                smtp.host,
                if smtp.password.is_empty() { "" } else { " and the relay password" }
            ));
        }
        out
    }

    /// The enabled channels whose gateway is the simulated one, as
    /// `channels.<channel>.gateway`.
    pub fn simulated_in_use(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.sms.enabled && self.sms.gateway == SmsGateway::Simulated {
            out.push("channels.sms.gateway".to_owned());
        }
        if self.email.enabled && self.email.gateway == EmailGateway::Simulated {
            out.push("channels.email.gateway".to_owned());
        }
        if self.push.enabled && self.push.gateway == PushGateway::Simulated {
            out.push("channels.push.gateway".to_owned());
        }
        out
    }

    /// For a node that notifies people for real (`karpoosheh run` with
    /// the follow-up on): refuses a simulated gateway on an enabled
    /// channel unless `allow_simulated` says so, naming what to change.
    pub fn check_live(&self) -> Result<(), String> {
        let simulated = self.simulated_in_use();
        if simulated.is_empty() || self.allow_simulated {
            return Ok(());
        }
        Err(format!(
            "{} = \"simulated\": a simulated gateway notifies nobody, yet agencies would be sent notification_sent for it. \
             Name the real gateway (channels.sms.gateway = \"http\", channels.email.gateway = \"smtp\", channels.push.gateway = \"webhook\", with their addresses), \
             disable the channel (channels.<channel>.enabled = false), or, on a test node only, set channels.allow_simulated = true",
            simulated.join(" and ")
        ))
    }

    /// Refuses combinations that cannot work, naming the option to change.
    pub fn validate(&self) -> Result<(), String> {
        for (i, k) in self.order.iter().enumerate() {
            if self.order[..i].contains(k) {
                return Err(format!("channels.order lists {} twice", channel_label(*k)));
            }
        }
        for k in [ChannelKind::Sms, ChannelKind::Email, ChannelKind::Push] {
            if self.enabled(k) && !self.order.contains(&k) {
                return Err(format!(
                    "channels.{0} is enabled but not in channels.order: add \"{0}\" there or set channels.{0}.enabled = false",
                    channel_label(k)
                ));
            }
        }
        let s = &self.sms;
        if s.enabled {
            s.policy.validate("channels.sms.policy")?;
            Template::parse(&s.text_template, TEXT_FIELDS)
                .map_err(|e| format!("channels.sms.text_template: {e}"))?;
            Template::parse(&s.reminder_template, TEXT_FIELDS)
                .map_err(|e| format!("channels.sms.reminder_template: {e}"))?;
            if s.sender.is_empty() {
                return Err("channels.sms.sender must be set (the 4040 short code)".into());
            }
            match s.gateway {
                SmsGateway::Http => s.http.validate("channels.sms.http", DEFAULT_SMS_BODY)?,
                SmsGateway::Simulated => s.simulated.validate("channels.sms.simulated")?,
            }
        }
        let e = &self.email;
        if e.enabled {
            e.policy.validate("channels.email.policy")?;
            Template::parse(&e.text_template, TEXT_FIELDS)
                .map_err(|x| format!("channels.email.text_template: {x}"))?;
            Template::parse(&e.subject_template, TEXT_FIELDS)
                .map_err(|x| format!("channels.email.subject_template: {x}"))?;
            Template::parse(&e.reminder_template, TEXT_FIELDS)
                .map_err(|x| format!("channels.email.reminder_template: {x}"))?;
            Template::parse(&e.reminder_subject_template, TEXT_FIELDS)
                .map_err(|x| format!("channels.email.reminder_subject_template: {x}"))?;
            match e.gateway {
                EmailGateway::Smtp => {
                    if e.smtp.host.is_empty() || e.smtp.port == 0 {
                        return Err("channels.email.smtp.host and port must be set".into());
                    }
                    if e.smtp.from.parse::<lettre::message::Mailbox>().is_err() {
                        return Err(format!(
                            "channels.email.smtp.from {:?} is not an address (e.g. \"Karpoosheh <no-reply@example.ir>\")",
                            e.smtp.from
                        ));
                    }
                    if e.smtp.username.is_empty() != e.smtp.password.is_empty() {
                        return Err(
                            "channels.email.smtp.username and password are set together".into()
                        );
                    }
                }
                EmailGateway::Simulated => e.simulated.validate("channels.email.simulated")?,
            }
        }
        let p = &self.push;
        if p.enabled {
            p.policy.validate("channels.push.policy")?;
            Template::parse(&p.text_template, TEXT_FIELDS)
                .map_err(|e| format!("channels.push.text_template: {e}"))?;
            Template::parse(&p.reminder_template, TEXT_FIELDS)
                .map_err(|e| format!("channels.push.reminder_template: {e}"))?;
            match p.gateway {
                PushGateway::Webhook => p
                    .webhook
                    .validate("channels.push.webhook", DEFAULT_PUSH_BODY)?,
                PushGateway::Simulated => p.simulated.validate("channels.push.simulated")?,
            }
        }
        Ok(())
    }
}
