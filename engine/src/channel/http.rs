//! HTTP gateways: SMS through an operator's HTTP API (`http-sms`) and
//! push/messenger through a webhook (`push-webhook`). One request per
//! attempt, built from templates; the status decides the outcome:
//! 2xx accepted; 408, 429, 5xx, timeouts and connection errors transient;
//! any other status permanent (redirects are not followed: a gateway that
//! moved is a configuration error, not something to retry).

use std::time::Duration;

use base64::Engine as _;
use ureq::Agent;

use super::config::{
    BodyFormat, HttpGatewayConfig, PushConfig, SmsConfig, DEFAULT_PUSH_BODY, DEFAULT_SMS_BODY,
};
use super::template::{text_value, Escape, Template, BODY_FIELDS, TEXT_FIELDS};
use super::{Address, ChannelError, ChannelKind, Notification, SendError, Transport};

/// An HTTP gateway transport.
pub struct HttpTransport {
    kind: ChannelKind,
    name: &'static str,
    agent: Agent,
    method: String,
    url: Template,
    body: Template,
    text: Template,
    /// The text of a reminder (response deadlines).
    reminder: Template,
    escape: Escape,
    sender: String,
    /// Headers sent on every request, auth included (values are secrets).
    headers: Vec<(String, String)>,
    idempotency_header: String,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No URL (it may carry a key) and no headers.
        f.debug_struct("HttpTransport")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn setup_err(kind: ChannelKind, name: &'static str, message: String) -> ChannelError {
    ChannelError::Transport {
        channel: super::channel_label(kind),
        gateway: name,
        message,
    }
}

impl HttpTransport {
    /// The SMS gateway of `[channels.sms]` (`gateway = "http"`).
    pub fn sms(cfg: &SmsConfig) -> Result<HttpTransport, ChannelError> {
        HttpTransport::build(
            ChannelKind::Sms,
            "http-sms",
            &cfg.http,
            DEFAULT_SMS_BODY,
            [&cfg.text_template, &cfg.reminder_template],
            &cfg.sender,
            cfg.policy.timeout.0,
        )
    }

    /// The push webhook of `[channels.push]` (`gateway = "webhook"`).
    pub fn push(cfg: &PushConfig) -> Result<HttpTransport, ChannelError> {
        HttpTransport::build(
            ChannelKind::Push,
            "push-webhook",
            &cfg.webhook,
            DEFAULT_PUSH_BODY,
            [&cfg.text_template, &cfg.reminder_template],
            "",
            cfg.policy.timeout.0,
        )
    }

    fn build(
        kind: ChannelKind,
        name: &'static str,
        cfg: &HttpGatewayConfig,
        default_body: &str,
        [text_template, reminder_template]: [&str; 2],
        sender: &str,
        timeout: Duration,
    ) -> Result<HttpTransport, ChannelError> {
        let err = |m: String| setup_err(kind, name, m);
        let body_text = if cfg.body_template.is_empty() {
            default_body
        } else {
            &cfg.body_template
        };
        let url = Template::parse(&cfg.url, BODY_FIELDS).map_err(|e| err(e.to_string()))?;
        let body = Template::parse(body_text, BODY_FIELDS).map_err(|e| err(e.to_string()))?;
        let text = Template::parse(text_template, TEXT_FIELDS).map_err(|e| err(e.to_string()))?;
        let reminder =
            Template::parse(reminder_template, TEXT_FIELDS).map_err(|e| err(e.to_string()))?;
        let (escape, default_ct) = match cfg.body_format {
            BodyFormat::Json => (Escape::JsonString, "application/json; charset=utf-8"),
            BodyFormat::Form => (Escape::Url, "application/x-www-form-urlencoded"),
        };
        let mut headers = Vec::new();
        if cfg.method != "GET" {
            let ct = if cfg.content_type.is_empty() {
                default_ct
            } else {
                &cfg.content_type
            };
            headers.push(("Content-Type".to_owned(), ct.to_owned()));
        }
        if !cfg.bearer_token.is_empty() {
            headers.push((
                "Authorization".into(),
                format!("Bearer {}", cfg.bearer_token.expose()),
            ));
        } else if !cfg.basic_username.is_empty() {
            let raw = format!("{}:{}", cfg.basic_username, cfg.basic_password.expose());
            headers.push((
                "Authorization".into(),
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                ),
            ));
        }
        for (k, v) in &cfg.headers {
            headers.push((k.clone(), v.expose().to_owned()));
        }
        let agent: Agent = Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(concat!("karpoosheh/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(HttpTransport {
            kind,
            name,
            agent,
            method: cfg.method.clone(),
            url,
            body,
            text,
            reminder,
            escape,
            sender: sender.to_owned(),
            headers,
            idempotency_header: cfg.idempotency_header.clone(),
        })
    }

    fn value(&self, n: &Notification, to: &str, text: &str, field: &str) -> String {
        match field {
            "to" => to.to_owned(),
            "from" => self.sender.clone(),
            "text" => text.to_owned(),
            "idempotency_key" => n.idempotency_key.clone(),
            "tracking_code" => n.tracking_code.to_string(),
            "round" => n.round.to_string(),
            "agency" => n.agency.to_string(),
            "title" => n.title.clone(),
            "representative" => n.to_representative.to_string(),
            _ => String::new(),
        }
    }
}

/// What an HTTP status means for a notification.
pub fn classify_status(status: u16) -> Result<(), SendError> {
    match status {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(SendError::Transient(format!("http_status_{status}"))),
        _ => Err(SendError::Permanent(format!("http_status_{status}"))),
    }
}

fn classify_client_error(e: &ureq::Error) -> SendError {
    use ureq::Error as E;
    let reason = match e {
        E::Timeout(_) => "timeout",
        E::HostNotFound => "host_not_found",
        E::ConnectionFailed => "connection_failed",
        E::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => "timeout",
        E::Io(_) => "io_error",
        E::Tls(_) | E::Pem(_) | E::Rustls(_) => "tls_error",
        E::BadUri(_) | E::Http(_) | E::InvalidProxyUrl => {
            return SendError::Permanent("bad_request_url".into())
        }
        _ => "http_client_error",
    };
    SendError::Transient(reason.into())
}

impl Transport for HttpTransport {
    fn kind(&self) -> ChannelKind {
        self.kind
    }

    fn name(&self) -> &'static str {
        self.name
    }

    fn send(&self, n: &Notification, to: &Address) -> Result<(), SendError> {
        let to = match (self.kind, to) {
            (ChannelKind::Sms, Address::Mobile(m)) => m.clone(),
            (ChannelKind::Push, Address::Push(id)) => id.to_string(),
            _ => return Err(SendError::Permanent("address_kind_mismatch".into())),
        };
        let template = if n.reminder.is_some() {
            &self.reminder
        } else {
            &self.text
        };
        let text = template.render(Escape::None, |f| text_value(n, f));
        let url = self
            .url
            .render(Escape::Url, |f| self.value(n, &to, &text, f));
        let mut req = ureq::http::Request::builder()
            .method(self.method.as_str())
            .uri(&url);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if !self.idempotency_header.is_empty() {
            req = req.header(&self.idempotency_header, &n.idempotency_key);
        }
        let body = if self.method == "GET" {
            Vec::new()
        } else {
            self.body
                .render(self.escape, |f| self.value(n, &to, &text, f))
                .into_bytes()
        };
        let req = req
            .body(body)
            .map_err(|_| SendError::Permanent("bad_request_url".into()))?;
        match self.agent.run(req) {
            Ok(mut resp) => {
                // Drain a little of the body so the connection can be reused.
                let _ = resp.body_mut().with_config().limit(64 * 1024).read_to_vec();
                classify_status(resp.status().as_u16())
            }
            Err(e) => Err(classify_client_error(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classification() {
        assert!(classify_status(200).is_ok());
        assert!(classify_status(202).is_ok());
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(classify_status(s).unwrap_err().is_transient(), "{s}");
        }
        for s in [301, 400, 401, 403, 404, 422] {
            assert!(!classify_status(s).unwrap_err().is_transient(), "{s}");
        }
        assert_eq!(
            classify_status(503).unwrap_err().reason(),
            "http_status_503"
        );
    }
}
