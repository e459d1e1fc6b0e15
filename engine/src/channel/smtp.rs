//! E-mail over SMTP (`lettre`, blocking). One SMTP session per attempt;
//! the idempotency key goes into the Message-ID and an
//! `X-Karpoosheh-Idempotency-Key` header, so a relay or the recipient's
//! mail system can drop a resend. SMTP 4xx and connection errors are
//! transient, 5xx permanent. Natural persons are only e-mailed on `.ir`
//! domains (art. 20), checked here as well as in the dispatcher.

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Message, Transport as _};

use super::config::{EmailConfig, SmtpTls};
use super::template::{text_value, Escape, Template, TEXT_FIELDS};
use super::{
    email_allowed, Address, ChannelError, ChannelKind, Notification, SendError, Transport,
};

/// Header carrying the idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "X-Karpoosheh-Idempotency-Key";

pub struct SmtpTransport {
    inner: lettre::SmtpTransport,
    from: Mailbox,
    /// Right-hand side of generated Message-IDs: the From domain.
    id_domain: String,
    subject: Template,
    text: Template,
    /// A reminder's subject and text (response deadlines).
    reminder_subject: Template,
    reminder: Template,
}

fn err(message: String) -> ChannelError {
    ChannelError::Transport {
        channel: "email",
        gateway: "smtp",
        message,
    }
}

impl SmtpTransport {
    pub fn new(cfg: &EmailConfig) -> Result<SmtpTransport, ChannelError> {
        let s = &cfg.smtp;
        let from: Mailbox = s
            .from
            .parse()
            .map_err(|e| err(format!("smtp.from is not an address: {e}")))?;
        let tls = match s.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls | SmtpTls::Tls => {
                let params = TlsParameters::new(s.host.clone())
                    .map_err(|e| err(format!("TLS set-up: {e}")))?;
                if s.tls == SmtpTls::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut b = lettre::SmtpTransport::builder_dangerous(s.host.clone())
            .port(s.port)
            .tls(tls)
            .timeout(Some(cfg.policy.timeout.0));
        if !s.hello_name.is_empty() {
            b = b.hello_name(ClientId::Domain(s.hello_name.clone()));
        }
        if !s.username.is_empty() {
            b = b.credentials(Credentials::new(
                s.username.clone(),
                s.password.expose().to_owned(),
            ));
        }
        Ok(SmtpTransport {
            inner: b.build(),
            id_domain: from.email.domain().to_owned(),
            from,
            subject: Template::parse(&cfg.subject_template, TEXT_FIELDS)
                .map_err(|e| err(format!("subject_template: {e}")))?,
            text: Template::parse(&cfg.text_template, TEXT_FIELDS)
                .map_err(|e| err(format!("text_template: {e}")))?,
            reminder_subject: Template::parse(&cfg.reminder_subject_template, TEXT_FIELDS)
                .map_err(|e| err(format!("reminder_subject_template: {e}")))?,
            reminder: Template::parse(&cfg.reminder_template, TEXT_FIELDS)
                .map_err(|e| err(format!("reminder_template: {e}")))?,
        })
    }
}

/// The idempotency key made safe for a Message-ID's left-hand side.
fn id_part(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    if e.is_permanent() {
        let code = e.status().map(|c| c.to_string()).unwrap_or_default();
        SendError::Permanent(format!("smtp_{code}").trim_end_matches('_').to_owned())
    } else if e.is_transient() {
        let code = e.status().map(|c| c.to_string()).unwrap_or_default();
        SendError::Transient(format!("smtp_{code}").trim_end_matches('_').to_owned())
    } else if e.is_timeout() {
        SendError::Transient("timeout".into())
    } else if e.is_tls() {
        SendError::Transient("tls_error".into())
    } else {
        SendError::Transient("connection_failed".into())
    }
}

impl Transport for SmtpTransport {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    fn name(&self) -> &'static str {
        "smtp"
    }

    fn send(&self, n: &Notification, to: &Address) -> Result<(), SendError> {
        let Address::Email(addr) = to else {
            return Err(SendError::Permanent("address_kind_mismatch".into()));
        };
        email_allowed(n.recipient_kind, addr)?;
        let to: Mailbox = addr
            .parse()
            .map_err(|_| SendError::Permanent("email_malformed".into()))?;
        let (subject, text) = if n.reminder.is_some() {
            (&self.reminder_subject, &self.reminder)
        } else {
            (&self.subject, &self.text)
        };
        let subject = subject.render(Escape::None, |f| text_value(n, f));
        let mut text = text.render(Escape::None, |f| text_value(n, f));
        text.push_str("\r\n");
        let msg = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!(
                "<{}@{}>",
                id_part(&n.idempotency_key),
                self.id_domain
            )))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str(IDEMPOTENCY_HEADER),
                n.idempotency_key.clone(),
            ))
            .header(ContentType::TEXT_PLAIN)
            .body(text)
            .map_err(|_| SendError::Permanent("email_build_failed".into()))?;
        self.inner.send(&msg).map(|_| ()).map_err(|e| classify(&e))
    }
}
