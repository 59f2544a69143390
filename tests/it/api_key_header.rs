//! API keys in `X-API-Key` (issue #7) through `tokengate serve` and the layer,
//! and `tokengate key new` producing a key and an entry that really work.

use crate::fixtures::*;
use tokengate::http::server::ServeOptions;
use tokengate::DynProvider;

const KEY: &str = "tg_header-key-0123456789abcdef";

fn config_text() -> String {
    format!("realm: test\nprovider_config:\n{}", api_key_yaml("  ", &[(KEY, "ci-bot", &["deployer"])]))
}

#[tokio::test]
async fn x_api_key_through_serve() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(&write(dir.path(), "c.yaml", &config_text()));
    let server = serve_config(&config).await;
    let c = client();
    let url = format!("{}/v1/models", server.base);

    let res = c.get(&url).header("X-API-Key", KEY).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-auth-principal").unwrap(), "ci-bot");
    assert_eq!(header(&res, "x-auth-attr-roles").unwrap(), "deployer");

    let res = c.get(&url).header("X-API-Key", "tg_wrong-key").send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        header(&res, "www-authenticate").unwrap(),
        "Bearer realm=\"test\", error=\"invalid_token\", error_description=\"unknown API key\""
    );

    // Authorization wins when both are sent.
    let res = c.get(&url).bearer_auth("tg_wrong-key").header("X-API-Key", KEY).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = c.get(&url).bearer_auth(KEY).header("X-API-Key", "tg_wrong-key").send().await.unwrap();
    assert_eq!(res.status(), 200);

    // Malformed: 400 invalid_request, the value never echoed.
    let res = c.get(&url).header("X-API-Key", KEY).header("X-API-Key", KEY).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        header(&res, "www-authenticate").unwrap(),
        "Bearer realm=\"test\", error=\"invalid_request\", error_description=\"several X-API-Key headers\""
    );
    let res = c.get(&url).header("X-API-Key", "tg_a b").send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(!header(&res, "www-authenticate").unwrap().contains("tg_a"));

    // Neither header: the challenge without `error`, and the message names both ways.
    let res = c.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(header(&res, "www-authenticate").unwrap(), "Bearer realm=\"test\"");
    let message = json(res).await["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("X-API-Key") && message.contains("Authorization: Bearer"), "{message}");
    server.shutdown().await;
}

#[tokio::test]
async fn x_api_key_through_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(&write(dir.path(), "c.yaml", &config_text()));
    let base = serve_layer(&config).await;
    let res = client().get(format!("{base}/x")).header("x-api-key", KEY).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["principal"], "ci-bot");
}

#[tokio::test]
async fn the_key_never_reaches_the_provider_context() {
    let p = Recording::new("rec");
    let provider: DynProvider = p.clone();
    let server = serve_provider(provider, ServeOptions::default()).await;
    let res = client()
        .get(format!("{}/x", server.base))
        .header("x-api-key", "good")
        .header("x-trace", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the key is passed as the token");
    let ctx = p.last();
    assert!(!ctx.headers().unwrap().contains_key("x-api-key"), "{:?}", ctx.headers());
    assert_eq!(ctx.headers().unwrap()["x-trace"], "1");
    server.shutdown().await;
}

#[tokio::test]
async fn key_new_prints_a_working_key_and_entry() {
    let out = run(args(&[
        "key",
        "new",
        "--prefix",
        "tg_",
        "--principal",
        "deploy-bot",
        "--id",
        "deploy-2026",
        "--attr",
        "roles=deployer",
        "--attr",
        "roles=reader",
        "--attr",
        "teams=infra",
        "--expires",
        "2999-01-01T00:00:00Z",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let key = text.lines().next().unwrap().to_string();
    // The checksummed format of #22: `tg_k1_`, 43 random and 6 checksum characters.
    assert!(key.starts_with("tg_k1_") && key.len() == 3 + 3 + 43 + 6, "{key}");
    let entry: String = text.lines().filter(|l| !l.starts_with('#')).skip(1).collect::<Vec<_>>().join("\n");
    assert!(!entry.contains(&key), "only the hash is in the entry");
    assert!(entry.contains(&tokengate_api_key::hash_key(&key)), "{entry}");

    // Pasted into a keys_file, it authenticates.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "keys.yaml", &format!("{entry}\n"));
    let config =
        load(&write(dir.path(), "c.yaml", "provider_config: {type: api_key, prefix: tg_, keys_file: keys.yaml}\n"));
    let provider = config.build(&tokengate::Registry::with_builtins()).unwrap();
    let p = provider.validate(&key, &tokengate::RequestContext::new("GET", "/")).await.unwrap();
    assert_eq!(p.principal, "deploy-bot");
    assert_eq!(p.attributes["roles"], vec!["deployer", "reader"]);
    assert_eq!(p.attributes["teams"], vec!["infra"]);
    provider.close().await;

    // Two runs never give the same key.
    let again = run(args(&["key", "new", "--json"])).await;
    assert_eq!(again.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(&stdout(&again)).unwrap();
    assert_ne!(v["key"].as_str().unwrap(), key);
    assert_eq!(v["hash"], tokengate_api_key::hash_key(v["key"].as_str().unwrap()));
    assert!(v["config_entry"].as_str().unwrap().contains("principal: api-key-"), "{v}");
}

#[tokio::test]
async fn key_new_usage_errors_exit_2() {
    for (extra, expected) in [
        (vec!["--expires", "next tuesday"], "--expires"),
        (vec!["--attr", "roles"], "write NAME=VALUE"),
        (vec!["--prefix", "tg/"], "prefix `tg/`"),
    ] {
        let mut a = args(&["key", "new"]);
        a.extend(args(&extra));
        let out = run(a).await;
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        assert!(stderr(&out).contains(expected), "{extra:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "no key printed on failure");
    }
}
