//! tokengate in front of OGX (issue #13): the shipped pair
//! `config/ogx-gateway.yaml` (tokengate's gateway) and
//! `config/ogx-behind-gateway.run.yaml` (OGX's `upstream_header` side),
//! composed as nginx composes them: the identity headers of the gateway's 200
//! are set on the request to the back end, which decodes them into exactly
//! the principal, attributes and tenant the gateway found.

use crate::fixtures::*;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::time::Duration;
use tokengate::config::Format;
use tokengate::Config;

fn example(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config").join(name)).unwrap()
}

/// The gateway half, pointed at a real issuer on 127.0.0.1.
fn gateway(idp: &Idp) -> Config {
    let mut value: Value = yaml_serde::from_str(&example("ogx-gateway.yaml")).unwrap();
    value["provider_config"]["issuer"] = json!(idp.url());
    value["provider_config"]["audience"] = json!(tokengate::dev::DEV_AUDIENCE);
    value["provider_config"]["jwks"] = json!({"uri": idp.issuer.jwks_uri()});
    Config::from_value(value).unwrap()
}

#[tokio::test]
async fn the_gateway_and_ogx_halves_compose_exactly() {
    let idp = Idp::start().await;
    let front = serve_config(&gateway(&idp)).await;
    let back = Config::parse(&example("ogx-behind-gateway.run.yaml"), Format::Yaml).unwrap();
    let back = serve_layer(&back).await;
    let c = client();

    let mint = |sub: &str, claims: Value| {
        let claims: Map<String, Value> = claims.as_object().cloned().unwrap_or_default();
        idp.issuer.mint(sub, &claims, Duration::from_secs(600)).unwrap()
    };
    let tokens = [
        mint("alice@example.com", json!({"tenant": "Acme", "groups": ["ml", "infra"], "project": "p1"})),
        // Values a header could garble: commas, quotes, non-ASCII, an empty string.
        mint("bob", json!({"tenant": "globex-2", "groups": ["r&d, west", "josé", "\"q\"", ""]})),
    ];
    for token in &tokens {
        // What nginx's auth_request subrequest sends (config/nginx-auth-request.conf).
        let res = c
            .get(format!("{}/_tokengate", front.base))
            .bearer_auth(token)
            .header("x-original-uri", "/v1/models")
            .header("x-original-method", "GET")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let copied: Vec<(String, String)> = ["x-auth-principal", "x-auth-attributes", "x-auth-tenant"]
            .iter()
            .map(|h| (h.to_string(), header(&res, h).unwrap()))
            .collect();
        let found = json(res).await;

        // nginx's proxy_set_header: the gateway's values replace the client's own copies.
        let mut req = c.get(format!("{back}/v1/models"));
        for (name, value) in &copied {
            req = req.header(name, value);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200, "{copied:?}");
        let seen = json(res).await;
        assert_eq!(seen, found, "OGX's side decodes exactly what the gateway found");
        assert!(seen["tenant"].is_string());
    }

    // The gateway half requires a tenant (tenancy: multi).
    let res = c
        .get(format!("{}/_tokengate", front.base))
        .bearer_auth(mint("carol", json!({})))
        .header("x-original-uri", "/v1/models")
        .header("x-original-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // Straight to the back end with forged headers from an untrusted peer is refused
    // by tokengate's reading of the file (OGX relies on the network for this).
    let untrusted = Config::parse(
        &example("ogx-behind-gateway.run.yaml").replace("[127.0.0.1/32, 10.0.0.0/8]", "[10.0.0.0/8]"),
        Format::Yaml,
    )
    .unwrap();
    let untrusted = serve_layer(&untrusted).await;
    let res = c.get(format!("{untrusted}/v1/models")).header("x-auth-principal", "root").send().await.unwrap();
    assert_eq!(res.status(), 403);
    front.shutdown().await;
}

#[tokio::test]
async fn access_policy_loads_as_ogx_loads_it_and_is_refused_where_ogx_refuses_it() {
    let good = example("ogx-behind-gateway.run.yaml");
    Config::parse(&good, Format::Yaml).unwrap();
    let bad = good.replace("actions: [read]", "actions: [read, write]");
    let e = Config::parse(&bad, Format::Yaml).unwrap_err();
    assert_eq!(e.field, "server.auth.access_policy[1].permit.actions", "{e}");
    let bad = good.replace("when: user in owners teams", "when: user is a team member");
    let e = Config::parse(&bad, Format::Yaml).unwrap_err();
    assert_eq!(e.field, "server.auth.access_policy[1].when", "{e}");
}
