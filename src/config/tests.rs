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

// ------------------------------------------------- run.yaml: nothing one level off

/// A whole OGX run.yaml: OGX's own sections, `server` with some of OGX's
/// settings, and `server_extra` (at column 2) beside a `server.auth` of
/// `auth` (at column 4).
fn run_yaml(server_extra: &str, auth: &str) -> String {
    let indent = |text: &str, by: &str| text.lines().map(|l| format!("{by}{l}\n")).collect::<String>();
    format!(
        "version: 2\nimage_name: t\napis: [inference]\nproviders: {{inference: []}}\nserver:\n  port: 8321\n{}  auth:\n{}",
        indent(server_extra, "  "),
        indent(auth, "    ")
    )
}

/// A provider that loads, with `extra` (flow-mapping members) in its section.
fn jwks_provider(extra: &str) -> String {
    format!(
        "provider_config: {{type: oauth2_token, issuer: 'https://idp.example', audience: ogx, \
         jwks: {{uri: 'https://idp.example/keys'}}{extra}}}\n"
    )
}

/// A route policy that refuses something (so that the no-provider mode could start with it).
const REFUSING_POLICY: &str = "route_policy: [{permit: {paths: [/v1/models]}}]\n";

fn load(text: &str) -> Result<crate::pipeline::Pipeline, ConfigError> {
    Config::parse(text, Format::Yaml)?.build(&Registry::with_builtins())
}

/// `text` must not load, refused at `field`, saying it belongs at `belongs`.
#[track_caller]
fn refused_as_misplaced(text: &str, field: &str, belongs: &str) {
    let e = load(text).err().unwrap_or_else(|| panic!("loads, but `{field}` is one level off:\n{text}"));
    assert_eq!(e.field, field, "{e}\n{text}");
    assert!(e.message.contains(&format!("read only as `{belongs}`")), "says where it belongs: {e}");
}

#[test]
fn the_base_run_yaml_of_these_tests_loads() {
    let pipeline = load(&run_yaml("", &jwks_provider(""))).unwrap();
    assert_eq!(pipeline.members()[0].type_name(), "oauth2_token");
}

#[test]
fn audience_under_introspection_is_refused_not_dropped() {
    // Before: dropped with a WARN, and the introspected token's audience went unchecked.
    let auth = "provider_config:\n  type: oauth2_token\n  issuer: https://idp.example\n  introspection:\n    \
                url: https://idp.example/introspect\n    client_id: gate\n    client_secret: s3cret\n    audience: api\n";
    refused_as_misplaced(
        &run_yaml("", auth),
        "server.auth.provider_config.introspection.audience",
        "server.auth.provider_config.audience",
    );
}

#[test]
fn issuer_under_jwks_is_refused_not_dropped() {
    // Before: dropped with a WARN (`allow_any_issuer`-like in effect: any issuer the key set signs for).
    let auth =
        "provider_config:\n  type: oauth2_token\n  audience: ogx\n  jwks:\n    uri: https://idp.example/keys\n    \
                issuer: https://idp.example\n";
    refused_as_misplaced(
        &run_yaml("", auth),
        "server.auth.provider_config.jwks.issuer",
        "server.auth.provider_config.issuer",
    );
}

#[test]
fn a_route_policy_beside_server_auth_is_refused_not_ignored() {
    // Before: loaded with no route policy at all, without a word.
    let text = run_yaml("route_policy: {default: forbid, rules: []}", &jwks_provider(""));
    refused_as_misplaced(&text, "server.route_policy", "server.auth.route_policy");
}

#[test]
fn a_provider_beside_server_auth_never_starts_the_no_provider_mode() {
    // Before: `server.provider_config` was ignored and, with a refusing route_policy in
    // `server.auth`, tokengate started with no authentication at all.
    let text = run_yaml("provider_config: {type: custom, endpoint: 'http://127.0.0.1:9/auth'}", REFUSING_POLICY);
    refused_as_misplaced(&text, "server.provider_config", "server.auth.provider_config");
    let providers = run_yaml("providers: [{type: custom, endpoint: 'http://127.0.0.1:9/auth'}]", REFUSING_POLICY);
    refused_as_misplaced(&providers, "server.providers", "server.auth.providers");
}

#[test]
fn every_tokengate_setting_beside_server_auth_is_refused() {
    // Before: each was ignored without a word.
    let settings = [
        ("revocation: {file: revoked.yaml}", "revocation", "server.auth.revocation"),
        ("forward_auth: {proxy: nginx}", "forward_auth", "server.auth.forward_auth"),
        ("open_paths: [/v1/models]", "open_paths", "server.auth.open_paths"),
        ("access_policy: []", "access_policy", "server.auth.access_policy"),
        ("audit: {output: stdout}", "audit", "server.auth.audit"),
        ("redis: {url: 'redis://127.0.0.1'}", "redis", "server.auth.redis"),
        ("realm: x", "realm", "server.auth.realm"),
        ("listen: 127.0.0.1:9", "listen", "server.auth.listen"),
        ("audience: api", "audience", "server.auth.provider_config.audience"),
        ("issuer: https://idp.example", "issuer", "server.auth.provider_config.issuer"),
        ("claims_mapping: {groups: teams}", "claims_mapping", "server.auth.provider_config.claims_mapping"),
        ("tenant_claim: org", "tenant_claim", "server.auth.provider_config.tenant_claim"),
        ("jwks: {uri: 'https://x'}", "jwks", "server.auth.provider_config.jwks"),
    ];
    for (line, key, belongs) in settings {
        refused_as_misplaced(&run_yaml(line, &jwks_provider("")), &format!("server.{key}"), belongs);
    }
}

#[test]
fn a_provider_setting_beside_provider_config_is_refused() {
    // Before: `server.auth.audience` and the like were dropped with a WARN.
    for (line, key) in [
        ("audience: api", "audience"),
        ("issuer: https://other.example", "issuer"),
        ("claims_mapping: {groups: teams}", "claims_mapping"),
        ("tenant_claim: org", "tenant_claim"),
        ("allow_missing_exp: false", "allow_missing_exp"),
        ("trusted_proxy_cidrs: [127.0.0.1/32]", "trusted_proxy_cidrs"),
    ] {
        let text = run_yaml("", &format!("{}{line}\n", jwks_provider("")));
        refused_as_misplaced(&text, &format!("server.auth.{key}"), &format!("server.auth.provider_config.{key}"));
    }
}

#[test]
fn a_gateway_setting_inside_provider_config_is_refused() {
    // Before: `access_policy`, `realm`, `providers` and `listen` were dropped with a WARN; the
    // others were refused, but without saying where they belong.
    for (member, key, belongs) in [
        (", access_policy: []", "access_policy", "server.auth.access_policy"),
        (", providers: []", "providers", "server.auth.providers"),
        (", realm: x", "realm", "server.auth.realm"),
        (", route_policy: {default: forbid, rules: []}", "route_policy", "server.auth.route_policy"),
        (", revocation: {file: revoked.yaml}", "revocation", "server.auth.revocation"),
        (", open_paths: [/x]", "open_paths", "server.auth.open_paths"),
        (", forward_auth: {proxy: nginx}", "forward_auth", "server.auth.forward_auth"),
        (", tenancy: {mode: multi}", "tenancy", "server.tenancy"),
    ] {
        let text = run_yaml("", &jwks_provider(member));
        refused_as_misplaced(&text, &format!("server.auth.provider_config.{key}"), belongs);
    }
}

#[test]
fn a_key_set_or_introspection_setting_one_level_up_is_refused() {
    // Before: dropped with a WARN.
    for (member, key, belongs) in [
        (", key_recheck_period: 60", "key_recheck_period", "server.auth.provider_config.jwks.key_recheck_period"),
        (", client_id: gate", "client_id", "server.auth.provider_config.introspection.client_id"),
        (
            ", send_secret_in_body: true",
            "send_secret_in_body",
            "server.auth.provider_config.introspection.send_secret_in_body",
        ),
    ] {
        let text = run_yaml("", &jwks_provider(member));
        refused_as_misplaced(&text, &format!("server.auth.provider_config.{key}"), belongs);
    }
}

#[test]
fn a_member_of_a_chain_names_its_own_place() {
    // Before: dropped with a WARN.
    let auth = "providers:\n  - {type: custom, endpoint: 'http://127.0.0.1:9/auth'}\n  - type: oauth2_token\n    \
                issuer: https://idp.example\n    introspection: {url: 'https://idp.example/i', client_id: g, \
                client_secret: s, audience: api}\n";
    refused_as_misplaced(
        &run_yaml("", auth),
        "server.auth.providers[1].introspection.audience",
        "server.auth.providers[1].audience",
    );
}

#[test]
fn a_tokengate_setting_at_the_top_of_a_run_yaml_is_refused() {
    // Before: only the gateway settings were; provider settings at the top were ignored.
    for (line, key, belongs) in [
        ("audience: api", "audience", "server.auth.provider_config.audience"),
        ("issuer: https://idp.example", "issuer", "server.auth.provider_config.issuer"),
        ("claims_mapping: {groups: teams}", "claims_mapping", "server.auth.provider_config.claims_mapping"),
        ("route_policy: {default: forbid, rules: []}", "route_policy", "server.auth.route_policy"),
        ("tenancy: {mode: multi}", "tenancy", "server.tenancy"),
    ] {
        let text = format!("{line}\n{}", run_yaml("", &jwks_provider("")));
        refused_as_misplaced(&text, key, belongs);
    }
    let text = format!("route_polcy: {{default: forbid, rules: []}}\n{}", run_yaml("", &jwks_provider("")));
    let e = load(&text).err().expect("a misspelt and misplaced route_policy does not load");
    assert_eq!(e.field, "route_polcy", "{e}");
    assert!(
        e.message.contains("did you mean `route_policy`?") && e.message.contains("`server.auth.route_policy`"),
        "{e}"
    );
}

#[test]
fn a_tokengate_setting_inside_access_policy_is_refused() {
    // OGX ignores keys it does not know in its rules, and tokengate does not enforce them:
    // before, a route_policy or an audience written there was ignored by both.
    let auth = format!(
        "{}access_policy:\n  - permit: {{actions: [read]}}\n    route_policy: {{default: forbid, rules: []}}\n",
        jwks_provider("")
    );
    refused_as_misplaced(&run_yaml("", &auth), "server.auth.access_policy[0].route_policy", "server.auth.route_policy");
    let auth = format!("{}access_policy:\n  - permit: {{actions: [read], audience: api}}\n", jwks_provider(""));
    refused_as_misplaced(
        &run_yaml("", &auth),
        "server.auth.access_policy[0].permit.audience",
        "server.auth.provider_config.audience",
    );
}

#[test]
fn a_key_nobody_knows_is_refused_wherever_tokengate_reads() {
    // Before: each was dropped with a WARN (or, in `server`, ignored without one), and a typo
    // of a restriction (`route_policies`) loaded with no restriction.
    let cases = [
        (run_yaml("", &format!("{}route_policies: [{{forbid: {{paths: [/v1/*]}}}}]\n", jwks_provider(""))), "server.auth.route_policies"),
        (run_yaml("", &jwks_provider(", required_scopes: [read]")), "server.auth.provider_config.required_scopes"),
        (
            run_yaml("", "provider_config: {type: oauth2_token, issuer: 'https://i', audience: ogx, jwks: {uri: 'https://i/k', shiny_new_option: 3}}\n"),
            "server.auth.provider_config.jwks.shiny_new_option",
        ),
        (run_yaml("rout_policy: {default: forbid}", &jwks_provider("")), "server.rout_policy"),
        (run_yaml("policy: {default: forbid}", &jwks_provider("")), "server.policy"),
        (run_yaml("tenancy: {mode: multi, strict: true}", &jwks_provider("")), "server.tenancy.strict"),
    ];
    for (text, field) in cases {
        let e = load(&text).err().unwrap_or_else(|| panic!("loads with `{field}`:\n{text}"));
        assert_eq!(e.field, field, "{e}");
        assert!(e.message.starts_with("unknown field"), "{e}");
    }
    let e = load(&run_yaml("rout_policy: {default: forbid}", &jwks_provider(""))).err().unwrap();
    assert!(e.message.contains("did you mean `route_policy`?"), "{e}");
}

#[test]
fn older_llama_stack_keys_say_what_to_write() {
    let text = run_yaml("", &format!("provider_type: custom\nconfig: {{endpoint: 'http://x'}}\n{REFUSING_POLICY}"));
    let e = load(&text).err().unwrap();
    assert_eq!(e.field, "server.auth.provider_type", "{e}");
    assert!(e.message.contains("write `provider_config: {type: …, …}`"), "{e}");
}

#[test]
fn ogx_server_settings_and_its_own_sections_still_load() {
    // Every `server` setting of every OGX / Llama Stack release, and OGX's top-level sections.
    let server = "host: 0.0.0.0\ntls_certfile: /c.pem\ntls_keyfile: /k.pem\ntls_cafile: /ca.pem\ndisable_ipv6: true\n\
                  quota: {kvstore: {backend: kv_default}, anonymous_max_requests: 10}\ncors: true\nworkers: 4\n\
                  registry_refresh_interval_seconds: 60\n";
    let text = format!(
        "storage: {{backends: {{}}}}\nregistered_resources: {{models: []}}\nlogging: null\n{}",
        run_yaml(server, &jwks_provider(""))
    );
    load(&text).unwrap();
    for name in super::lenient::OGX_SERVER_SETTINGS {
        assert!(text.contains(&format!("  {name}:")), "{name} is tested");
    }
}

#[test]
fn the_no_provider_mode_starts_only_as_ogx_says_it() {
    // No `provider_config` at all, and a policy that refuses something.
    assert!(load(&run_yaml("", REFUSING_POLICY)).unwrap().is_anonymous());
    // OGX's `${env}` switch.
    let switched =
        format!("provider_config: {{type: '${{env.TOKENGATE_TEST_SURELY_UNSET_Q:+custom}}'}}\n{REFUSING_POLICY}");
    assert!(load(&run_yaml("", &switched)).unwrap().is_anonymous());
    // A provider one level off is not an absent one, nor is an empty `provider_config`.
    for text in [
        run_yaml("provider_config: {type: custom, endpoint: 'http://127.0.0.1:9/a'}", REFUSING_POLICY),
        run_yaml("", &format!("provider: {{type: custom, endpoint: 'http://127.0.0.1:9/a'}}\n{REFUSING_POLICY}")),
        run_yaml("", &format!("provider_config:\n{REFUSING_POLICY}")),
        format!("provider_config: {{type: custom}}\n{}", run_yaml("", REFUSING_POLICY)),
    ] {
        assert!(load(&text).is_err(), "must not start without authentication:\n{text}");
    }
}

#[test]
fn tokengates_own_format_names_where_a_misplaced_key_belongs_too() {
    let text = "provider_config:\n  type: oauth2_token\n  issuer: https://i\n  introspection: {url: 'https://i/x', \
                client_id: g, client_secret: s, audience: api}\n";
    refused_as_misplaced(text, "provider_config.introspection.audience", "provider_config.audience");
    let text = "provider_config: {type: custom, endpoint: 'http://127.0.0.1:9/a', route_policy: []}\n";
    refused_as_misplaced(text, "provider_config.route_policy", "route_policy");
    let e = Config::parse("provider_config: {type: custom}\naudience: x\n", Format::Yaml).unwrap_err();
    assert_eq!(e.field, "audience");
    assert!(e.message.contains("read only as `provider_config.audience`"), "{e}");
}

#[test]
fn typos_and_near_misses_are_still_refused() {
    let policy_typo = run_yaml(
        "",
        "provider_config: {type: custom, endpoint: 'http://127.0.0.1:9/x'}\nroute_policy: {default: forbid, rule: [{permit: {paths: ['/v1/*']}}]}\n",
    );
    let e = Config::parse(&policy_typo, Format::Yaml).unwrap_err();
    assert!(e.field.starts_with("server.auth.route_policy"), "the policy is refused, not dropped: {e}");
    let key_typo = run_yaml(
        "",
        "provider_config:\n  type: local_api_key\n  keys: [{hash: 'sha256:0000000000000000000000000000000000000000000000000000000000000000', principal: ci, disable: true}]\n",
    );
    let e = load(&key_typo).err().unwrap();
    assert!(e.message.contains("unknown field `disable`"), "{e}");
    assert!(load(&run_yaml("", "provider_config: {type: oauth2_token, issuer: 'https://i', audiance: x}\n")).is_err());
}

#[test]
fn a_key_written_twice_is_refused_not_overwritten() {
    // Before: the second `server.auth` replaced the first, and its route_policy with it,
    // without a word (JSON too: the last copy won).
    let text = "server:\n  auth:\n    route_policy: [{forbid: {paths: ['/*']}}]\n  auth:\n    \
                provider_config: {type: custom, endpoint: 'http://127.0.0.1:9/a'}\n";
    let e = Config::parse(text, Format::Yaml).unwrap_err();
    assert!(e.message.contains("the key `auth` appears twice"), "{e}");
    let text = "provider_config: {type: custom, endpoint: 'http://127.0.0.1:9/a', endpoint: 'http://127.0.0.1:9/b'}\n";
    assert!(Config::parse(text, Format::Yaml).unwrap_err().message.contains("`endpoint` appears twice"));
    let json = r#"{"provider_config": {"type": "custom", "endpoint": "http://a"}, "route_policy": [], "route_policy": {"default": "forbid"}}"#;
    assert!(Config::parse(json, Format::Json).unwrap_err().message.contains("`route_policy` appears twice"));
    let toml = "route_policy = []\nroute_policy = []\n[provider_config]\ntype = \"custom\"\n";
    assert!(Config::parse(toml, Format::Toml).is_err(), "TOML refuses duplicates itself");
}
