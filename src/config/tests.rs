use super::*;

#[test]
fn llama_stack_run_yaml_reads_only_server_auth() {
    let yaml = r#"
version: 2
image_name: demo
apis: [inference]
providers: {inference: []}
server:
  port: 8321
  auth:
    provider_config:
      type: github_token
"#;
    let c = Config::parse(yaml, Format::Yaml).unwrap();
    assert!(c.from_llama_stack);
    assert_eq!(c.settings.provider_config.unwrap()["type"], "github_token");
}

#[test]
fn unknown_top_level_field_is_named() {
    let e = Config::parse("provider_config: {type: custom}\nlisten_addr: x\n", Format::Yaml).unwrap_err();
    assert_eq!(e.field, "listen_addr");
    assert!(e.message.contains("unknown field"), "{e}");
}

#[test]
fn yaml_syntax_error_names_line_and_column() {
    let e = Config::parse("provider_config:\n  type: custom\n  keys: [unclosed\n", Format::Yaml).unwrap_err();
    assert!(e.message.starts_with("invalid YAML: "), "{e}");
    // Where the parser gave up (end of input), and the `[` left open.
    assert!(e.message.contains("at line 4 column 1"), "{e}");
    assert!(e.message.contains("flow sequence at line 3 column 9"), "{e}");
}

#[test]
fn admin_listen_separates_health_and_metrics() {
    let yaml = "provider_config: {type: custom}\nlisten: 0.0.0.0:8080\nadmin_listen: 127.0.0.1:9090\n";
    let c = Config::parse(yaml, Format::Yaml).unwrap();
    assert_eq!(c.settings.admin_listen, Some("127.0.0.1:9090".parse().unwrap()));
    #[cfg(feature = "server")]
    assert!(crate::http::server::ServeOptions::from_config(&c).separate_admin);
    let e = Config::parse("provider_config: {type: custom}\nadmin_listen: 9090\n", Format::Yaml).unwrap_err();
    assert_eq!(e.field, "admin_listen", "{e}");
}

#[test]
fn missing_provider_is_an_error() {
    let e = Config::parse("listen: 127.0.0.1:9000\n", Format::Yaml).unwrap_err();
    assert_eq!(e.field, "provider_config");
}

#[test]
fn claims_mapping_keeps_file_order() {
    // Rules apply in the order written, so attribute values come out in that order.
    let c = Config::parse(
        "provider_config:\n  type: x\n  claims_mapping:\n    zeta: roles\n    alpha: roles\n",
        Format::Yaml,
    )
    .unwrap();
    let mapping = c.settings.provider_config.unwrap()["claims_mapping"].clone();
    let keys: Vec<&String> = mapping.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["zeta", "alpha"]);
}

#[test]
fn toml_and_json() {
    let t = Config::parse("[provider_config]\ntype = \"custom\"\nendpoint = \"http://x\"\n", Format::Toml).unwrap();
    assert_eq!(t.settings.provider_config.unwrap()["type"], "custom");
    let j = Config::parse(r#"{"provider_config": {"type": "custom"}}"#, Format::Json).unwrap();
    assert!(!j.from_llama_stack);
}

#[test]
fn plaintext_api_keys_are_redacted_in_debug() {
    let c = Config::parse("provider_config: {type: local_api_key, api_keys: [sk-plain-1, sk-plain-2]}\n", Format::Yaml)
        .unwrap();
    let shown = format!("{:?}", c.settings);
    assert!(!shown.contains("sk-plain"), "{shown}");
}
