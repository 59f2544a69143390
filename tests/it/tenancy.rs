//! Tenancy (issue #13): every provider that can resolve a tenant does, the
//! tenant is lower-cased and checked, travels as `X-Auth-Tenant`, in `check`
//! JSON and the extractor, and `tenancy.mode` settles it (`single` sets it,
//! `multi` requires it). Real servers on 127.0.0.1, real tokens.

use crate::fixtures::*;
use serde_json::{json, Map, Value};
use std::time::Duration;

fn oauth2_yaml(idp: &Idp, extra: &str) -> String {
    format!(
        "realm: test\nprovider_config:\n  type: oauth2_token\n  issuer: {}\n  audience: tokengate-dev\n  jwks: {{uri: '{}'}}\n  tenant_claim: org.id\n{extra}",
        idp.url(),
        idp.issuer.jwks_uri()
    )
}

fn token_with(idp: &Idp, sub: &str, claims: Value) -> String {
    let claims: Map<String, Value> = claims.as_object().cloned().unwrap_or_default();
    idp.issuer.mint(sub, &claims, Duration::from_secs(600)).unwrap()
}

#[tokio::test]
async fn a_jwt_tenant_travels_in_headers_body_layer_and_check() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.yaml", &oauth2_yaml(&idp, ""));
    let config = load(&path);
    let server = serve_config(&config).await;
    let c = client();

    let acme = token_with(&idp, "alice", json!({"org": {"id": "Acme-Prod"}}));
    let res = c.get(format!("{}/v1/models", server.base)).bearer_auth(&acme).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-auth-tenant").unwrap(), "acme-prod", "lower-cased");
    assert_eq!(json(res).await["tenant"], "acme-prod");

    // No tenant (tenancy disabled): allowed, and the header is still sent, empty,
    // so a proxy that only overrides what tokengate returns replaces a client's copy.
    let none = token_with(&idp, "bob", json!({}));
    let res = c.get(format!("{}/v1/models", server.base)).bearer_auth(&none).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-auth-tenant").unwrap(), "");
    assert!(json(res).await.get("tenant").is_none(), "no tenant key without a tenant");

    for bad in [json!("acme corp"), json!("-acme"), json!("acme/../globex"), json!(["a", "b"]), json!({"x": 1})] {
        let t = token_with(&idp, "mallory", json!({"org": {"id": bad}}));
        let res = c.get(format!("{}/v1/models", server.base)).bearer_auth(&t).send().await.unwrap();
        assert_eq!(res.status(), 401, "{bad}");
        assert!(header(&res, "x-auth-tenant").is_none());
        let body = json(res).await;
        assert!(body["error"]["message"].as_str().unwrap().contains("tenant"), "{body}");
    }
    server.shutdown().await;

    let base = serve_layer(&config).await;
    let res = c.get(format!("{base}/x")).bearer_auth(&acme).send().await.unwrap();
    assert_eq!(json(res).await["tenant"], "acme-prod", "the extractor's principal carries the tenant");

    let cfg = path.display().to_string();
    let out = run(args(&["check", "--config", &cfg, "--token", &acme])).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let body: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!((body["principal"].as_str(), body["tenant"].as_str()), (Some("alice"), Some("acme-prod")));
}

#[tokio::test]
async fn multi_requires_a_tenant_and_single_sets_one() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let acme = token_with(&idp, "alice", json!({"org": {"id": "ACME"}}));
    let globex = token_with(&idp, "gus", json!({"org": {"id": "globex"}}));
    let none = token_with(&idp, "bob", json!({}));

    let multi = load(&write(dir.path(), "multi.yaml", &oauth2_yaml(&idp, "tenancy: {mode: multi}\n")));
    let server = serve_config(&multi).await;
    let res = c.get(format!("{}/x", server.base)).bearer_auth(&acme).send().await.unwrap();
    assert_eq!((res.status().as_u16(), header(&res, "x-auth-tenant").unwrap()), (200, "acme".to_string()));
    let res = c.get(format!("{}/x", server.base)).bearer_auth(&none).send().await.unwrap();
    assert_eq!(res.status(), 401, "multi: an authenticated request without a tenant is refused");
    assert!(header(&res, "www-authenticate").unwrap().contains("tenancy `multi` requires one"));
    server.shutdown().await;

    let single = "tenancy:\n  mode: single\n  default_tenant_id: Acme\nopen_paths: [/public/*]\n";
    let single = load(&write(dir.path(), "single.yaml", &oauth2_yaml(&idp, single)));
    let server = serve_config(&single).await;
    for token in [&none, &acme] {
        let res = c.get(format!("{}/x", server.base)).bearer_auth(token).send().await.unwrap();
        assert_eq!((res.status().as_u16(), header(&res, "x-auth-tenant").unwrap()), (200, "acme".to_string()));
    }
    let res = c.get(format!("{}/x", server.base)).bearer_auth(&globex).send().await.unwrap();
    assert_eq!(res.status(), 401, "single: another tenant's token is refused, not renamed");
    let res = c.get(format!("{}/public/a", server.base)).send().await.unwrap();
    assert_eq!((res.status().as_u16(), header(&res, "x-auth-tenant").unwrap()), (200, "acme".to_string()));
    server.shutdown().await;

    // The same in a run.yaml, as `server.tenancy`.
    let run_yaml = format!(
        "server:\n  tenancy: {{mode: multi}}\n  auth:\n    provider_config:\n      type: oauth2_token\n      issuer: {}\n      audience: tokengate-dev\n      jwks: {{uri: '{}'}}\n      tenant_claim: org.id\n",
        idp.url(),
        idp.issuer.jwks_uri()
    );
    let config = load(&write(dir.path(), "run.yaml", &run_yaml));
    let base = serve_layer(&config).await;
    assert_eq!(c.get(format!("{base}/x")).bearer_auth(&none).send().await.unwrap().status(), 401);
    assert_eq!(c.get(format!("{base}/x")).bearer_auth(&acme).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn tenancy_config_errors_name_the_field() {
    let cases = [
        ("provider_config: {type: custom, endpoint: 'http://127.0.0.1:1/'}\ntenancy: {mode: single}\n", "tenancy.default_tenant_id"),
        ("provider_config: {type: custom, endpoint: 'http://127.0.0.1:1/'}\ntenancy: {mode: single, default_tenant_id: 'a b'}\n", "tenancy.default_tenant_id"),
        ("provider_config: {type: custom, endpoint: 'http://127.0.0.1:1/'}\ntenancy: {mode: multi, default_tenant_id: acme}\n", "tenancy.default_tenant_id"),
        ("provider_config: {type: custom, endpoint: 'http://127.0.0.1:1/'}\ntenancy: {mode: mutli}\n", "tenancy.mode"),
        // Never lenient, even in a run.yaml: a typo must not turn enforcement off.
        ("server:\n  tenancy: {mode: multi, defualt: x}\n  auth:\n    provider_config: {type: custom, endpoint: 'http://127.0.0.1:1/'}\n", "server.tenancy"),
        ("server:\n  auth:\n    provider_config: {type: custom, endpoint: 'http://127.0.0.1:1/', tenant_field: ''}\n", "tenant_field"),
    ];
    for (text, field) in cases {
        let e = tokengate::Config::parse(text, tokengate::config::Format::Yaml)
            .and_then(|c| c.build(&tokengate::Registry::with_builtins()).map(|_| ()))
            .unwrap_err();
        assert!(e.field.contains(field), "{text}: {e}");
    }
}

#[tokio::test]
async fn introspection_custom_kubernetes_and_upstream_header_resolve_tenants() {
    let upstream = Server::start().await;
    upstream.route(
        "/introspect",
        Reply::Json(200, json!({"active": true, "sub": "svc", "client_id": "c", "tid": "Intro-1", "exp": now() + 600})),
    );
    upstream.route(
        "/custom",
        Reply::Json(200, json!({"principal": "carol", "attributes": {}, "org": {"slug": "Custom_2"}})),
    );
    upstream.route(
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        Reply::Json(
            201,
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
                   "status": {"userInfo": {"username": "system:serviceaccount:ml:bot", "groups": ["g"],
                                           "extra": {"tenant": ["K8s-3"]}}}}),
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let configs = [
        (
            format!("provider_config:\n  type: oauth2_token\n  allow_any_audience: true\n  introspection: {{url: '{}', client_id: c, client_secret: s}}\n  tenant_claim: tid\n", upstream.url("/introspect")),
            "intro-1",
        ),
        (format!("provider_config: {{type: custom, endpoint: '{}', tenant_field: org.slug}}\n", upstream.url("/custom")), "custom_2"),
        (format!("provider_config: {{type: kubernetes, api_server_url: '{}', tenant_claim: extra.tenant}}\n", upstream.url("")), "k8s-3"),
    ];
    for (i, (text, want)) in configs.iter().enumerate() {
        let config = load(&write(dir.path(), &format!("c{i}.yaml"), text));
        let server = serve_config(&config).await;
        let res = c.get(format!("{}/x", server.base)).bearer_auth("opaque-token").send().await.unwrap();
        assert_eq!(res.status(), 200, "{text}");
        assert_eq!(header(&res, "x-auth-tenant").unwrap(), *want, "{text}");
        server.shutdown().await;
    }

    let text = "provider_config:\n  type: upstream_header\n  principal_header: x-auth-principal\n  tenant_header: x-auth-tenant\n  trusted_proxy_cidrs: [127.0.0.1]\n";
    let config = load(&write(dir.path(), "u.yaml", text));
    let server = serve_config(&config).await;
    let ask = |tenants: &[&str]| {
        let mut req = c.get(format!("{}/x", server.base)).header("x-auth-principal", "dave");
        for t in tenants {
            req = req.header("x-auth-tenant", *t);
        }
        req.send()
    };
    let res = ask(&["Globex"]).await.unwrap();
    assert_eq!((res.status().as_u16(), header(&res, "x-auth-tenant").unwrap()), (200, "globex".to_string()));
    let res = ask(&[]).await.unwrap();
    assert_eq!((res.status().as_u16(), header(&res, "x-auth-tenant").unwrap()), (200, String::new()));
    assert_eq!(ask(&["not a tenant"]).await.unwrap().status(), 401);
    assert_eq!(ask(&["acme", "globex"]).await.unwrap().status(), 400, "a repeated tenant header is ambiguous");
    server.shutdown().await;
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn a_run_yaml_with_only_route_policy_judges_anonymous_requests() {
    let dir = tempfile::tempdir().unwrap();
    let run_yaml = "\
server:
  auth:
    route_policy:
      - permit: {paths: [/v1/models, /v1/health]}
      - permit: {paths: \"*\"}
        when: user with admin in roles
      - forbid: {paths: /v1/files*}
        unless: user with admin in roles
      - permit: {paths: /v1/files*}
";
    let config = load(&write(dir.path(), "run.yaml", run_yaml));
    let server = serve_config(&config).await;
    let c = client();
    let get = |path: &str| c.get(format!("{}{path}", server.base)).bearer_auth("ignored").send();
    let res = get("/v1/models").await.unwrap();
    assert_eq!(res.status(), 200, "an unconditioned permit applies to anonymous requests");
    assert_eq!(header(&res, "x-auth-principal").unwrap(), "");
    assert_eq!(get("/v1/health").await.unwrap().status(), 200);
    let res = get("/v1/chat/completions").await.unwrap();
    assert_eq!(res.status(), 403, "a conditioned permit never matches without a user");
    assert!(json(res).await["error"]["message"].as_str().unwrap().contains("/v1/chat/completions"));
    // A conditioned forbid refuses without a user (OGX skips it and the later permit would apply).
    assert_eq!(get("/v1/files/1").await.unwrap().status(), 403);
    server.shutdown().await;

    // /v1/version is not listed: route_policy judges OGX's public routes too, as OGX does.
    let base = serve_layer(&config).await;
    assert_eq!(c.get(format!("{base}/v1/version")).send().await.unwrap().status(), 403);
    assert_eq!(
        c.get(format!("{base}/v1/models")).send().await.unwrap().status(),
        500,
        "no principal for `Authenticated`"
    );
}

#[tokio::test]
async fn a_provider_type_that_expands_to_nothing_turns_authentication_off() {
    let dir = tempfile::tempdir().unwrap();
    let run_yaml = "\
server:
  auth:
    provider_config:
      type: ${env.TOKENGATE_TEST_SURELY_UNSET_PROVIDER:+oauth2_token}
      issuer: ${env.TOKENGATE_TEST_SURELY_UNSET_ISSUER}
    route_policy:
      - permit: {paths: /v1/models}
";
    let path = write(dir.path(), "run.yaml", run_yaml);
    let config = load(&path);
    let server = serve_config(&config).await;
    let res = client().get(format!("{}/v1/models", server.base)).send().await.unwrap();
    assert_eq!(res.status(), 200, "no provider: route_policy alone judges");
    assert_eq!(header(&res, "x-auth-principal").unwrap(), "");
    assert_eq!(client().get(format!("{}/admin", server.base)).send().await.unwrap().status(), 403);
    server.shutdown().await;

    // explain says what serve does: route_policy alone.
    let cfg = path.display().to_string();
    let out = run(args(&["explain", "--config", &cfg, "--token", "x", "--path", "/v1/models"])).await;
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let out = run(args(&["explain", "--config", &cfg, "--token", "x", "--path", "/admin"])).await;
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("route_policy"), "{}", stdout(&out));
    let out = run(args(&["check", "--config", &path.display().to_string(), "--token", "x"])).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no provider"), "{}", stderr(&out));

    // tokengate's own format still needs a provider.
    let e = tokengate::Config::parse("realm: x\n", tokengate::config::Format::Yaml).unwrap_err();
    assert_eq!(e.field, "provider_config");
}

/// Attack review: a `server.auth` that configures no provider by accident never
/// starts an open gate; only OGX's `${env…}` switch or an absent
/// `provider_config`, next to a route_policy that refuses something, does.
#[test]
fn no_provider_only_when_meant() {
    let policy = "    route_policy: [{permit: {paths: /v1/models}}]\n";
    let refused = [
        "server:\n  auth: {}\n".to_string(),
        "server:\n  auth:\n    provider_config:\n".to_string(),
        format!("server:\n  auth:\n    provider_config:\n{policy}"),
        "server:\n  auth:\n    providers: ~\n".to_string(),
        "server:\n  auth:\n    access_policy: [{permit: {actions: [read]}}]\n".to_string(),
        format!("server:\n  auth:\n    provider_type: oauth2_token\n    config: {{issuer: x}}\n{policy}"),
        format!("server:\n  auth:\n    authentication: {{type: oauth2_token}}\n{policy}"),
        format!("server:\n  auth:\n    provider_config: {{type: ''}}\n{policy}"),
        format!("server:\n  auth:\n    provider_config: {{type: ' '}}\n{policy}"),
        format!("server:\n  auth:\n    provider_config: {{type: null}}\n{policy}"),
        // Switched off, but nothing refuses anything.
        "server:\n  auth:\n    provider_config: {type: '${env.TOKENGATE_TEST_SURELY_UNSET_P:+custom}'}\n".to_string(),
        // multi with nobody to resolve a tenant.
        format!("server:\n  tenancy: {{mode: multi}}\n  auth:\n{policy}"),
        // tokengate's keys beside a run.yaml's server.auth would be ignored.
        format!("provider_config: {{type: api_key}}\nserver:\n  auth:\n{policy}"),
    ];
    for text in &refused {
        let built = tokengate::Config::parse(text, tokengate::config::Format::Yaml)
            .and_then(|c| c.build(&tokengate::Registry::with_builtins()));
        assert!(built.is_err(), "must not load: {text}");
    }
    let meant = format!("server:\n  auth:\n{policy}");
    let pipeline = tokengate::Config::parse(&meant, tokengate::config::Format::Yaml)
        .unwrap()
        .build(&tokengate::Registry::with_builtins())
        .unwrap();
    assert!(pipeline.is_anonymous());
}
