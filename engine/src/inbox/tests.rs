//! The inbox API over a real store and server: the authorisation matrix
//! (no token, bad ones, own mailbox, someone else's, level too low).

use std::io::{Read, Write};
use std::net::TcpStream;

use super::*;
use crate::evidence::b64url;
use crate::evidence::keys::SigningKey;
use crate::identity::{IdentityConfig, KeySet};
use crate::store::conformance::{new_notice, notice, person};
use crate::store::{Durability, FjallStore, FjallStoreConfig};

struct World {
    server: crate::http::HttpServer,
    store: Arc<dyn Store>,
    key: SigningKey,
    _dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        Self::with(InboxConfig::default())
    }

    fn with(inbox: InboxConfig) -> World {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = FjallStoreConfig::new(dir.path());
        cfg.durability = Durability::Buffered;
        let store: Arc<dyn Store> = Arc::new(FjallStore::open(cfg).unwrap());
        // Ana has three notices (one needing level 3), Bob one.
        let mut high = notice("tax", "t-3", person(100), "secret body");
        high.min_access_level = 3;
        store
            .write(&[
                new_notice(notice("tax", "t-1", person(100), "body one"), 1),
                new_notice(notice("judiciary", "j-1", person(100), "body two"), 2),
                new_notice(high, 3),
                new_notice(notice("tax", "t-2", person(200), "bob's"), 4),
            ])
            .unwrap();
        let key = SigningKey::from_seed("idp", [5; 32]).unwrap();
        let keys = KeySet::parse(
            &json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "idp", "x": b64url(key.public_key())}]})
                .to_string(),
        )
        .unwrap();
        let icfg = IdentityConfig {
            issuer: "https://sso.example.ir".into(),
            ..IdentityConfig::default()
        };
        let verifier = Arc::new(Verifier::fixed(&icfg, keys));
        let server = crate::http::HttpServer::start_router(
            "127.0.0.1:0",
            router(store.clone(), verifier, &inbox),
        )
        .unwrap();
        World {
            server,
            store,
            key,
            _dir: dir,
        }
    }

    fn token(&self, sub: &str, level: u8, exp_in: i64) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = json!({"iss": "https://sso.example.ir", "aud": "karpoosheh",
            "sub": sub, "acr": level, "exp": now + exp_in});
        let input = format!(
            "{}.{}",
            b64url(json!({"alg": "EdDSA", "kid": "idp"}).to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        format!("{input}.{}", b64url(&self.key.sign(input.as_bytes())))
    }

    /// (status, JSON body) of a GET with `token`.
    fn get(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        let mut s = TcpStream::connect(self.server.addr).unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        (
            status,
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        )
    }
}

#[test]
fn the_authorisation_matrix_holds() {
    let w = World::new();
    let ana = person(100).to_string();
    let bob = person(200).to_string();
    let ana2 = w.token(&ana, 2, 300);

    // No token, an expired one, one for another audience's key: 401.
    let (status, body) = w.get("/v1/mailbox", None);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("token_missing"))
    );
    let (status, body) = w.get("/v1/mailbox", Some(&w.token(&ana, 2, -3600)));
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("token_expired"))
    );
    let stranger = SigningKey::from_seed("idp", [6; 32]).unwrap();
    let forged = {
        let t = w.token(&ana, 3, 300);
        let input = t.rsplit_once('.').unwrap().0.to_owned();
        format!("{input}.{}", b64url(&stranger.sign(input.as_bytes())))
    };
    let (status, body) = w.get("/v1/notices/x", Some(&forged));
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("bad_signature"))
    );

    // Ana's own mailbox, newest first, no bodies; paged by cursor.
    let (status, page) = w.get("/v1/mailbox?limit=2", Some(&ana2));
    assert_eq!(status, 200, "{page}");
    let notices = page["notices"].as_array().unwrap();
    assert_eq!(notices.len(), 2);
    assert_eq!(notices[0]["min_access_level"], 3);
    assert_eq!(notices[0]["openable"], false);
    assert_eq!(notices[1]["agency"], "judiciary");
    assert!(notices.iter().all(|n| n.get("body").is_none()));
    let next = page["next"].as_str().unwrap().to_owned();
    let (_, rest) = w.get(&format!("/v1/mailbox?limit=2&before={next}"), Some(&ana2));
    let rest = rest["notices"].as_array().unwrap().clone();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["agency"], "tax");
    assert!(!page.to_string().contains(&bob) && !page.to_string().contains("bob's"));
    assert_eq!(w.get("/v1/mailbox?limit=500", Some(&ana2)).0, 400);
    assert_eq!(w.get("/v1/mailbox?before=nope", Some(&ana2)).0, 400);

    // Open: her own notice at her level; the level-3 one refused with the
    // level it needs; Bob's, and one that does not exist, the same 404.
    let own = rest[0]["tracking_code"].as_str().unwrap();
    let (status, n) = w.get(&format!("/v1/notices/{own}"), Some(&ana2));
    assert_eq!((status, n["body"].as_str()), (200, Some("body one")), "{n}");
    assert_eq!(n["content_hash"].as_str().unwrap().len(), 64);
    let high = notices[0]["tracking_code"].as_str().unwrap();
    let (status, refused) = w.get(&format!("/v1/notices/{high}"), Some(&ana2));
    assert_eq!(status, 403);
    assert_eq!(
        (
            refused["error"].as_str(),
            refused["required"].as_u64(),
            refused["held"].as_u64()
        ),
        (Some("access_level_insufficient"), Some(3), Some(2))
    );
    assert!(refused.get("body").is_none());
    let (status, n) = w.get(&format!("/v1/notices/{high}"), Some(&w.token(&ana, 3, 300)));
    assert_eq!((status, n["body"].as_str()), (200, Some("secret body")));
    let (_, bobs) = w.get("/v1/mailbox", Some(&w.token(&bob, 3, 300)));
    let bobs_code = bobs["notices"][0]["tracking_code"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, other) = w.get(
        &format!("/v1/notices/{bobs_code}"),
        Some(&w.token(&ana, 3, 300)),
    );
    let (status2, missing) = w.get(
        &format!(
            "/v1/notices/{}",
            TrackingCode::from_parts(1_760_000_000_000, 9, 9)
        ),
        Some(&ana2),
    );
    assert_eq!((status, status2), (404, 404));
    assert_eq!(other, missing, "someone else's notice looks like none");

    // Every answered call is in the traffic data of the caller's mailbox
    // (401s have no caller): what, which notice, the status.
    let log = w.store.access_log(person(100), 100).unwrap();
    let seen: Vec<(&str, u16)> = log.iter().map(|r| (r.action.as_str(), r.status)).collect();
    assert_eq!(
        seen,
        vec![
            ("open_missing", 404),
            ("open_missing", 404),
            ("open", 200),
            ("open_refused", 403),
            ("open", 200),
            ("list", 200),
            ("list", 200),
        ],
        "newest first"
    );
    assert!(log.iter().all(|r| r.actor == person(100)));
    assert_eq!(
        log[3].tracking_code.map(|c| c.to_string()).as_deref(),
        Some(high)
    );
    assert_eq!(
        w.store.access_log(person(200), 10).unwrap().len(),
        1,
        "bob listed once"
    );
}

/// A person gets so many calls a minute from all their apps, an address
/// so many whatever the tokens (a flood of bad ones is cut before they
/// are checked): 429 with Retry-After, nothing recorded.
#[test]
fn calls_are_limited_per_person_and_per_address() {
    let w = World::with(InboxConfig {
        requests_per_subject_per_minute: 3.0,
        requests_per_client_per_minute: 6.0,
        ..InboxConfig::default()
    });
    let ana = w.token(&person(100).to_string(), 2, 300);
    let bob = w.token(&person(200).to_string(), 2, 300);
    for _ in 0..3 {
        assert_eq!(w.get("/v1/mailbox", Some(&ana)).0, 200);
    }
    let (status, body) = w.get("/v1/mailbox", Some(&ana));
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("rate_limited"))
    );
    assert_eq!(w.get("/v1/mailbox", Some(&bob)).0, 200, "another person");
    // Five calls so far from this address: one more, then 429 before the
    // token is even looked at.
    assert_eq!(w.get("/v1/mailbox", None).0, 401);
    let (status, body) = w.get("/v1/mailbox", None);
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("rate_limited"))
    );
    assert_eq!(w.store.access_log(person(100), 10).unwrap().len(), 3);
}
