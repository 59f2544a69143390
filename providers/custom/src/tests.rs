use super::*;
use serde_json::json;

#[test]
fn params_drop_blank_values_like_parse_qs() {
    let mut ctx = RequestContext::default();
    ctx.set_query("a=1&a=&b=&c=x%20y&a=3");
    let p = llama_stack_params(ctx.params().unwrap());
    assert_eq!(p.get("a"), Some(&vec!["1", "3"]));
    assert!(!p.contains_key("b"));
    assert_eq!(p.get("c"), Some(&vec!["x y"]));
}

#[test]
fn reply_parsing_is_strict() {
    let ok =
        parse_reply(br#"{"principal":"alice","attributes":{"roles":["a","b"]},"message":null,"extra":1}"#).unwrap().0;
    assert_eq!(ok.principal, "alice");
    assert_eq!(ok.attributes["roles"], vec!["a", "b"]);
    assert!(parse_reply(br#"{"principal":"bob"}"#).unwrap().0.attributes.is_empty());
    assert!(parse_reply(br#"{"principal":"bob","attributes":null}"#).is_ok());
    for (body, needle) in [
        (&b"not json"[..], "not JSON"),
        (br#"[1]"#, "it is a list in JSON"),
        (br#"{}"#, "no `principal`"),
        (br#"{"principal":""}"#, "`principal` is empty"),
        (br#"{"principal":7}"#, "`principal` is a number"),
        (br#"{"principal":"a","attributes":["x"]}"#, "`attributes` is a list"),
        (br#"{"principal":"a","attributes":{"r":"x"}}"#, "`attributes.r` is a string"),
        (br#"{"principal":"a","attributes":{"r":[1]}}"#, "`attributes.r` holds a number"),
        (br#"{"principal":"a","message":{}}"#, "`message` is an object"),
    ] {
        let err = parse_reply(body).unwrap_err();
        assert!(err.contains(needle), "{err} should mention {needle}");
    }
}

#[test]
fn messages_are_found_redacted_and_bounded() {
    let tok = "sk-secret-123";
    assert_eq!(endpoint_message(br#"{"message":"nope"}"#, tok).as_deref(), Some("nope"));
    assert_eq!(endpoint_message(br#"{"error":{"message":"bad key"}}"#, tok).as_deref(), Some("bad key"));
    assert_eq!(endpoint_message(br#"{"detail":"expired"}"#, tok).as_deref(), Some("expired"));
    assert_eq!(endpoint_message(br#"{"detail":[{"loc":1}]}"#, tok), None);
    assert_eq!(endpoint_message(b"<html>", tok), None);
    assert_eq!(endpoint_message(br#"{"message":"  "}"#, tok), None);
    let echoed = json!({"message": format!("key {tok} unknown\nbye")}).to_string();
    assert_eq!(endpoint_message(echoed.as_bytes(), tok).as_deref(), Some("key <redacted> unknown bye"));
    let long = json!({"message": "x".repeat(5000)}).to_string();
    assert_eq!(endpoint_message(long.as_bytes(), tok).unwrap().chars().count(), MAX_MESSAGE_CHARS + 1);
}

#[test]
fn config_is_checked_and_debug_hides_passwords() {
    let ctx = BuildContext::default();
    let err = CustomProvider::new(CustomConfig::new("ftp://x"), &ctx).unwrap_err();
    assert_eq!(err.field, "endpoint");
    let err = CustomProvider::new(CustomConfig::new("not a url"), &ctx).unwrap_err();
    assert_eq!(err.field, "endpoint");
    let cfg = CustomConfig::new("https://svc:hunter2@auth.example.com:8443/check");
    assert!(!format!("{cfg:?}").contains("hunter2"));
    let p = CustomProvider::new(cfg, &ctx).unwrap();
    assert!(!format!("{p:?}").contains("hunter2"));
    assert_eq!(p.host(), "auth.example.com:8443");
    assert_eq!(
        p.describe().message,
        "Authentication required. Please provide your API key as a Bearer token (validated by auth.example.com:8443)"
    );
    let typo = json!({"endpoint": "https://a", "endpiont": "typo"});
    let Err(err) = CustomBuilder.build(typo, &ctx) else { panic!("unknown field accepted") };
    assert!(err.message.contains("endpiont"), "{err}");
    let Err(err) = CustomBuilder.build(json!({}), &ctx) else { panic!("missing endpoint accepted") };
    assert!(err.message.contains("endpoint"), "{err}");
}
