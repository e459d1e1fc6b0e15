//! The inbox API's OpenAPI 3.1 document, built beside the handlers and
//! served at `/v1/openapi.json`; `docs/inbox-api.openapi.json` is this
//! document, written by the test that checks it (`UPDATE_OPENAPI=1`), and
//! the suite runs Schemathesis against a live node with it. A route added
//! to the router and not here fails `every_route_is_documented`.

use serde_json::{json, Value};

/// Every route: (method, path). The router's and the document's (checked
/// by the tests against both).
#[cfg_attr(not(test), allow(dead_code))]
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/mailbox"),
    ("get", "/v1/notices/{code}"),
    ("post", "/v1/notices/{code}/confirmations"),
    ("post", "/v1/notices/{code}/shares"),
    ("delete", "/v1/notices/{code}/shares/{share_id}"),
    ("get", "/v1/agency/status"),
    ("post", "/v1/agency/cancel"),
    ("get", "/v1/openapi.json"),
];

fn problem_ref() -> Value {
    json!({"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}})
}

/// The answers every authenticated route can give besides its own.
fn common(mut own: Value) -> Value {
    let o = own.as_object_mut().expect("an object");
    for (code, what) in [
        ("401", "No token, or a token refused: `error` says why (token_missing, token_expired, bad_signature, wrong_audience, ...)."),
        ("429", "Too many calls from this address or this person; see Retry-After."),
        ("503", "The store or the scheduler did not answer, or the call could not be recorded in the traffic data; try again."),
    ] {
        o.entry(code).or_insert(json!({"description": what, "content": problem_ref()}));
    }
    own
}

/// The answer of a node that does not record this notice's events.
fn misdirected() -> Value {
    json!({"description": "`other_node`: on a fleet sharing one store, this notice's events are recorded by the node that stored it (`node`, also in its tracking code); send the call there.", "content": problem_ref()})
}

fn code_param() -> Value {
    json!({"name": "code", "in": "path", "required": true,
        "description": "The notice's tracking code.",
        "schema": {"type": "string", "pattern": "^[0-9A-Za-z-]{1,40}$"}})
}

fn json_of(schema: &str) -> Value {
    json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}})
}

/// An agency's status of a reference (`karpoosheh status --json`); apart
/// from the document's one `json!` (its macro's recursion limit).
fn notice_status() -> Value {
    json!({"type": "object", "required": ["agency", "reference", "notice", "rejections"], "properties": {
                    "agency": {"type": "string"}, "reference": {"type": "string"},
                    "notice": {"oneOf": [{"type": "null"}, {"type": "object",
                        "required": ["tracking_code", "accepted_at", "lane", "state", "state_at", "rounds", "confirmations", "receipts", "chain_intact"],
                        "properties": {
                            "tracking_code": {"type": "string"},
                            "accepted_at": {"type": "string", "format": "date-time"},
                            "lane": {"enum": ["urgent", "normal", "bulk"]},
                            "state": {"enum": ["scheduled", "awaiting_activation", "unreachable", "served", "not_served", "expired", "held", "cancelled"]},
                            "state_at": {"type": ["string", "null"], "format": "date-time"},
                            "rounds": {"type": "integer", "minimum": 0, "maximum": 3},
                            "confirmations": {"type": "integer", "minimum": 0},
                            "receipts": {"type": "array", "items": {"type": "object"}, "description": "Every receipt of the notice, oldest first, without `evidence` (wire contract)."},
                            "chain_intact": {"type": "boolean"},
                            "respond_by": {"type": ["string", "null"], "format": "date-time"},
                            "reminded": {"type": ["string", "null"], "format": "date-time"}}}]},
                    "rejections": {"type": "array", "items": {"type": "object", "required": ["id", "at", "problems", "position"], "properties": {
                        "id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
                        "problems": {"type": "array", "items": {"type": "object"}},
                        "position": {"type": "object"}}}}}})
}

/// The document.
pub fn document() -> Value {
    let kinds: Vec<&str> = karpoosheh_schemas::NoticeKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    let life_events: Vec<&str> = karpoosheh_schemas::LifeEvent::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    let not_found = json!({"description": "No such notice in a mailbox the caller may see (the same whether it exists or not).", "content": problem_ref()});
    let level = json!({"description": "The session's access level (or the delegation's) is below the notice's (`access_level_insufficient`, with `required` and `held`), the caller's delegation does not allow this (`not_permitted`), or the mailbox's state lets only its guardian act (`mailbox_not_accessible`).", "content": problem_ref()});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Karpoosheh inbox API",
            "version": "1",
            "description": "For citizens' inbox apps: list a mailbox, open, confirm and share notices. Every call needs a bearer token of the national identity provider. docs/inbox-api.md has the rules."
        },
        "servers": [{"url": "/"}],
        "security": [{"idp": []}],
        "paths": {
            "/v1/mailbox": {"get": {
                "operationId": "listMailbox",
                "summary": "A mailbox, newest first, metadata only.",
                "parameters": [
                    {"name": "before", "in": "query", "schema": {"type": "string", "minLength": 1}, "description": "The `next` of the previous page."},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
                    {"name": "agency", "in": "query", "schema": {"type": "string", "pattern": "^[a-z][a-z0-9-]{1,31}$"}},
                    {"name": "kind", "in": "query", "schema": {"enum": kinds}},
                    {"name": "life_event", "in": "query", "schema": {"enum": life_events}},
                    {"name": "unread", "in": "query", "schema": {"type": "boolean"}, "description": "Only notices not yet opened by the caller's side."},
                    {"name": "for", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]{10,11}$"}, "description": "A mailbox the caller represents (or is guardian of); default their own."}
                ],
                "responses": common(json!({
                    "200": {"description": "One page.", "content": json_of("Page"), "links": {
                        "OpenFirst": {"operationId": "openNotice", "parameters": {"code": "$response.body#/notices/0/tracking_code"}},
                        "ConfirmFirst": {"operationId": "confirmNotice", "parameters": {"code": "$response.body#/notices/0/tracking_code"}},
                        "ShareFirst": {"operationId": "shareNotice", "parameters": {"code": "$response.body#/notices/0/tracking_code"}},
                        "NextPage": {"operationId": "listMailbox", "parameters": {"before": "$response.body#/next"}}}},
                    "400": {"description": "A bad cursor, limit, filter or mailbox ID.", "content": problem_ref()},
                    "403": level,
                    "404": {"description": "A mailbox the caller may not see (or none).", "content": problem_ref()}
                }))
            }},
            "/v1/notices/{code}": {"get": {
                "operationId": "openNotice",
                "summary": "Open a notice: its body, attachments' metadata and what verifies it. The first opening by each side is an `opened` event of the notice.",
                "parameters": [code_param()],
                "responses": common(json!({
                    "200": {"description": "The notice.", "content": json_of("Notice")},
                    "403": level,
                    "404": not_found,
                    "421": misdirected()
                }))
            }},
            "/v1/notices/{code}/confirmations": {"post": {
                "operationId": "confirmNotice",
                "summary": "Confirm the notification (article 29); two confirmations serve the notice.",
                "parameters": [code_param(),
                    {"name": "Idempotency-Key", "in": "header", "required": true,
                     "description": "Chosen by the app per confirmation, the same on a retry.",
                     "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}}],
                "responses": common(json!({
                    "200": {"description": "Applied (with the count and whether it served the notice) or a duplicate of one applied before.", "content": json_of("ConfirmOutcome")},
                    "400": {"description": "No valid Idempotency-Key.", "content": problem_ref()},
                    "403": level,
                    "404": not_found,
                    "421": misdirected(),
                    "409": {"description": "Refused by article 29's rules: `error` is a reason code (not_notified, already_served, notice_expired, mailbox_not_reachable, not_recipient).", "content": problem_ref()}
                }))
            }},
            "/v1/notices/{code}/shares": {"post": {
                "operationId": "shareNotice",
                "summary": "Share the notice with an approved agency (article 27); it gets the document on its receipts topic.",
                "parameters": [code_param()],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["agency"], "additionalProperties": false,
                    "properties": {"agency": {"type": "string"}}}}}},
                "responses": common(json!({
                    "200": {"description": "Shared before with that agency: the same share.", "content": json_of("Share")},
                    "201": {"description": "Shared.", "content": json_of("Share"), "links": {
                        "Withdraw": {"operationId": "unshareNotice", "parameters": {"code": "$request.path.code", "share_id": "$response.body#/share_id"}}}},
                    "400": {"description": "The body is not `{\"agency\": ...}`.", "content": problem_ref()},
                    "403": level,
                    "404": not_found,
                    "421": misdirected(),
                    "409": {"description": "`agency_not_approved`, `share_with_sender`, `notice_expired` or `too_many_shares`.", "content": problem_ref()}
                }))
            }},
            "/v1/notices/{code}/shares/{share_id}": {"delete": {
                "operationId": "unshareNotice",
                "summary": "Withdraw a share; the agency is told.",
                "parameters": [code_param(), {"name": "share_id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": common(json!({
                    "200": {"description": "Withdrawn (or withdrawn before).", "content": {"application/json": {"schema": {
                        "type": "object", "required": ["revoked", "new"],
                        "properties": {"revoked": {"const": true}, "new": {"type": "boolean"}}}}}},
                    "403": level,
                    "404": {"description": "No such notice, or no such share of it.", "content": problem_ref()},
                    "421": misdirected()
                }))
            }},
            "/v1/agency/status": {"get": {
                "operationId": "agencyStatus",
                "summary": "For agencies: what happened to one of your notices, by your reference. Its tracking code, lane and state, every receipt in order (the receipt IDs you got), and the rejections kept for the reference.",
                "security": [{"agencyKey": []}],
                "parameters": [{"name": "reference", "in": "query", "required": true,
                    "schema": {"type": "string", "minLength": 1},
                    "description": "Your reference, as sent: at most `limits.max_reference_chars` characters (128 by default)."}],
                "responses": {
                    "200": {"description": "What is known of the reference.", "content": json_of("NoticeStatus")},
                    "400": {"description": "No reference, or one longer than the operator's limit (`bad_reference`).", "content": problem_ref()},
                    "401": {"description": "No agency key, or one the registry does not hold (`agency_key_missing`, `agency_key_malformed`, `agency_key_refused`).", "content": problem_ref()},
                    "403": {"description": "The agency is dissolved (`agency_not_allowed`).", "content": problem_ref()},
                    "404": {"description": "No notice and no kept rejection of yours with this reference (or no agency registry on this node).", "content": problem_ref()},
                    "429": {"description": "Too many calls from this address; see Retry-After.", "content": problem_ref()},
                    "503": {"description": "The store did not answer, or the call could not be recorded in the traffic data; try again.", "content": problem_ref()}
                }
            }},
            "/v1/agency/cancel": {"post": {
                "operationId": "agencyCancel",
                "summary": "For agencies: cancel one of your scheduled sends (`deliver_at`) before it lands in the mailbox. Decided against the engine's clock and durable before the answer; you also get a `cancelled` receipt. Cancelling again answers the same.",
                "security": [{"agencyKey": []}],
                "parameters": [{"name": "reference", "in": "query", "required": true,
                    "schema": {"type": "string", "minLength": 1},
                    "description": "Your reference, as sent: at most `limits.max_reference_chars` characters (128 by default)."}],
                "responses": {
                    "200": {"description": "Cancelled (now, or by an earlier call: `new` says which): it never lands and nobody is notified.", "content": json_of("Cancelled")},
                    "400": {"description": "No reference, or one longer than the operator's limit (`bad_reference`).", "content": problem_ref()},
                    "401": {"description": "No agency key, or one the registry does not hold (`agency_key_missing`, `agency_key_malformed`, `agency_key_refused`).", "content": problem_ref()},
                    "403": {"description": "The agency is dissolved (`agency_not_allowed`).", "content": problem_ref()},
                    "404": {"description": "No notice of yours with this reference (or no agency registry on this node).", "content": problem_ref()},
                    "409": {"description": "`too_late_to_cancel`: the notice is already in its mailbox, or was never a scheduled send; `state` is its state.", "content": problem_ref()},
                    "421": misdirected(),
                    "429": {"description": "Too many calls from this address or this agency; see Retry-After.", "content": problem_ref()},
                    "503": {"description": "The store or the scheduler did not answer, or the call could not be recorded in the traffic data; try again.", "content": problem_ref()}
                }
            }},
            "/v1/openapi.json": {"get": {
                "operationId": "openapi",
                "summary": "This document.",
                "security": [],
                "responses": {"200": {"description": "The OpenAPI document.", "content": {"application/json": {"schema": {"type": "object"}}}},
                    "429": {"description": "Too many calls.", "content": problem_ref()}}
            }}
        },
        "components": {
            "securitySchemes": {"idp": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "A token of the national identity provider: `sub` the national ID, `acr` the session's access level (1-3)."},
                "agencyKey": {"type": "http", "scheme": "bearer",
                "description": "An agency's key: `<agency>:<key>`, the key at least 32 characters; the operator's agency registry holds its SHA-256."}},
            "schemas": {
                "Problem": {"type": "object", "required": ["error", "message"], "properties": {
                    "error": {"type": "string", "description": "A stable reason code."},
                    "message": {"type": "string"},
                    "required": {"type": "integer"}, "held": {"type": "integer"},
                    "tracking_code": {"type": "string"}, "state": {"type": "string"}}},
                "Summary": {"type": "object",
                    "required": ["tracking_code", "agency", "kind", "title", "life_event", "min_access_level", "accepted_at", "expires_at", "attachments", "openable", "opened", "confirmations", "state"],
                    "properties": {
                        "tracking_code": {"type": "string"}, "agency": {"type": "string"},
                        "kind": {"type": "string"}, "title": {"type": "string"},
                        "life_event": {"type": "string"},
                        "min_access_level": {"type": "integer", "minimum": 1, "maximum": 3},
                        "accepted_at": {"type": "string", "format": "date-time"},
                        "expires_at": {"type": "string", "format": "date-time"},
                        "attachments": {"description": "Their number in a listing; their metadata in an opened notice.",
                            "oneOf": [{"type": "integer", "minimum": 0}, {"type": "array", "items": {"type": "object"}}]},
                        "openable": {"type": "boolean"}, "opened": {"type": "boolean"},
                        "confirmations": {"type": "integer", "minimum": 0},
                        "state": {"type": ["string", "null"]},
                        "respond_by": {"type": ["string", "null"], "format": "date-time",
                            "description": "The sending agency's deadline for a response (`respond_by`); the notice's text states the legal one."}}},
                "Page": {"type": "object", "required": ["mailbox", "notices", "next"], "properties": {
                    "mailbox": {"type": "string"},
                    "notices": {"type": "array", "items": {"$ref": "#/components/schemas/Summary"}},
                    "next": {"type": ["string", "null"]}}},
                "Notice": {"allOf": [{"$ref": "#/components/schemas/Summary"}, {"type": "object",
                    "required": ["body", "content_hash", "verification_code", "shares"],
                    "properties": {
                        "body": {"type": "string"},
                        "content_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        "verification_code": {"type": "string"},
                        "shares": {"type": "array", "items": {"type": "object"}}}}]},
                "ConfirmOutcome": {"type": "object", "required": ["outcome"], "properties": {
                    "outcome": {"enum": ["applied", "duplicate"]},
                    "confirmations": {"type": "integer"}, "served": {"type": "boolean"}}},
                "NoticeStatus": notice_status(),
                "Cancelled": {"type": "object", "required": ["tracking_code", "state", "cancelled_at", "new"], "properties": {
                    "tracking_code": {"type": "string"}, "state": {"const": "cancelled"},
                    "cancelled_at": {"type": "string", "format": "date-time"}, "new": {"type": "boolean"}}},
                "Share": {"type": "object", "required": ["share_id", "new"], "properties": {
                    "share_id": {"type": "string"}, "new": {"type": "boolean"}}}
            }
        }
    })
}
