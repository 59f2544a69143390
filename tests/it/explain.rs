//! `tokengate explain` (issue #7), driving the real binary against real
//! identity providers on 127.0.0.1.

use crate::fixtures::*;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::time::Duration;

const KEY: &str = "tg_explain-key-0123456789abc";

struct Setup {
    idp: Idp,
    dir: tempfile::TempDir,
    config: PathBuf,
}

async fn setup() -> Setup {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "providers:\n{}{}route_policy:\n  default: permit\n  rules:\n    - path: /admin*\n      forbid: {{attribute: roles, none_of: [admin]}}\n",
        list_item(&api_key_yaml("    ", &[(KEY, "ci-bot", &["deployer"])])),
        list_item(&oauth2_yaml("    ", &idp.url(), &idp.issuer.jwks_uri(), &[("sub", "roles"), ("groups", "teams"), ("team", "teams")])),
    );
    let config = write(dir.path(), "c.yaml", &yaml);
    Setup { idp, dir, config }
}

async fn explain(s: &Setup, token: &str, extra: &[&str]) -> (Option<i32>, Value, String) {
    let mut a = args(&["explain", "--config", &s.config.display().to_string(), "--token", token]);
    a.extend(args(extra));
    let out = run(a).await;
    let text = stdout(&out);
    assert!(!text.contains(token) && !stderr(&out).contains(token), "the token must never be printed");
    let json = if extra.contains(&"text") { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::Null) };
    (out.status.code(), json, text)
}

fn checks(v: &Value) -> Vec<(String, bool, String)> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (c["check"].as_str().unwrap().into(), c["ok"].as_bool().unwrap(), c["detail"].as_str().unwrap().into())
        })
        .collect()
}

fn find<'a>(list: &'a [(String, bool, String)], name: &str) -> Option<&'a (String, bool, String)> {
    list.iter().find(|c| c.0 == name)
}

#[tokio::test]
async fn a_valid_jwt_shows_owner_every_check_and_attribute_sources() {
    let s = setup().await;
    let mut claims = Map::new();
    claims.insert("groups".into(), json!(["ml", "ops"]));
    claims.insert("team".into(), json!("ml"));
    let token = s.idp.issuer.mint("alice", &claims, Duration::from_secs(600)).unwrap();
    let (code, v, _) = explain(&s, &token, &[]).await;
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(
        v["provider"],
        json!({"index": 1, "type": "oauth2_token", "config": "providers[1]", "accepts": format!("JWTs from {}", s.idp.url())})
    );
    let c = checks(&v);
    let names: Vec<&str> = c.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "ownership",
            "segments",
            "header",
            "payload",
            "key",
            "signature",
            "exp",
            "nbf",
            "iat",
            "iss",
            "aud",
            "principal",
            "route_policy rule",
            "route_policy"
        ]
    );
    assert!(c.iter().all(|c| c.1), "{c:?}");
    let ownership = &find(&c, "ownership").unwrap().2;
    assert!(
        ownership.starts_with("providers[0] api_key: not its kind of token")
            && ownership.ends_with("providers[1] oauth2_token owns it"),
        "{ownership}"
    );
    assert!(find(&c, "header").unwrap().2.starts_with("alg ES256, kid "), "{c:?}");
    assert_eq!(find(&c, "iss").unwrap().2, format!("{} as configured", s.idp.url()));
    assert_eq!(find(&c, "aud").unwrap().2, "tokengate-dev is one of [tokengate-dev]");
    assert!(find(&c, "exp").unwrap().2.starts_with("expires at "));
    assert_eq!(find(&c, "principal").unwrap().2, "alice (claim sub)");
    assert_eq!(
        v["attributes"],
        json!([
            {"attribute": "roles", "value": "alice", "claim": "sub", "rule": "claims_mapping: sub -> roles"},
            {"attribute": "teams", "value": "ml", "claim": "groups", "rule": "claims_mapping: groups -> teams"},
            {"attribute": "teams", "value": "ops", "claim": "groups", "rule": "claims_mapping: groups -> teams"},
        ]),
        "`team: ml` repeats a value `groups` already gave, so it is not listed again"
    );
    assert_eq!(v["principal"]["principal"], "alice");
    assert!(v["error"].is_null());
}

#[tokio::test]
async fn failures_show_where_validation_stopped() {
    let s = setup().await;

    let (code, v, _) = explain(&s, &s.idp.expired_token("bob"), &[]).await;
    assert_eq!(code, Some(1));
    let c = checks(&v);
    assert!(find(&c, "key").unwrap().1 && find(&c, "signature").unwrap().1);
    let exp = find(&c, "exp").unwrap();
    assert!(!exp.1 && exp.2.starts_with("expired at 2001-09-09T01:46:40Z"), "{exp:?}");
    assert!(v["principal"].is_null());
    assert_eq!(v["error"]["code"], "invalid_token");
    assert!(v["error"]["detail"].as_str().unwrap().starts_with("token expired"));

    // A bad signature: claim checks were never reached, so they are not listed.
    let (code, v, _) = explain(&s, &tamper(&s.idp.token("carol")), &[]).await;
    assert_eq!(code, Some(1));
    let c = checks(&v);
    let sig = find(&c, "signature").unwrap();
    assert!(!sig.1 && sig.2.starts_with("signature invalid"), "{sig:?}");
    assert!(find(&c, "exp").is_none() && find(&c, "principal").is_none(), "{c:?}");

    // Authenticated but refused by the route policy.
    let (code, v, _) = explain(&s, &s.idp.token("dave"), &["--path", "/admin/x", "--method", "POST"]).await;
    assert_eq!(code, Some(1));
    let rp = find(&checks(&v), "route_policy").unwrap().clone();
    assert_eq!(
        (rp.1, rp.2.as_str()),
        (false, "route POST /admin/x is forbidden by route_policy rule 1 (roles none of [admin])")
    );
    assert_eq!(v["error"]["code"], "insufficient_scope");
    assert!(v["principal"].is_null());
    assert!(!v["attributes"].as_array().unwrap().is_empty(), "attributes still explained");

    // Nobody owns it.
    let (code, v, _) = explain(&s, "opaque-thing", &[]).await;
    assert_eq!(code, Some(1));
    assert!(v["provider"].is_null());
    let own = find(&checks(&v), "ownership").unwrap().clone();
    assert!(!own.1 && own.2.starts_with("no provider owns it"), "{own:?}");
}

#[tokio::test]
async fn api_keys_and_text_format() {
    let s = setup().await;
    let (code, v, _) = explain(&s, KEY, &[]).await;
    assert_eq!(code, Some(0));
    assert_eq!(v["provider"]["type"], "api_key");
    let c = checks(&v);
    assert_eq!(find(&c, "shape").unwrap().2, format!("opaque token (not a JWT), {} characters", KEY.len()));
    assert_eq!(find(&c, "provider").unwrap().2, "api_key accepted the token as ci-bot");
    assert_eq!(
        v["attributes"],
        json!([{"attribute": "roles", "value": "deployer", "claim": null, "rule": "set by the api_key provider"}])
    );

    let (code, _, text) = explain(&s, &s.idp.expired_token("erin"), &["--format", "text"]).await;
    assert_eq!(code, Some(1));
    assert!(
        text.starts_with(&format!("provider: providers[1] (oauth2_token) - JWTs from {}\n", s.idp.url())),
        "{text}"
    );
    assert!(text.contains("[FAIL] exp"), "{text}");
    assert!(text.contains("error: invalid_token (claim): token expired at"), "{text}");
}

#[tokio::test]
async fn exit_codes_match_check() {
    let s = setup().await;
    let down = Idp::unreachable().await;
    let cfg = write(
        s.dir.path(),
        "down.yaml",
        &format!("provider_config:\n{}", oauth2_yaml("  ", &down.url(), &down.issuer.jwks_uri(), &[])),
    );
    let out = run(args(&["explain", "--config", &cfg.display().to_string(), "--token", &down.token("x")])).await;
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let key = checks(&v).into_iter().find(|c| c.0 == "key").unwrap();
    assert!(!key.1, "{key:?}");

    let bad = write(s.dir.path(), "bad.yaml", "provider_config: {type: nope}\n");
    let out = run(args(&["explain", "--config", &bad.display().to_string(), "--token", "x"])).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown provider type `nope`"));
    assert!(stdout(&out).is_empty());
}

/// What a hostile token puts in every field: each value is a line break, a
/// terminal escape or a bidirectional override followed by a forged fact.
const FORGED: &[&str] = &[
    "dev\nprincipal: admin",
    "x\r\n  [ok  ] revocation     not revoked",
    "\u{1b}[2J\u{1b}[0;0Hprincipal: root",
    "a\u{2028}principal: admin",
    "b\u{2029}error: none",
    "c\u{85}principal: admin",
    "t\tab\u{b}\u{c}\u{7f}",
    "\u{202e}nimda\u{2066}\u{200f}\u{61c}",
];

/// The lines `explain --format text` writes for `v`, its `--format json` twin:
/// one per fact, so a value with a line break in it shows as a line too many.
fn facts(v: &Value) -> usize {
    let principal = &v["principal"];
    let mut n = 2 + v["checks"].as_array().unwrap().len();
    let attributes = v["attributes"].as_array().unwrap().len();
    n += if attributes > 0 { 1 + attributes } else { 0 };
    if !principal.is_null() {
        n += 1
            + usize::from(!principal["tenant"].is_null())
            + usize::from(principal.get("unknown_attributes").is_some());
    }
    n + usize::from(!v["error"].is_null())
}

/// #20: every value `explain --format text` prints (principal, attribute
/// names and values, claims, check details, tenant, error details) is escaped
/// as the log escapes it: a group named `dev\nprincipal: admin` used to print
/// a forged `principal: admin` line and a forged `[ok  ] revocation` check.
#[tokio::test]
async fn no_value_in_text_output_can_forge_a_line() {
    let s = setup().await;
    let weird_claim = "gr\u{2028}oups\n[ok  ] x";
    let yaml = format!(
        "provider_config:\n{}  tenant_claim: org\n",
        oauth2_yaml(
            "  ",
            &s.idp.url(),
            &s.idp.issuer.jwks_uri(),
            &[("sub", "roles"), ("groups", "teams"), (r#""gr\Loups\n[ok  ] x""#, r#""te\Nams\nprincipal: admin""#)]
        )
    );
    let config = write(s.dir.path(), "forged.yaml", &yaml);
    let forged = |key: &str, value: Value| {
        let mut claims = Map::new();
        claims.insert(key.into(), value);
        claims
    };
    let mut claims = forged("groups", json!(FORGED));
    claims.insert(weird_claim.into(), json!(FORGED[3]));
    // A principal with control characters is refused; one with a line separator is not.
    let accepted = s.idp.issuer.mint(FORGED[3], &claims, Duration::from_secs(600)).unwrap();
    let cases = [
        // Accepted: the principal, attributes and their claims, check details.
        (accepted.clone(), 0),
        // Refused: the principal in its check's detail.
        (s.idp.issuer.mint(FORGED[0], &claims, Duration::from_secs(600)).unwrap(), 1),
        // Refused: a tenant, an issuer, an audience in the error's detail.
        (s.idp.issuer.mint("t", &forged("org", json!(FORGED[1])), Duration::from_secs(600)).unwrap(), 1),
        (s.idp.issuer.mint("i", &forged("iss", json!(FORGED[2])), Duration::from_secs(600)).unwrap(), 1),
        (s.idp.issuer.mint("a", &forged("aud", json!(FORGED[4])), Duration::from_secs(600)).unwrap(), 1),
        // A kid the key set lacks, in the header and key checks and the error.
        (unsigned_with_kid(FORGED[5]), 1),
    ];
    let config = config.display().to_string();
    let explain = |token: &str, format: &'static str| {
        run(args(&["explain", "--config", &config, "--token", token, "--format", format]))
    };
    let escapes_nothing = |text: &str| !text.chars().any(|c| c != '\n' && tokengate::ops::audit::needs_escape(c));
    for (token, code) in &cases {
        let out = explain(token, "json").await;
        assert_eq!(out.status.code(), Some(*code), "{}{}", stderr(&out), stdout(&out));
        let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
        let text = stdout(&explain(token, "text").await);
        assert_eq!(text.lines().count(), facts(&v), "a value made a line of its own:\n{text}\n{v:#}");
        assert!(escapes_nothing(&text), "{text:?}");
        let known = ["provider: ", "checks:", "  [ok  ] ", "  [FAIL] ", "attributes:", "  ", "principal: ", "error: "];
        for line in text.lines() {
            assert!(known.iter().any(|p| line.starts_with(p)), "{line:?} in\n{text}");
        }
        assert!(!text.lines().any(|l| l.trim_start().starts_with("[ok  ] revocation")), "{text}");
        assert!(text.lines().filter(|l| l.starts_with("principal:")).count() <= 1, "{text}");
    }

    let out = explain(&accepted, "json").await;
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["principal"]["principal"], FORGED[3], "JSON keeps the values themselves");
    assert_eq!(v["principal"]["attributes"]["teams"], json!(FORGED));
    assert!(escapes_nothing(&stdout(&out)), "the JSON escapes them: {}", stdout(&out));
    let text = stdout(&explain(&accepted, "text").await);
    assert!(text.contains("\nprincipal: a\\u{2028}principal: admin\n"), "{text}");
    for escaped in [
        r"x\r\n  [ok  ] revocation",
        r"\u{1b}[2J\u{1b}[0;0Hprincipal",
        r"a\u{2028}principal",
        r"b\u{2029}error",
        r"c\u{85}principal",
        r"t\tab\u{b}\u{c}\u{7f}",
        r"\u{202e}nimda\u{2066}\u{200f}\u{61c}",
        r"te\u{85}ams\nprincipal: admin = a\u{2028}principal: admin   (claim gr\u{2028}oups\n[ok  ] x, ",
    ] {
        assert!(text.contains(escaped), "{escaped} in {text}");
    }

    // The request's path: in a usage error, or in the route policy's check.
    let out =
        run(args(&["explain", "--config", &config, "--token", KEY, "--format", "text", "--path", FORGED[0]])).await;
    let (err, text) = (stderr(&out), stdout(&out));
    assert!(err.lines().count() <= 1 && escapes_nothing(&err), "{err:?}");
    assert!(escapes_nothing(&text) && !text.lines().any(|l| l.starts_with("principal: admin")), "{text}");
}

/// A JWT whose header names `kid`, signed by nobody.
fn unsigned_with_kid(kid: &str) -> String {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": kid}).to_string();
    format!("{}.{}.{}", b64(header.as_bytes()), b64(br#"{"sub":"k"}"#), b64(&[7u8; 64]))
}
