//! Provider chains (issue #7): an API key provider that owns its prefix and
//! two `oauth2_token` providers routed by the token's `iss`, built from a real
//! config file, against two real identity providers on 127.0.0.1.

use crate::fixtures::*;
use serde_json::json;
use tokengate::{Config, Reason, Registry, RequestContext};

const KEY: &str = "tg_chain-test-key-0123456789";

struct Setup {
    a: Idp,
    b: Idp,
    _dir: tempfile::TempDir,
    config: Config,
}

async fn setup() -> Setup {
    let (a, b) = (Idp::start().await, Idp::start().await);
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "realm: chain\nproviders:\n{}{}{}",
        list_item(&api_key_yaml("    ", &[(KEY, "ci-bot", &["deployer"])])),
        list_item(&oauth2_yaml("    ", &a.url(), &a.issuer.jwks_uri(), &[("groups", "a_groups")])),
        list_item(&oauth2_yaml("    ", &b.url(), &b.issuer.jwks_uri(), &[("groups", "b_groups")])),
    );
    let path = write(dir.path(), "chain.yaml", &yaml);
    let config = load(&path);
    Setup { a, b, _dir: dir, config }
}

fn accepted(s: &Setup) -> String {
    format!("API keys starting with `tg_`; JWTs from {}; JWTs from {}", s.a.url(), s.b.url())
}

#[tokio::test]
async fn each_token_goes_to_its_owner_and_iss_picks_the_key_set() {
    let s = setup().await;
    let provider = s.config.build(&Registry::with_builtins()).unwrap();
    let ctx = RequestContext::new("GET", "/");

    let p = provider.validate(KEY, &ctx).await.unwrap();
    assert_eq!(p.principal, "ci-bot");
    assert_eq!(p.attributes["roles"], vec!["deployer"]);
    assert_eq!(owner(&provider, KEY), Some((0, "api_key".to_string())));

    // Same subject at both issuers: which mapping applied shows which provider (and key set) decided.
    let from_a = s.a.token("alice");
    let p = provider.validate(&from_a, &ctx).await.unwrap();
    assert_eq!(p.principal, "alice");
    assert_eq!(p.attributes["a_groups"], vec!["ml", "ops"]);
    assert!(!p.attributes.contains_key("b_groups"));
    assert_eq!(owner(&provider, &from_a), Some((1, "oauth2_token".to_string())));

    let from_b = s.b.token("alice");
    let p = provider.validate(&from_b, &ctx).await.unwrap();
    assert_eq!(p.attributes["b_groups"], vec!["ml", "ops"]);
    assert!(!p.attributes.contains_key("a_groups"));
    assert_eq!(owner(&provider, &from_b), Some((2, "oauth2_token".to_string())));
    provider.close().await;
}

#[tokio::test]
async fn the_owners_rejection_is_final() {
    let s = setup().await;
    let provider = s.config.build(&Registry::with_builtins()).unwrap();
    let ctx = RequestContext::new("GET", "/");

    // An expired token from A is A's to reject: B is never asked, the reason is A's.
    let e = provider.validate(&s.a.expired_token("alice"), &ctx).await.unwrap_err();
    assert_eq!(e.code(), "invalid_token");
    assert_eq!(e.reason(), &Reason::claim("exp"), "{e}");
    assert!(e.detail().starts_with("token expired at "), "{e}");

    // A token claiming B's issuer but signed by A's key is B's to judge, and B's key set does not verify it.
    let mut claims = serde_json::Map::new();
    claims.insert("iss".into(), json!(s.b.url()));
    let forged = s.a.issuer.mint("mallory", &claims, std::time::Duration::from_secs(300)).unwrap();
    let e = provider.validate(&forged, &ctx).await.unwrap_err();
    assert_eq!(e.code(), "invalid_token");
    assert!(matches!(e.reason(), Reason::Key | Reason::Signature), "{e}");
    assert_eq!(owner(&provider, &forged), Some((2, "oauth2_token".to_string())));

    // A wrong key with the prefix is the API key provider's: no fall-through.
    let e = provider.validate("tg_not-a-configured-key", &ctx).await.unwrap_err();
    assert_eq!(e.detail(), "unknown API key");
    assert_eq!(e.reason(), &Reason::Rejected);
    provider.close().await;
}

#[tokio::test]
async fn tokens_nobody_owns_are_refused_listing_what_is_accepted() {
    let s = setup().await;
    let stranger = Idp::start().await;
    let provider = s.config.build(&Registry::with_builtins()).unwrap();
    let ctx = RequestContext::new("GET", "/");
    let expected = format!("no configured provider accepts this kind of token; accepted: {}", accepted(&s));
    for token in [stranger.token("eve"), "opaque-token-without-prefix".to_string()] {
        let e = provider.validate(&token, &ctx).await.unwrap_err();
        assert_eq!(e.code(), "invalid_token");
        assert_eq!(e.detail(), expected);
        assert_eq!(e.reason(), &Reason::NotOwned);
        assert_eq!(owner(&provider, &token), None);
    }
    provider.close().await;
}

#[tokio::test]
async fn served_401_lists_accepted_kinds() {
    let s = setup().await;
    let stranger = Idp::start().await;
    let server = serve_config(&s.config).await;
    let res =
        client().get(format!("{}/v1/models", server.base)).bearer_auth(stranger.token("eve")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        header(&res, "www-authenticate").unwrap(),
        format!(
            "Bearer realm=\"chain\", error=\"invalid_token\", error_description=\"no configured provider accepts this kind of token; accepted: {}\"",
            accepted(&s)
        )
    );
    let body = json(res).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("Authentication required. Please provide one of: {}: ", accepted(&s))),
        "{message}"
    );

    // No credentials at all: the challenge without `error`, the same list in the body.
    let res = client().get(format!("{}/v1/models", server.base)).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(header(&res, "www-authenticate").unwrap(), "Bearer realm=\"chain\"");
    assert_eq!(
        json(res).await["error"]["message"],
        format!("Authentication required. Please provide one of: {}: no credentials: neither an Authorization: Bearer header nor an X-API-Key header", accepted(&s))
    );

    // And each owner still answers through the server.
    for (token, principal) in
        [(KEY.to_string(), "ci-bot"), (s.a.token("a-user"), "a-user"), (s.b.token("b-user"), "b-user")]
    {
        let res = client().get(format!("{}/v1/models", server.base)).bearer_auth(&token).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "x-auth-principal").unwrap(), principal);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn ready_only_when_every_member_is_and_says_which_is_not() {
    let s = setup().await;
    let chain = s.config.build(&Registry::with_builtins()).unwrap();
    chain.ready().await.expect("both identity providers are up");

    let mut s = setup().await;
    s.b.stop();
    let chain = s.config.build(&Registry::with_builtins()).unwrap();
    let err = chain.ready().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.detail().starts_with("provider 3 (oauth2_token): "), "{err}");
}

/// The position and type of the member that owns `token`.
fn owner(pipeline: &tokengate::Pipeline, token: &str) -> Option<(usize, String)> {
    pipeline.owner(token).map(|i| (i, pipeline.members()[i].type_name().to_string()))
}
