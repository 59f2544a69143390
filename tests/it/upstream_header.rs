//! `upstream_header` through `tokengate serve` and the layer (issue #7): no
//! token needed, identity believed only from a trusted peer (here the test
//! client on 127.0.0.1), 403 with the headers ignored otherwise.

use crate::fixtures::*;

fn config_text(trusted: &str) -> String {
    format!(
        "realm: test\nprovider_config:\n  type: upstream_header\n  trusted_proxy_cidrs: [{trusted}]\n  attribute_headers: {{x-forwarded-groups: teams}}\n"
    )
}

#[tokio::test]
async fn trusted_peer_without_any_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(&write(dir.path(), "c.yaml", &config_text("127.0.0.1")));
    let server = serve_config(&config).await;
    let res = client()
        .get(format!("{}/x", server.base))
        .header("x-forwarded-user", "alice@example.com")
        .header("x-forwarded-groups", "ml, infra")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-auth-principal").unwrap(), "alice@example.com");
    assert_eq!(header(&res, "x-auth-attr-teams").unwrap(), "ml,infra");

    // Trusted proxy, but nobody logged in there: 401.
    let res = client().get(format!("{}/x", server.base)).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(header(&res, "www-authenticate").unwrap().contains("sent no x-forwarded-user header"));
    server.shutdown().await;

    let base = serve_layer(&config).await;
    let res = client().get(format!("{base}/x")).header("x-forwarded-user", "bob").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["principal"], "bob");
}

/// #11: a client's `X-Forwarded-Groups: admins` next to the proxy's own value
/// used to be joined into both; a repeated identity header is now 400.
#[tokio::test]
async fn repeated_identity_header_is_refused_not_joined() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(&write(dir.path(), "c.yaml", &config_text("127.0.0.1")));
    let server = serve_config(&config).await;
    let res = client()
        .get(format!("{}/x", server.base))
        .header("x-forwarded-user", "mallory")
        .header("x-forwarded-groups", "admins")
        .header("x-forwarded-groups", "ml")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(header(&res, "x-auth-attr-teams").is_none());
    server.shutdown().await;
    let base = serve_layer(&config).await;
    let res = client()
        .get(format!("{base}/x"))
        .header("x-forwarded-user", "mallory")
        .header("x-forwarded-user", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn untrusted_peer_is_403_and_headers_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(&write(dir.path(), "c.yaml", &config_text("10.0.0.0/8")));
    let server = serve_config(&config).await;
    let res = client().get(format!("{}/x", server.base)).header("x-forwarded-user", "admin").send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(
        header(&res, "www-authenticate").unwrap(),
        "Bearer realm=\"test\", error=\"insufficient_scope\", error_description=\"peer 127.0.0.1 is not a trusted proxy; identity headers ignored\""
    );
    assert!(header(&res, "x-auth-principal").is_none());
    server.shutdown().await;

    let base = serve_layer(&config).await;
    let res = client().get(format!("{base}/x")).header("x-forwarded-user", "admin").send().await.unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn chained_after_a_token_provider() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "providers:\n{}  - type: upstream_header\n    trusted_proxy_cidrs: [127.0.0.1]\n",
        list_item(&oauth2_yaml("    ", &idp.url(), &idp.issuer.jwks_uri(), &[]))
    );
    let config = load(&write(dir.path(), "c.yaml", &yaml));
    let server = serve_config(&config).await;
    let c = client();
    // A token goes to its owner...
    let res = c.get(format!("{}/x", server.base)).bearer_auth(idp.token("jwt-user")).send().await.unwrap();
    assert_eq!(header(&res, "x-auth-principal").unwrap(), "jwt-user");
    // ...no token at all goes to the provider that needs none.
    let res = c.get(format!("{}/x", server.base)).header("x-forwarded-user", "proxy-user").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-auth-principal").unwrap(), "proxy-user");
    server.shutdown().await;
}
