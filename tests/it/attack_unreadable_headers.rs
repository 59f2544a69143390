//! Attack class: identity headers that are not visible ASCII (issue #20, part 1).
//!
//! A header value may carry bytes of 0x80 and above (obs-text): proxies send
//! UTF-8 names that way. Every copy of a header a provider reads is read
//! exactly, as UTF-8, or refused with 400 `invalid_request`; it is never
//! skipped, so it can neither hide a team from a `forbid` nor hide a client's
//! own copy from the repeated-header check. Each case is sent as raw bytes on
//! a real socket to `tokengate serve` and to the tower layer.

use crate::fixtures::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Header lines as written on the wire: a name and its raw value.
type RawHeaders<'a> = [(&'a str, &'a [u8])];

/// What came back from a raw request: the status and the body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_string()
    }
}

/// `GET target` with `headers` written byte for byte (no client library in
/// between to refuse or re-encode them), on its own connection.
async fn raw_get(base: &str, target: &str, headers: &RawHeaders<'_>) -> Answer {
    let addr = base.strip_prefix("http://").expect("an http:// base");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").into_bytes();
    for (name, value) in headers {
        request.extend_from_slice(name.as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    stream.write_all(&request).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {head}"));
    Answer { status, body: response[split + 4..].to_vec() }
}

const UPSTREAM: &str = "realm: test
provider_config:
  type: upstream_header
  trusted_proxy_cidrs: [127.0.0.1]
  attribute_headers: {x-forwarded-groups: teams}
  attributes_header: x-forwarded-attributes
  tenant_header: x-forwarded-tenant
route_policy:
  default: permit
  rules:
    - path: /x*
      forbid: {attribute: teams, any_of: [contractors]}
";

/// `tokengate serve` and an app behind the layer, both for `config_text`.
async fn front_ends(config_text: &str) -> (tempfile::TempDir, Running, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = load(&write(dir.path(), "c.yaml", config_text));
    let server = serve_config(&config).await;
    let layer = serve_layer(&config).await;
    (dir, server, layer)
}

/// The issue's first bullet: raw UTF-8 in `X-Forwarded-Groups` used to be
/// skipped, so `contractors` escaped the forbid (200, no teams at all).
#[tokio::test]
async fn utf8_groups_are_read_and_a_forbid_on_them_fires() {
    let (_dir, server, layer) = front_ends(UPSTREAM).await;
    for base in [&server.base, &layer] {
        let headers: [(&str, &[u8]); 2] =
            [("x-forwarded-user", b"alice"), ("x-forwarded-groups", "contractors,équipe".as_bytes())];
        let answer = raw_get(base, "/x", &headers).await;
        assert_eq!(answer.status, 403, "{base}: {}", String::from_utf8_lossy(&answer.body));

        // Read as the UTF-8 it is, not as absent.
        let headers: [(&str, &[u8]); 2] =
            [("x-forwarded-user", "josé".as_bytes()), ("x-forwarded-groups", "ml,équipe".as_bytes())];
        let answer = raw_get(base, "/x", &headers).await;
        assert_eq!(answer.status, 200, "{base}: {}", String::from_utf8_lossy(&answer.body));
        let principal = answer.json();
        assert_eq!(principal["principal"], "josé", "{base}");
        assert_eq!(principal["attributes"]["teams"], json!(["ml", "équipe"]), "{base}");
    }
    server.shutdown().await;
}

/// The issue's second bullet: a client's `X-Forwarded-User: admin` and an
/// appending proxy's `X-Forwarded-User: josé` are two copies (used to be 200
/// as admin, the UTF-8 copy not counted).
#[tokio::test]
async fn a_non_ascii_copy_counts_toward_the_repeat_check() {
    let (_dir, server, layer) = front_ends(UPSTREAM).await;
    let variants: [[(&str, &[u8]); 2]; 4] = [
        [("x-forwarded-user", b"admin"), ("x-forwarded-user", "josé".as_bytes())],
        // The unreadable copy first, and Latin-1 instead of UTF-8.
        [("x-forwarded-user", b"jos\xe9"), ("x-forwarded-user", b"admin")],
        [("x-forwarded-user", b"admin"), ("x-forwarded-user", b"jos\xe9")],
        [("x-forwarded-user", b"alice"), ("x-forwarded-groups", b"ml")],
    ];
    for base in [&server.base, &layer] {
        for (i, headers) in variants.iter().enumerate() {
            let mut headers = headers.to_vec();
            if i == 3 {
                // A repeated group header where the client's copy is not UTF-8.
                headers.push(("x-forwarded-groups", b"contractors,\xe9quipe"));
            }
            let answer = raw_get(base, "/x", &headers).await;
            assert_eq!(answer.status, 400, "{base} {headers:?}: {}", String::from_utf8_lossy(&answer.body));
            assert_eq!(answer.code(), "invalid_request", "{base} {headers:?}");
        }
    }
    server.shutdown().await;
}

/// Bytes that are not UTF-8 in any identity header, alone: 400, never read
/// as absent (no groups, no attributes, no tenant) nor as "not logged in".
#[tokio::test]
async fn an_identity_header_that_is_not_utf8_is_refused() {
    let (_dir, server, layer) = front_ends(UPSTREAM).await;
    let cases: [(&str, &[u8]); 5] = [
        ("x-forwarded-groups", b"contractors,\xe9quipe"),
        ("x-forwarded-groups", b"\xff"),
        ("x-forwarded-attributes", b"{\"teams\": [\"contractors\", \"\xe9quipe\"]}"),
        ("x-forwarded-tenant", b"acm\xe9"),
        // A truncated UTF-8 sequence.
        ("x-forwarded-user", b"jos\xc3"),
    ];
    for base in [&server.base, &layer] {
        for (name, value) in cases {
            let mut headers: Vec<(&str, &[u8])> = vec![(name, value)];
            if name != "x-forwarded-user" {
                headers.push(("x-forwarded-user", b"alice"));
            }
            let answer = raw_get(base, "/x", &headers).await;
            assert_eq!(answer.status, 400, "{base} {name}: {}", String::from_utf8_lossy(&answer.body));
            assert_eq!(answer.code(), "invalid_request", "{base} {name}");
        }
    }
    server.shutdown().await;
}

/// The attributes JSON in raw UTF-8 is read too: its `contractors` is seen.
#[tokio::test]
async fn utf8_attributes_json_is_read() {
    let (_dir, server, layer) = front_ends(UPSTREAM).await;
    for base in [&server.base, &layer] {
        let attributes = r#"{"teams": ["contractors", "équipe"]}"#;
        let headers: [(&str, &[u8]); 2] =
            [("x-forwarded-user", b"alice"), ("x-forwarded-attributes", attributes.as_bytes())];
        let answer = raw_get(base, "/x", &headers).await;
        assert_eq!(answer.status, 403, "{base}: {}", String::from_utf8_lossy(&answer.body));
    }
    server.shutdown().await;
}

/// `X-API-Key` outside visible ASCII was already refused (the credential is
/// read strictly); held here with the rest of the class, next to an identity
/// provider that needs no token.
#[tokio::test]
async fn a_non_ascii_api_key_is_refused() {
    let (_dir, server, layer) = front_ends(UPSTREAM).await;
    for base in [&server.base, &layer] {
        for key in [&b"k\xe9y"[..], "kéy".as_bytes()] {
            let headers: [(&str, &[u8]); 2] = [("x-forwarded-user", b"alice"), ("x-api-key", key)];
            let answer = raw_get(base, "/x", &headers).await;
            assert_eq!(answer.status, 400, "{base}: {}", String::from_utf8_lossy(&answer.body));
            assert_eq!(answer.code(), "invalid_request", "{base}");
        }
    }
    server.shutdown().await;
}

/// `custom` passes the request's headers and query on to its endpoint: one
/// it could not pass exactly is a 400, and the endpoint is not asked (it used
/// to be asked about a request without it, and its 200 let the request in).
#[tokio::test]
async fn custom_never_forwards_a_request_with_a_part_left_out() {
    let endpoint = Server::start().await;
    endpoint.route("/auth", Reply::Json(200, json!({"principal": "alice"})));
    let config = format!(
        "realm: test\nprovider_config:\n  type: custom\n  endpoint: {}\n  cache: {{enabled: false}}\n",
        endpoint.url("/auth")
    );
    let (_dir, server, layer) = front_ends(&config).await;
    for base in [&server.base, &layer] {
        let before = endpoint.count("/auth");
        let headers: [(&str, &[u8]); 2] = [("authorization", b"Bearer tok"), ("x-team", "équipe".as_bytes())];
        let answer = raw_get(base, "/x?team=%C3%A9quipe", &headers).await;
        assert_eq!(answer.status, 200, "{base}: {}", String::from_utf8_lossy(&answer.body));
        let sent: Value = serde_json::from_str(&endpoint.seen().last().unwrap().body).unwrap();
        assert_eq!(sent["request"]["headers"]["x-team"], "équipe", "{base}");
        assert_eq!(sent["request"]["params"]["team"], json!(["équipe"]), "{base}");

        let unreadable: [(&str, &RawHeaders); 2] = [
            ("/x", &[("authorization", b"Bearer tok"), ("x-team", b"\xe9quipe")]),
            ("/x?team=%E9quipe", &[("authorization", b"Bearer tok")]),
        ];
        for (target, headers) in unreadable {
            let answer = raw_get(base, target, headers).await;
            assert_eq!(answer.status, 400, "{base} {target}: {}", String::from_utf8_lossy(&answer.body));
            assert_eq!(answer.code(), "invalid_request", "{base} {target}");
        }
        assert_eq!(
            endpoint.count("/auth"),
            before + 1,
            "{base}: the endpoint is asked only about the readable request"
        );
    }
    server.shutdown().await;
}
