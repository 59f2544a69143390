use super::identity::{allowed, attribute_header_name, write_ascii_json, AttributeHeaderNames};
use super::*;
use tokengate_api::{AuthError, Principal, RequestContext};

fn header<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
    response.headers().get(name).map(|v| v.to_str().expect("visible ASCII"))
}

fn list(value: &str) -> Vec<String> {
    value.split(',').map(|v| percent_decoded(v).expect("a valid escape")).collect()
}

async fn body(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn an_allowed_answer_decodes_back_exactly() {
    let names = AttributeHeaderNames::default();
    let values = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let attributes = [
        ("roles", values(&["admin", "a,b", "100%", "ü", ""])),
        ("teams", values(&[])),
        ("empty", values(&[""])),
        ("Mixed Case", values(&["x"])),
    ];
    let p = Principal::new("josé 😀, \"root\"\r\nX-Evil: 1%41")
        .with_attributes(attributes.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        .with_unknown_attributes(["orgs", "a,b"])
        .with_tenant(Some("acme".into()));
    // Twice: the second answer reuses the header names the first one kept.
    for _ in 0..2 {
        let r = allowed(&p, &names);
        assert_eq!(names.kept(), 3, "roles, teams and empty make headers; \"Mixed Case\" does not");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type"), Some("application/json"));
        assert_eq!(percent_decoded(header(&r, "x-auth-principal").unwrap()).as_deref(), Some(p.principal.as_str()));
        assert_eq!(header(&r, "x-auth-tenant"), Some("acme"));
        let attributes: tokengate_api::Attributes =
            serde_json::from_str(header(&r, "x-auth-attributes").unwrap()).unwrap();
        assert_eq!(attributes, p.attributes);
        assert_eq!(list(header(&r, "x-auth-attr-roles").unwrap()), p.attributes["roles"]);
        assert_eq!(header(&r, "x-auth-attr-teams"), None, "[] has no header of its own");
        assert_eq!(header(&r, "x-auth-attr-empty"), None, "nor has [\"\"]");
        assert_eq!(list(header(&r, "x-auth-unknown-attributes").unwrap()), ["a,b", "orgs"]);
        assert_eq!(r.headers().len(), 6, "{:?}", r.headers());
        let json = body(r).await;
        assert!(json.is_ascii(), "{json}");
        assert_eq!(serde_json::from_str::<Principal>(&json).unwrap(), p);
    }
    // The body is the principal as serde writes it, with or without the optional fields.
    let without_optional = Principal::new("bob").with_attributes(p.attributes.clone());
    let only_unknown = without_optional.clone().with_unknown_attributes(["orgs"]);
    let only_tenant = without_optional.clone().with_tenant(Some("acme".into()));
    for p in [p, without_optional, only_unknown, only_tenant] {
        let mut expected = Vec::new();
        assert!(write_ascii_json(&mut expected, &p));
        assert_eq!(body(allowed(&p, &names)).await.as_bytes(), expected);
    }
    let plain = allowed(&Principal::new("josé 😀"), &names);
    assert_eq!(header(&plain, "x-auth-tenant"), Some(""), "always sent, empty without a tenant");
    assert_eq!(header(&plain, "x-auth-attributes"), Some("{}"));
    assert_eq!(header(&plain, "x-auth-unknown-attributes"), Some(""), "always sent, empty when all is known");
    assert_eq!(body(plain).await, r#"{"principal":"jos\u00e9 \ud83d\ude00","attributes":{}}"#);
}

#[tokio::test]
async fn any_number_of_attributes_is_an_answer_not_a_panic() {
    let names = AttributeHeaderNames::default();
    let many = |n: usize, name: fn(usize) -> String| {
        let attributes = (0..n).map(|i| (name(i), vec!["v".to_string()])).collect();
        Principal::new("alice").with_attributes(attributes)
    };
    // None of these makes a header of its own: all travel in X-Auth-Attributes.
    let r = allowed(&many(30_000, |i| format!("A{i}")), &names);
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers().len(), 5);
    assert_eq!(names.kept(), 0, "names that make no header are not kept");
    // More X-Auth-Attr-* headers than a header map holds: refused, never some left out.
    assert_eq!(allowed(&many(33_000, |i| format!("a{i}")), &names).status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(names.kept(), 256, "at most 256 names are kept");
    let (fresh, long) = (AttributeHeaderNames::default(), "l".repeat(65));
    let r = allowed(&Principal::new("alice").with_attributes([(long.clone(), vec!["v".to_string()])].into()), &fresh);
    assert!(r.headers().contains_key(format!("x-auth-attr-{long}").as_str()), "a long name still has its header");
    assert_eq!(fresh.kept(), 0, "but is not kept");
}

#[test]
fn header_values_decode_back_exactly() {
    for value in ["alice", "a b", "a\r\nX-Evil: 1", "josé", "", "mallory,admin", "100%", "%41", " x ", "tab\t"] {
        let encoded = percent_encoded(value);
        assert!(HeaderValue::from_str(&encoded).is_ok(), "{value:?}");
        assert!(!encoded.contains(','), "{value:?}");
        assert_eq!(percent_decoded(&encoded).as_deref(), Some(value));
    }
    assert_eq!(percent_encoded("alice@example.com"), "alice@example.com", "plain values look unchanged");
    assert_eq!(percent_encoded("mallory,admin"), "mallory%2Cadmin");
    assert!(attribute_header_name("Roles").is_none());
    assert!(attribute_header_name("roles").is_some());
    assert!(attribute_header_name("bad name").is_none());
    assert!(attribute_header_name("a:b").is_none());
    assert!(attribute_header_name("").is_none());
}

fn parts(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut b = http::Request::builder().method("POST").uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn resolve(uri: &str, headers: &[(&str, &str)], proxy: Proxy) -> Result<RequestContext, AuthError> {
    original_request(&parts(uri, headers), proxy, None)
}

#[test]
fn original_request_from_each_proxy() {
    let traefik = [
        ("x-forwarded-uri", "/v1/models?a=1&a=2"),
        ("x-forwarded-method", "DELETE"),
        ("x-forwarded-host", "api.example.com"),
        ("authorization", "Bearer t"),
    ];
    for proxy in [Proxy::Traefik, Proxy::Caddy, Proxy::Auto] {
        let c = resolve("/auth", &traefik, proxy).unwrap();
        assert_eq!((c.method.as_str(), c.path.as_str()), ("DELETE", "/v1/models"));
        assert_eq!(c.params().unwrap()["a"], vec!["1", "2"]);
        assert_eq!(c.headers().unwrap()["host"], "api.example.com");
        assert!(!c.headers().unwrap().contains_key("authorization"));
        assert!(!c.headers().unwrap().contains_key("x-forwarded-uri"));
    }
    let nginx = [("x-original-uri", "https://h/x/y?q=1"), ("x-original-method", "PUT")];
    for proxy in [Proxy::Nginx, Proxy::Auto] {
        let c = resolve("/_tokengate", &nginx, proxy).unwrap();
        assert_eq!((c.method.as_str(), c.path.as_str()), ("PUT", "/x/y"));
    }
    let c = original_request(&parts("/authz/v1/chat?s=1", &[]), Proxy::Envoy, Some("/authz")).unwrap();
    assert_eq!((c.method.as_str(), c.path.as_str()), ("POST", "/v1/chat"));
    assert_eq!(c.params().unwrap()["s"], vec!["1"]);
    assert!(original_request(&parts("/authzother", &[]), Proxy::Envoy, Some("/authz")).is_err());
    // Envoy: whatever the client wrote in these headers is not the original request.
    let c = resolve("/v1/chat", &[("x-forwarded-uri", "/public"), ("x-original-uri", "/public")], Proxy::Envoy);
    assert_eq!(c.unwrap().path, "/v1/chat");
    // So is a path prefix under `auto`: only Envoy strips one.
    let spoof = [("x-original-uri", "/public"), ("x-original-method", "GET")];
    let c = original_request(&parts("/authz/admin", &spoof), Proxy::Auto, Some("/authz")).unwrap();
    assert_eq!(c.path, "/admin");
}

#[test]
fn a_named_proxy_reads_only_its_own_headers() {
    // nginx forwards the client's own X-Forwarded-* untouched.
    let spoofed = [
        ("x-original-uri", "/admin/users"),
        ("x-original-method", "DELETE"),
        ("x-forwarded-uri", "/public/x"),
        ("x-forwarded-method", "GET"),
    ];
    let c = resolve("/_tokengate", &spoofed, Proxy::Nginx).unwrap();
    assert_eq!((c.method.as_str(), c.path.as_str()), ("DELETE", "/admin/users"));
    let c = resolve("/auth", &spoofed, Proxy::Traefik).unwrap();
    assert_eq!((c.method.as_str(), c.path.as_str()), ("GET", "/public/x"));
    assert_eq!(resolve("/_tokengate", &[], Proxy::Nginx).unwrap_err().code(), "invalid_request");
    let only_uri = [("x-forwarded-uri", "/x")];
    assert_eq!(resolve("/auth", &only_uri, Proxy::Traefik).unwrap_err().code(), "invalid_request");
}

#[test]
fn auto_refuses_what_could_mean_two_things() {
    let bad: &[&[(&str, &str)]] = &[
        &[
            ("x-original-uri", "/admin"),
            ("x-original-method", "GET"),
            ("x-forwarded-uri", "/public/x"),
            ("x-forwarded-method", "GET"),
        ],
        &[
            ("x-original-uri", "/admin"),
            ("x-original-method", "DELETE"),
            ("x-forwarded-uri", "/admin"),
            ("x-forwarded-method", "GET"),
        ],
        &[("x-original-uri", "/admin"), ("x-original-method", "DELETE"), ("x-forwarded-method", "GET")],
        &[("x-original-uri", "/admin"), ("x-original-uri", "/public"), ("x-original-method", "GET")],
        &[("x-original-uri", ""), ("x-original-method", "GET")],
        &[
            ("x-original-uri", "/admin"),
            ("x-original-method", "GET"),
            ("x-forwarded-host", "a"),
            ("x-forwarded-host", "b"),
        ],
        &[("x-forwarded-method", "GET")],
        &[("x-original-uri", "not a uri"), ("x-original-method", "GET")],
        &[("x-original-uri", "/public/..;/admin"), ("x-original-method", "GET")],
        &[("x-original-uri", "/public/x#/../../admin"), ("x-original-method", "GET")],
    ];
    for headers in bad {
        let e = resolve("/_tokengate", headers, Proxy::Auto).unwrap_err();
        assert_eq!(e.code(), "invalid_request", "{headers:?}");
    }
    // Agreeing copies of both families are one meaning.
    let both = [
        ("x-original-uri", "/a"),
        ("x-original-method", "GET"),
        ("x-forwarded-uri", "/a"),
        ("x-forwarded-method", "GET"),
    ];
    assert_eq!(resolve("/_tokengate", &both, Proxy::Auto).unwrap().path, "/a");
}

#[test]
fn an_unreadable_original_uri_is_refused_not_ignored() {
    let mut p = parts("/_tokengate", &[("x-original-method", "GET")]);
    p.headers.insert("x-original-uri", HeaderValue::from_bytes(b"/admin?q=caf\xc3\xa9").unwrap());
    for proxy in [Proxy::Nginx, Proxy::Auto] {
        assert_eq!(original_request(&p, proxy, None).unwrap_err().code(), "invalid_request");
    }
}
