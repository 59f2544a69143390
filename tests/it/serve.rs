//! The forward-auth decision service (`tokengate serve`), in-process on real sockets.

use crate::fixtures::*;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokengate::http::server::{self, ServeOptions};
use tokengate::DynProvider;

async fn start_recording(name: &'static str) -> (Arc<Recording>, Running) {
    start_recording_audited(name, None).await
}

/// [`start_recording`], writing its decisions to `audit` (where a test reads their reasons).
async fn start_recording_audited(name: &'static str, audit: Option<&AuditTail>) -> (Arc<Recording>, Running) {
    let p = Recording::new(name);
    let provider: DynProvider = p.clone();
    let options = ServeOptions {
        realm: Some("test".into()),
        open_paths: vec!["/public/*".into()],
        path_prefix: None,
        audit: audit.map(|a| a.log.clone()),
        ..Default::default()
    };
    (p, serve_provider(provider, options).await)
}

/// The value of a metric line carrying all `labels`, 0 when absent.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape(base: &str) -> String {
    let res = client().get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(header(&res, "content-type").unwrap().starts_with("text/plain"));
    res.text().await.unwrap()
}

#[tokio::test]
async fn allowed_request_gets_principal_headers_and_body() {
    let (_p, s) = start_recording("rec_allow").await;
    let res = client().get(format!("{}/", s.base)).bearer_auth("good").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-auth-principal").unwrap(), "alice");
    assert_eq!(header(&res, "x-auth-attributes").unwrap(), r#"{"roles":["admin","dev"],"teams":["ml"]}"#);
    assert_eq!(header(&res, "x-auth-attr-roles").unwrap(), "admin,dev");
    assert_eq!(header(&res, "x-auth-attr-teams").unwrap(), "ml");
    assert_eq!(header(&res, "content-type").unwrap(), "application/json");
    assert_eq!(
        res.text().await.unwrap(),
        r#"{"principal":"alice","attributes":{"roles":["admin","dev"],"teams":["ml"]}}"#
    );
}

#[tokio::test]
async fn every_method_and_path_is_a_decision() {
    let (p, s) = start_recording("rec_methods").await;
    let c = client();
    for method in [reqwest::Method::GET, reqwest::Method::POST, reqwest::Method::PUT, reqwest::Method::DELETE] {
        let res = c.request(method.clone(), format!("{}/any/path", s.base)).bearer_auth("good").send().await.unwrap();
        assert_eq!(res.status(), 200, "{method}");
        assert_eq!(p.last().method, method.as_str());
    }
    let res = c.head(format!("{}/x", s.base)).send().await.unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn original_request_comes_from_forwarded_headers() {
    let (p, s) = start_recording("rec_forwarded").await;
    let c = client();

    // nginx auth_request style.
    let res = c
        .get(format!("{}/auth", s.base))
        .bearer_auth("good")
        .header("x-original-uri", "/v1/models?limit=5&tag=a&tag=b")
        .header("x-original-method", "POST")
        .header("cookie", "session=secret")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let ctx = p.last();
    assert_eq!((ctx.method.as_str(), ctx.path.as_str()), ("POST", "/v1/models"));
    assert_eq!(ctx.params().unwrap()["limit"], vec!["5"]);
    assert_eq!(ctx.params().unwrap()["tag"], vec!["a", "b"]);
    assert!(!ctx.headers().unwrap().contains_key("authorization"));
    assert!(!ctx.headers().unwrap().contains_key("cookie"));

    // Traefik ForwardAuth style.
    let res = c
        .get(format!("{}/", s.base))
        .bearer_auth("good")
        .header("x-forwarded-uri", "/api/items/7?x=1")
        .header("x-forwarded-method", "PATCH")
        .header("x-forwarded-host", "api.example.com")
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let ctx = p.last();
    assert_eq!((ctx.method.as_str(), ctx.path.as_str()), ("PATCH", "/api/items/7"));
    assert_eq!(ctx.params().unwrap()["x"], vec!["1"]);
    assert_eq!(ctx.headers().unwrap()["host"], "api.example.com");
    assert_eq!(ctx.headers().unwrap()["x-forwarded-for"], "203.0.113.9");
    assert!(ctx.peer.is_some_and(|a| a.ip().is_loopback()));

    // Envoy ext_authz HTTP: the decision request's own method and path are the original's.
    let res = c.delete(format!("{}/v1/files/9?force=true", s.base)).bearer_auth("good").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let ctx = p.last();
    assert_eq!((ctx.method.as_str(), ctx.path.as_str()), ("DELETE", "/v1/files/9"));
    assert_eq!(ctx.params().unwrap()["force"], vec!["true"]);

    // A garbage original URI is the proxy's mistake, reported as such.
    let res = c
        .get(format!("{}/", s.base))
        .bearer_auth("good")
        .header("x-forwarded-uri", "no slash")
        .header("x-forwarded-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(json(res).await["error"]["code"], "invalid_request");
}

#[tokio::test]
async fn envoy_path_prefix_is_stripped() {
    let p = Recording::new("rec_prefix");
    let provider: DynProvider = p.clone();
    let s =
        serve_provider(provider, ServeOptions { path_prefix: Some("/ext-authz".into()), ..Default::default() }).await;
    let res = client().post(format!("{}/ext-authz/v1/chat?stream=1", s.base)).bearer_auth("good").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let ctx = p.last();
    assert_eq!((ctx.method.as_str(), ctx.path.as_str()), ("POST", "/v1/chat"));
    assert_eq!(ctx.params().unwrap()["stream"], vec!["1"]);
}

#[tokio::test]
async fn denials_match_the_layer() {
    let audit = AuditTail::new();
    let (p, s) = start_recording_audited("rec_deny", Some(&audit)).await;
    let c = client();

    let res = c.get(format!("{}/x", s.base)).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(header(&res, "www-authenticate").unwrap(), r#"Bearer realm="test""#);
    assert_eq!(
        json(res).await,
        json!({"error": {"code": "invalid_token", "message": "Send a test token: no credentials: neither an Authorization: Bearer header nor an X-API-Key header"}})
    );
    assert_eq!(audit.last_reason().as_deref(), Some("missing_credential"));

    let res = c.get(format!("{}/x", s.base)).bearer_auth("nope").send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        header(&res, "www-authenticate").unwrap(),
        r#"Bearer realm="test", error="invalid_token", error_description="token not recognized""#
    );
    assert_eq!(header(&res, "x-auth-principal"), None);
    assert_eq!(
        json(res).await,
        json!({"error": {"code": "invalid_token", "message": "Send a test token: token not recognized"}})
    );
    assert_eq!(audit.last_reason().as_deref(), Some("rejected"));

    let res = c.get(format!("{}/x", s.base)).header("authorization", "Basic dXNlcjpwYXNz").send().await.unwrap();
    assert_eq!(res.status(), 401, "another scheme is no Bearer credential");
    assert_eq!(header(&res, "www-authenticate").unwrap(), r#"Bearer realm="test""#);
    assert_eq!(audit.last_reason().as_deref(), Some("missing_credential"));
    for bad in ["Bearer", "Bearer a b"] {
        let res = c.get(format!("{}/x", s.base)).header("authorization", bad).send().await.unwrap();
        assert_eq!(res.status(), 400, "{bad}");
        assert!(header(&res, "www-authenticate").unwrap().contains(r#"error="invalid_request""#));
        assert_eq!(audit.last_reason().as_deref(), Some("request"), "{bad}");
    }

    let res = c.get(format!("{}/x", s.base)).bearer_auth("scope").send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(audit.last_reason().as_deref(), Some("policy"));

    let res = c.get(format!("{}/x", s.base)).bearer_auth("down").send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(header(&res, "retry-after").unwrap(), "7");
    assert_eq!(json(res).await["error"]["code"], "temporarily_unavailable");
    assert_eq!(audit.last_reason().as_deref(), Some("upstream"));

    let res = c.get(format!("{}/x", s.base)).bearer_auth("broken").send().await.unwrap();
    assert_eq!(res.status(), 500);
    assert_eq!(audit.last_reason().as_deref(), Some("config"));
    assert!(p.count() >= 4);
}

#[tokio::test]
async fn open_paths_use_the_original_path() {
    let (_p, s) = start_recording("rec_open").await;
    let c = client();
    let res = c
        .get(format!("{}/auth", s.base))
        .header("x-forwarded-uri", "/public/logo.png")
        .header("x-forwarded-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-auth-principal").as_deref(), Some(""), "sent empty: replaces a client's copy");
    assert_eq!(header(&res, "x-auth-attributes").as_deref(), Some("{}"));
    let res = c
        .get(format!("{}/auth", s.base))
        .bearer_auth("good")
        .header("x-forwarded-uri", "/public/logo.png")
        .header("x-forwarded-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&res, "x-auth-principal").unwrap(), "alice");
    let forwarded = |uri: &'static str| {
        c.get(format!("{}/auth", s.base)).header("x-forwarded-uri", uri).header("x-forwarded-method", "GET").send()
    };
    let res = forwarded("/public/../admin").await.unwrap();
    assert_eq!(res.status(), 400, "dot segments are refused, never matched");
    let res = forwarded("/private").await.unwrap();
    assert_eq!(res.status(), 401);
}

/// Knows `teams` for "known" and cannot determine it for "unknown" (as
/// `github_token` without `read:org`).
struct TeamsSometimesUnknown;

#[async_trait::async_trait]
impl tokengate::AuthProvider for TeamsSometimesUnknown {
    fn describe(&self) -> tokengate::Description {
        tokengate::Description::new("teams_sometimes_unknown")
    }

    async fn validate(
        &self,
        token: &str,
        _ctx: &tokengate::RequestContext,
    ) -> Result<tokengate::Principal, tokengate::AuthError> {
        let principal = tokengate::Principal::new("alice");
        match token {
            "known" => Ok(principal.with_attributes([("teams".to_string(), vec!["ml".to_string()])].into())),
            "unknown" => Ok(principal.with_unknown_attributes(["teams", "a,b"])),
            _ => Err(tokengate::AuthError::invalid_token("token not recognized")),
        }
    }
}

/// Every allowed answer carries `X-Auth-Unknown-Attributes`, empty when all is
/// known: a proxy copies it every time, so a client's own copy (an empty one
/// claiming "teams known") never stands in for it, and Caddy before 2.8.5
/// never copies its literal placeholder instead.
#[tokio::test]
async fn x_auth_unknown_attributes_is_on_every_allowed_answer() {
    let provider: DynProvider = Arc::new(TeamsSometimesUnknown);
    let options = ServeOptions { open_paths: vec!["/public/*".into()], ..Default::default() };
    let s = serve_provider(provider, options).await;
    let c = client();
    let ask = |path: &'static str, token: Option<&'static str>| {
        let mut req =
            c.get(format!("{}/auth", s.base)).header("x-forwarded-uri", path).header("x-forwarded-method", "GET");
        // (A client's own copy is refused: a_client_copy_of_a_header_tokengate_sets_is_refused_before_any_provider.)
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    for (path, token, want_principal, want_unknown) in [
        ("/public/logo.png", None, "", ""),
        ("/public/logo.png", Some("garbage"), "", ""),
        ("/public/logo.png", Some("known"), "alice", ""),
        ("/public/logo.png", Some("unknown"), "alice", "a%2Cb,teams"),
        ("/private", Some("known"), "alice", ""),
        ("/private", Some("unknown"), "alice", "a%2Cb,teams"),
    ] {
        let res = ask(path, token).await.unwrap();
        let case = format!("{path} with {token:?}");
        assert_eq!(res.status(), 200, "{case}");
        let unknown: Vec<_> = res.headers().get_all("x-auth-unknown-attributes").iter().collect();
        assert_eq!(unknown, [want_unknown], "{case}: exactly one X-Auth-Unknown-Attributes");
        assert_eq!(header(&res, "x-auth-principal").as_deref(), Some(want_principal), "{case}");
    }
}

fn percent_decoded(s: &str) -> String {
    server::percent_decoded(s).expect("tokengate sends valid percent-encoding")
}

#[tokio::test]
async fn identity_headers_decode_back_to_exactly_what_the_provider_produced() {
    let (_p, s) = start_recording("rec_encoded").await;
    let res = client().get(format!("{}/", s.base)).bearer_auth("encoded").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let principal = header(&res, "x-auth-principal").expect("every allow carries X-Auth-Principal");
    assert_eq!(principal, "jos%C3%A9%2Cadmin%20100%25");
    assert_eq!(percent_decoded(&principal), "josé,admin 100%");
    let groups = header(&res, "x-auth-attr-groups").unwrap();
    let decoded: Vec<String> = groups.split(',').map(percent_decoded).collect();
    assert_eq!(decoded, ["ml,platform-admins", "line\nbreak", "", "%41", "del\u{7f}"], "{groups}");
    assert_eq!(header(&res, "x-auth-attr-mixed"), None, "case-folded names would merge");
    assert_eq!(header(&res, "x-auth-attr-empty"), None);
    let attributes: serde_json::Value = serde_json::from_str(&header(&res, "x-auth-attributes").unwrap()).unwrap();
    assert_eq!(attributes["groups"], json!(["ml,platform-admins", "line\nbreak", "", "%41", "del\u{7f}"]));
    assert_eq!(attributes["Mixed"], json!(["x"]));
    assert_eq!(json(res).await["principal"], "josé,admin 100%");
}

#[tokio::test]
async fn principals_with_control_characters_are_refused() {
    let audit = AuditTail::new();
    let (_p, s) = start_recording_audited("rec_weird", Some(&audit)).await;
    let res = client().get(format!("{}/", s.base)).bearer_auth("weird").send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(header(&res, "x-auth-principal"), None);
    assert_eq!(header(&res, "x-evil"), None);
    assert!(header(&res, "www-authenticate").unwrap().starts_with(&invalid_token_challenge("test")));
    assert_eq!(audit.last_reason().as_deref(), Some("principal"));
}

async fn start_behind(proxy: tokengate::config::Proxy) -> (Arc<Recording>, Running) {
    let p = Recording::new("rec_proxy");
    let provider: DynProvider = p.clone();
    let options = ServeOptions { open_paths: vec!["/public/*".into()], proxy, ..Default::default() };
    (p, serve_provider(provider, options).await)
}

/// What a client gets past nginx `auth_request`, which forwards its headers
/// next to the ones the snippet sets.
async fn through_nginx(base: &str, original: &str, method: &str, extra: &[(&str, &[u8])]) -> reqwest::Response {
    let mut req = client()
        .get(format!("{base}/_tokengate"))
        .header("x-original-uri", original)
        .header("x-original-method", method);
    for (name, value) in extra {
        req = req.header(*name, reqwest::header::HeaderValue::from_bytes(value).unwrap());
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn client_sent_forwarded_headers_never_open_a_path_or_change_the_method() {
    let spoof: &[(&str, &[u8])] = &[("x-forwarded-uri", b"/public/x"), ("x-forwarded-method", b"GET")];
    let (_p, nginx) = start_behind(tokengate::config::Proxy::Nginx).await;
    let res = through_nginx(&nginx.base, "/admin/users", "DELETE", spoof).await;
    assert_eq!(res.status(), 401, "nginx: only X-Original-* count");
    let (_p, auto) = start_behind(tokengate::config::Proxy::Auto).await;
    let res = through_nginx(&auto.base, "/admin/users", "DELETE", spoof).await;
    assert_eq!(res.status(), 400, "auto: two families that disagree");
    assert_eq!(json(res).await["error"]["code"], "invalid_request");
    let res = through_nginx(&auto.base, "/admin/users", "DELETE", &[("x-forwarded-method", b"GET")]).await;
    assert_eq!(res.status(), 400, "auto: a method without its URI");
    let res = through_nginx(&auto.base, "/admin/users", "DELETE", &[("x-original-uri", b"/public/x")]).await;
    assert_eq!(res.status(), 400, "auto: a repeated X-Original-URI");
    let res = through_nginx(&auto.base, "/public/x", "GET", &[]).await;
    assert_eq!(res.status(), 200, "the real open path stays open");
}

#[tokio::test]
async fn an_unreadable_original_uri_is_400_never_another_path() {
    for proxy in [tokengate::config::Proxy::Nginx, tokengate::config::Proxy::Auto] {
        let (_p, s) = start_behind(proxy).await;
        let c = client();
        let res = c
            .get(format!("{}/public/decision", s.base))
            .header("x-original-uri", reqwest::header::HeaderValue::from_bytes(b"/admin?q=caf\xc3\xa9").unwrap())
            .header("x-original-method", "GET")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{proxy:?}");
    }
}

#[tokio::test]
async fn path_tricks_are_refused_before_open_paths_and_rules() {
    let (p, s) = start_behind(tokengate::config::Proxy::Nginx).await;
    for trick in [
        "/public/x#/../../admin/users",
        "/public/%EF%BC%8E%EF%BC%8E/admin",
        "/public/..;/admin/users",
        "/;/admin",
        "/.;/admin",
        "/x/..;/admin",
        "/public/%252e%252e/admin",
        "/public/%2e%2e/admin",
        "/public/../admin",
        "/public%2fadmin",
        "/public/x%5c..%5cadmin",
        "/exact;jsessionid=1",
        "/exact.",
        "/exact%20",
    ] {
        let res = through_nginx(&s.base, trick, "GET", &[]).await;
        assert_eq!(res.status(), 400, "{trick}");
        assert_eq!(json(res).await["error"]["code"], "invalid_request", "{trick}");
    }
    for name in ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "X_HTTP_Method_Override"] {
        let res = through_nginx(&s.base, "/v1/models", "POST", &[(name, b"DELETE")]).await;
        assert_eq!(res.status(), 400, "{name}: route rules judge the real method");
    }
    let res = client()
        .get(format!("{}/_tokengate", s.base))
        .bearer_auth("good")
        .header("x-original-uri", "//v1//models?a=1")
        .header("x-original-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(p.last().path, "/v1/models", "providers and audit see the canonical path");
}

#[tokio::test]
async fn healthz_and_metrics() {
    let (_p, s) = start_recording("rec_metrics").await;
    let c = client();
    let res = c.get(format!("{}/healthz", s.base)).send().await.unwrap();
    assert_eq!((res.status().as_u16(), res.text().await.unwrap()), (200, "ok\n".to_string()));

    let allow = ["outcome=\"allow\"", "provider=\"rec_metrics\""];
    let deny = ["outcome=\"deny\"", "provider=\"rec_metrics\""];
    let unavailable = ["outcome=\"unavailable\"", "provider=\"rec_metrics\""];
    let error = ["outcome=\"error\"", "provider=\"rec_metrics\""];
    let before = scrape(&s.base).await;
    for token in ["good", "good", "nope", "down", "broken"] {
        c.get(format!("{}/x", s.base)).bearer_auth(token).send().await.unwrap();
    }
    c.get(format!("{}/x", s.base)).send().await.unwrap();
    let after = scrape(&s.base).await;
    let delta = |labels: &[&str]| {
        metric(&after, "tokengate_decisions_total", labels) - metric(&before, "tokengate_decisions_total", labels)
    };
    assert_eq!(delta(&allow), 2.0, "{after}");
    assert_eq!(delta(&deny), 2.0, "{after}");
    assert_eq!(delta(&unavailable), 1.0, "{after}");
    assert_eq!(delta(&error), 1.0, "{after}");
    assert!(
        after.contains("tokengate_decision_duration_seconds_bucket{"),
        "the latency metric is a histogram: {after}"
    );
    assert!(metric(&after, "tokengate_decision_duration_seconds_count", &allow) >= 2.0, "{after}");
    // /healthz and /metrics are not decisions.
    assert_eq!(metric(&after, "tokengate_decisions_total", &["provider=\"rec_metrics\""]), 6.0);
}

#[tokio::test]
async fn shutdown_is_graceful_and_closes_the_provider() {
    let (p, mut s) = start_recording("rec_shutdown").await;
    assert_eq!(client().get(format!("{}/", s.base)).bearer_auth("good").send().await.unwrap().status(), 200);
    assert!(!p.is_closed());
    let _ = s.stop.take().unwrap().send(());
    let result = tokio::time::timeout(Duration::from_secs(10), &mut s.done).await.expect("serve returns");
    result.unwrap().unwrap();
    assert!(p.is_closed(), "provider.close() ran");
    assert!(client().get(format!("{}/healthz", s.base)).send().await.is_err(), "no longer listening");
}

#[tokio::test]
async fn real_jwt_allowed_denied_and_idp_fetches_counted() {
    let idp = Idp::start().await;
    let s = serve_provider(idp.provider(), ServeOptions::default()).await;
    let c = client();

    let res = c.get(format!("{}/", s.base)).bearer_auth(idp.token("carol")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-auth-principal").unwrap(), "carol");
    assert_eq!(header(&res, "x-auth-attributes").unwrap(), r#"{"groups":["ml","ops"],"scopes":["read","write"]}"#);
    assert_eq!(header(&res, "x-auth-attr-groups").unwrap(), "ml,ops");
    assert_eq!(header(&res, "x-auth-attr-scopes").unwrap(), "read,write");

    let res = c.get(format!("{}/", s.base)).bearer_auth(idp.expired_token("carol")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(header(&res, "www-authenticate").unwrap().starts_with(&invalid_token_challenge("tokengate")));

    let res = c.get(format!("{}/", s.base)).bearer_auth(tamper(&idp.token("carol"))).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(header(&res, "www-authenticate").unwrap().starts_with(&invalid_token_challenge("tokengate")));

    let metrics = scrape(&s.base).await;
    assert!(metrics.contains("tokengate_idp_fetches_total{"), "providers' own metrics are exported: {metrics}");
    assert!(metric(&metrics, "tokengate_decisions_total", &["outcome=\"allow\"", "provider=\"oauth2_token\""]) >= 1.0);
    // Refusals are counted by their Reason: the expired token's claim, the tampered one's signature.
    for reason in ["claim", "signature"] {
        let labels = [format!("reason=\"{reason}\""), "provider=\"oauth2_token\"".to_string()];
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        assert!(metric(&metrics, "tokengate_refusals_total", &labels) >= 1.0, "{reason}: {metrics}");
    }
}

#[tokio::test]
async fn real_jwt_with_unreachable_idp_is_503() {
    let idp = Idp::unreachable().await;
    let s = serve_provider(idp.provider(), ServeOptions::default()).await;
    let res = client().get(format!("{}/", s.base)).bearer_auth(idp.token("carol")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(header(&res, "retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(json(res).await["error"]["code"], "temporarily_unavailable");
}

#[tokio::test]
async fn key_set_is_fetched_at_start_up_and_readyz_says_ready() {
    let idp = Idp::start().await;
    let mut cfg = idp.provider_config();
    cfg.as_object_mut().unwrap().remove("type");
    let cfg: tokengate_oauth2::config::OAuth2Config = serde_json::from_value(cfg).unwrap();
    let p = Arc::new(tokengate_oauth2::OAuth2Provider::new(cfg, &tokengate::BuildContext::default()).unwrap());
    assert_eq!(p.fetch_count(), 0);
    let s = serve_provider(p.clone(), ServeOptions::default()).await;
    // No request has been made: the start-up prefetch alone fetches the keys.
    let fetched_once = || {
        let p = p.clone();
        async move { p.fetch_count() == 1 }
    };
    assert!(eventually(Duration::from_secs(10), fetched_once).await, "fetches: {}", p.fetch_count());

    let res = client().get(format!("{}/readyz", s.base)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "ready\n");
    let res = client().get(format!("{}/", s.base)).bearer_auth(idp.token("dave")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(p.fetch_count(), 1, "readiness and the first request reuse the prefetched keys");
}

#[tokio::test]
async fn readyz_is_503_without_revealing_internal_urls_while_no_keys_can_be_had() {
    let idp = Idp::unreachable().await;
    let s = serve_provider(idp.provider(), ServeOptions::default()).await;
    let c = client();
    let res = c.get(format!("{}/readyz", s.base)).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body = res.text().await.unwrap();
    assert!(body.starts_with("not ready: "), "{body}");
    assert!(body.contains("identity provider is unavailable"), "{body}");
    assert!(!body.contains(&idp.addr.to_string()) && !body.contains("http"), "internal URLs stay in the log: {body}");
    // Liveness is not readiness: the process itself is fine.
    assert_eq!(c.get(format!("{}/healthz", s.base)).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn readyz_for_providers_without_remote_state_is_200() {
    let (_p, s) = start_recording("rec_ready").await;
    let res = client().get(format!("{}/readyz", s.base)).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn admin_listener_takes_health_and_metrics_off_the_decision_port() {
    let p = Recording::new("rec_admin");
    let provider: DynProvider = p.clone();
    let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (base, admin_base) =
        (format!("http://{}", main.local_addr().unwrap()), format!("http://{}", admin.local_addr().unwrap()));
    let app = server::router(provider.clone(), ServeOptions { separate_admin: true, ..Default::default() });
    let admin = Some((admin, server::admin_router(provider.clone())));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(server::run_with_admin(main, app, admin, provider, async move {
        let _ = rx.await;
    }));
    let c = client();

    // On the decision port these are ordinary paths: Envoy forwarding a
    // client's `GET /metrics` without a token gets a refusal, not a 200.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let res = c.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(res.status(), 401, "{path} is a decision on the main port");
        let res = c.get(format!("{base}{path}")).bearer_auth("good").send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "x-auth-principal").unwrap(), "alice");
        assert_eq!(p.last().path, path);
    }

    let res = c.get(format!("{admin_base}/healthz")).send().await.unwrap();
    assert_eq!((res.status().as_u16(), res.text().await.unwrap()), (200, "ok\n".to_string()));
    let res = c.get(format!("{admin_base}/readyz")).send().await.unwrap();
    assert_eq!((res.status().as_u16(), res.text().await.unwrap()), (200, "ready\n".to_string()));
    let metrics = scrape(&admin_base).await;
    assert!(metric(&metrics, "tokengate_decisions_total", &["provider=\"rec_admin\""]) >= 6.0, "{metrics}");
    let seen = p.count();
    let res = c.get(format!("{admin_base}/anything")).bearer_auth("good").send().await.unwrap();
    assert_eq!(res.status(), 404, "the admin port decides nothing");
    assert_eq!(p.count(), seen);

    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(10), done).await.expect("serve returns").unwrap().unwrap();
    assert!(c.get(format!("{admin_base}/healthz")).send().await.is_err(), "the admin port closed too");
}

/// Reads until the server closes the connection; `true` when it did within `within`.
async fn closed_by_server(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn half_sent_requests_cannot_starve_real_decisions() {
    use tokio::io::AsyncWriteExt;
    let provider: DynProvider = Recording::new("rec_slowloris");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = server::ConnectionLimits {
        header_read_timeout: Duration::from_millis(400),
        idle_timeout: Duration::from_millis(1500),
        max_connections: 8,
    };
    let app = server::router(provider.clone(), ServeOptions::default());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(server::run_with_limits(listener, app, None, provider, limits, async move {
        let _ = rx.await;
    }));

    let mut slow = Vec::new();
    for _ in 0..8 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
        slow.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(closed_by_server(&mut extra, Duration::from_secs(1)).await, "over max_connections: closed on accept");
    for s in &mut slow {
        assert!(closed_by_server(s, Duration::from_secs(2)).await, "headers not sent within header_read_timeout");
    }
    let res = client().get(format!("http://{addr}/x")).bearer_auth("good").send().await.unwrap();
    assert_eq!(res.status(), 200, "real decisions are served once the slow ones are gone");

    // Connections that never send a whole request hold their slot no longer
    // than header_read_timeout: silent ones, and HTTP/2 ones sending only PINGs.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut pinging = tokio::net::TcpStream::connect(addr).await.unwrap();
    pinging.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    let pings = tokio::spawn(async move {
        let ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00pingping";
        while pinging.write_all(ping).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 256];
            if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), pinging.read(&mut buf)).await {
                return true;
            }
        }
        true
    });
    assert!(closed_by_server(&mut silent, Duration::from_secs(2)).await, "a silent connection is closed");
    let closed = tokio::time::timeout(Duration::from_secs(3), pings).await;
    assert!(matches!(closed, Ok(Ok(true))), "PINGs do not keep an HTTP/2 connection without requests open");

    // A kept-alive connection that goes quiet is closed after idle_timeout.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(!closed_by_server(&mut idle, Duration::from_millis(700)).await, "kept alive past header_read_timeout");
    // A proxy's pooled connection, reused after more than header_read_timeout, still works.
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut answer = [0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut idle, &mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    assert!(closed_by_server(&mut idle, Duration::from_secs(4)).await, "closed after idle_timeout");

    let _ = tx.send(());
    done.await.unwrap().unwrap();
}

/// `GET target` with `headers` written byte for byte, names in the case
/// given (a client library would lower-case them); the status, the
/// `WWW-Authenticate` value and the body.
async fn raw_get(base: &str, target: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.strip_prefix("http://").expect("an http:// base");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").expect("a complete response head");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {head}"));
    let www = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate")))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    (status, www, body.to_string())
}

/// #20 part 3: nginx, Traefik and Caddy pass the client's headers to the
/// decision, so a header tokengate sets (under any name a CGI-style back end
/// folds to it: case ignored, `_` for `-`) arriving there is a client's copy
/// the proxy did not remove. Refused with 400 before any provider runs, on
/// open and protected paths, whatever its value; names that only look alike
/// are not.
#[tokio::test]
async fn a_client_copy_of_a_header_tokengate_sets_is_refused_before_any_provider() {
    let (p, s) = start_recording("rec_identity_copies").await;
    let forged = [
        ("X-Auth-Principal", "admin", "X-Auth-Principal"),
        ("x_auth_principal", "admin", "X-Auth-Principal"),
        ("X_AUTH-TENANT", "globex", "X-Auth-Tenant"),
        ("X-Auth-Attributes", r#"{"roles":["admin"]}"#, "X-Auth-Attributes"),
        ("X-Auth-Attr-Teams", "admins", "X-Auth-Attr-*"),
        ("x-auth_attr_roles", "admin", "X-Auth-Attr-*"),
        ("X.Auth.Principal", "admin", "X-Auth-Principal"),
        ("x-auth-attr.teams", "admins", "X-Auth-Attr-*"),
        ("X~Auth+Tenant", "globex", "X-Auth-Tenant"),
        ("X-Auth-Attr-", "admin", "X-Auth-Attr-*"),
        ("X-Auth-Unknown-Attributes", "", "X-Auth-Unknown-Attributes"),
        ("x-auth-unknown_attributes", "", "X-Auth-Unknown-Attributes"),
        ("X-Auth-Principal", "", "X-Auth-Principal"),
    ];
    for (name, value, shown) in forged {
        for (path, token) in
            [("/public/logo.png", None), ("/public/logo.png", Some("good")), ("/v1/models", Some("good"))]
        {
            let before = p.count();
            let mut headers = vec![(name, value)];
            let bearer = token.map(|t| format!("Bearer {t}"));
            if let Some(bearer) = &bearer {
                headers.push(("Authorization", bearer));
            }
            let (status, www, body) = raw_get(&s.base, path, &headers).await;
            let case = format!("{name}: {value:?} on {path} with token {token:?}");
            assert_eq!(status, 400, "{case}: {body}");
            assert!(body.contains(r#""code":"invalid_request""#), "{case}: {body}");
            let want = format!("its own {shown} header (as {}), which only tokengate sets", name.to_ascii_lowercase());
            assert!(www.contains(&want), "{case}: {www}");
            assert_eq!(p.count(), before, "{case}: the provider ran");
        }
    }
    // Names that only look alike: an authenticating proxy's own, and others.
    for name in ["X-Auth-Request-User", "X-Auth-Request-Groups", "X-Authorization-Foo", "X-Auth-Token", "X-Auth"] {
        let (status, _, body) = raw_get(&s.base, "/v1/models", &[(name, "x"), ("Authorization", "Bearer good")]).await;
        assert_eq!(status, 200, "{name}: {body}");
        let (status, _, body) = raw_get(&s.base, "/public/logo.png", &[(name, "x")]).await;
        assert_eq!(status, 200, "{name} on an open path: {body}");
    }
}

/// The one exception: the exact names a configured `upstream_header` reads
/// (OGX configures `attributes_header: x-auth-attributes`) are the
/// authenticating proxy's to set. Every other copy is still refused.
#[tokio::test]
async fn upstream_header_reads_its_own_headers_even_where_tokengate_sets_that_name() {
    let dir = tempfile::tempdir().unwrap();
    let text = "provider_config:\n  type: upstream_header\n  principal_header: x-auth-user-id\n  attributes_header: X-Auth-Attributes\n  trusted_proxy_cidrs: [127.0.0.1]\n";
    let config = load(&write(dir.path(), "u.yaml", text));
    let server = serve_config(&config).await;
    let attributes = r#"{"teams":["ml"]}"#;
    let (status, _, body) =
        raw_get(&server.base, "/x", &[("x-auth-user-id", "alice"), ("X-Auth-Attributes", attributes)]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""teams":["ml"]"#), "{body}");
    for forged in ["x_auth_attributes", "X-Auth-Principal", "X-Auth-Attr-Teams"] {
        let headers = [("x-auth-user-id", "alice"), ("X-Auth-Attributes", attributes), (forged, "admin")];
        let (status, www, _) = raw_get(&server.base, "/x", &headers).await;
        assert_eq!(status, 400, "{forged}: {www}");
    }
    server.shutdown().await;
}
