//! The user's type is chosen by config exactly like a built-in one.

use tokengate::{Config, Format, Registry, RequestContext};
use tokengate_example_provider::SharedSecretBuilder;

const SECRET: &str = "0123456789abcdef0123456789abcdef-xyz";

fn registry() -> Registry {
    let mut r = Registry::with_builtins();
    r.register(SharedSecretBuilder);
    r
}

fn config(secret: &str) -> Config {
    let yaml = format!(
        "provider_config:\n  type: shared_secret\n  secret: \"{secret}\"\n  principal: billing\n  attributes: {{roles: [service]}}\n"
    );
    Config::parse(&yaml, Format::Yaml).expect("config parses")
}

#[tokio::test]
async fn user_type_is_built_from_config_and_validates() {
    let provider = config(SECRET).build(&registry()).expect("builds");
    let ctx = RequestContext::new("GET", "/");
    let p = provider.validate(SECRET, &ctx).await.expect("valid secret accepted");
    assert_eq!(p.principal, "billing");
    assert_eq!(p.attributes["roles"], vec!["service"]);
    let e = provider.validate("wrong", &ctx).await.unwrap_err();
    assert_eq!(e.code(), "invalid_token");
    assert_eq!(e.detail(), "the shared secret does not match");
    assert!(provider.message().contains("billing"));
}

#[test]
fn unregistered_type_is_a_config_error_naming_the_allowed_types() {
    let err = match config(SECRET).build(&Registry::with_builtins()) {
        Ok(_) => panic!("an unregistered type must not build"),
        Err(e) => e,
    };
    assert_eq!(err.field, "provider_config.type");
    assert!(err.message.contains("unknown provider type `shared_secret`"), "{err}");
}

#[test]
fn user_type_config_errors_name_the_field() {
    let err = match config("short").build(&registry()) {
        Ok(_) => panic!("a short secret must be refused"),
        Err(e) => e,
    };
    assert_eq!(err.field, "provider_config.secret");
    let yaml = "provider_config:\n  type: shared_secret\n  secret: x\n  principal: p\n  colour: blue\n";
    let err = match Config::parse(yaml, Format::Yaml).unwrap().build(&registry()) {
        Ok(_) => panic!("unknown field must be refused"),
        Err(e) => e,
    };
    assert!(err.message.contains("unknown field `colour`"), "{err}");
}
