use super::*;
use serde_json::json;
use std::net::SocketAddr;

fn provider(config: serde_json::Value) -> UpstreamHeaderProvider {
    UpstreamHeaderProvider::from_config(parse_provider_config(config).unwrap()).unwrap()
}

fn request(peer: Option<&str>, headers: &[(&str, &str)]) -> RequestContext {
    let mut ctx = RequestContext::new("GET", "/v1/models");
    for (name, value) in headers {
        ctx.add_header(name, value);
    }
    ctx.peer = peer.map(|p| p.parse::<SocketAddr>().unwrap());
    ctx
}

fn standard() -> UpstreamHeaderProvider {
    provider(json!({
        "attribute_headers": {"X-Forwarded-Groups": "teams", "x-forwarded-roles": "roles", "x-team": "teams"},
        "trusted_proxy_cidrs": ["10.0.0.0/8", "192.168.1.7", "fd00::/8"]
    }))
}

#[tokio::test]
async fn trusted_peer_gives_principal_and_attributes() {
    let p = standard();
    let ctx = request(
        Some("10.1.2.3:40000"),
        &[
            ("X-Forwarded-User", " alice@example.com "),
            ("X-Forwarded-Groups", "ml, infra,,  ml "),
            ("X-Team", "research"),
            ("X-Forwarded-Roles", "admin, viewer"),
        ],
    );
    let principal = p.validate("", &ctx).await.unwrap();
    assert_eq!(principal.principal, "alice@example.com");
    assert_eq!(principal.attributes["teams"], vec!["ml", "infra", "research"]);
    assert_eq!(principal.attributes["roles"], vec!["admin", "viewer"]);

    // A single trusted address, and a token that is simply ignored.
    let ctx = request(Some("192.168.1.7:1"), &[("x-forwarded-user", "bob")]);
    let principal = p.validate("whatever-token", &ctx).await.unwrap();
    assert_eq!(principal.principal, "bob");
    assert!(principal.attributes.is_empty());
}

/// #11: a proxy that appends would hand a client's own copy along with its
/// value; a repeated identity header is refused, never joined.
#[tokio::test]
async fn repeated_identity_headers_are_refused() {
    let p = standard();
    let groups = request(
        Some("10.1.2.3:1"),
        &[("x-forwarded-user", "mallory"), ("X-Forwarded-Groups", "admins"), ("x-forwarded-groups", "ml")],
    );
    let e = p.validate("", &groups).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{e}");
    assert_eq!(e.kind().http_status(), 400);
    assert!(e.detail().contains("x-forwarded-groups header arrived more than once"), "{e}");

    let user = request(Some("10.1.2.3:1"), &[("x-forwarded-user", "admin"), ("x-forwarded-user", "mallory")]);
    assert_eq!(p.validate("", &user).await.unwrap_err().kind(), ErrorKind::InvalidRequest);

    // Headers the provider does not read may repeat as they like.
    let other = request(Some("10.1.2.3:1"), &[("x-forwarded-user", "bob"), ("x-other", "1"), ("x-other", "2")]);
    assert_eq!(p.validate("", &other).await.unwrap().principal, "bob");
}

#[tokio::test]
async fn untrusted_or_unknown_peer_is_403_and_headers_ignored() {
    // standard() trusts 10.0.0.0/8, 192.168.1.7 and fd00::/8.
    let p = standard();
    for (peer, ip) in [("11.0.0.9:5000", "11.0.0.9"), ("192.168.1.8:443", "192.168.1.8"), ("[fe80::1]:443", "fe80::1")]
    {
        let e = p.validate("", &request(Some(peer), &[("x-forwarded-user", "admin")])).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InsufficientScope, "{peer}");
        assert_eq!(e.kind().http_status(), 403);
        assert_eq!(e.detail(), format!("peer {ip} is not a trusted proxy; identity headers ignored"));
    }

    let e = p.validate("", &request(None, &[("x-forwarded-user", "admin")])).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InsufficientScope);
    assert!(e.detail().contains("peer address is unknown"), "{e}");
}

#[tokio::test]
async fn missing_or_empty_header_from_trusted_peer_is_401() {
    let p = standard();
    for headers in [&[][..], &[("x-forwarded-user", "  ")][..], &[("x-forwarded-groups", "ml")][..]] {
        let e = p.validate("", &request(Some("10.0.0.1:1"), headers)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidToken);
        assert_eq!(e.kind().http_status(), 401);
        assert!(e.detail().contains("trusted proxy 10.0.0.1 sent no x-forwarded-user header"), "{e}");
    }
}

#[tokio::test]
async fn ipv6_cidrs_and_ipv4_mapped_peers() {
    let p = provider(json!({
        "principal_header": "X-Auth-Request-User",
        "trusted_proxy_cidrs": ["2001:db8:42::/48", "10.0.0.0/8"]
    }));
    let ok = |peer: &str| request(Some(peer), &[("x-auth-request-user", "carol")]);
    assert_eq!(p.validate("", &ok("[2001:db8:42:1::5]:8443")).await.unwrap().principal, "carol");
    assert!(p.validate("", &ok("[2001:db8:43::5]:8443")).await.is_err());
    // A dual-stack listener reports an IPv4 proxy as ::ffff:10.1.1.1.
    assert_eq!(p.validate("", &ok("[::ffff:10.1.1.1]:8443")).await.unwrap().principal, "carol");
    let e = p.validate("", &ok("[::ffff:11.1.1.1]:8443")).await.unwrap_err();
    assert_eq!(e.detail(), "peer 11.1.1.1 is not a trusted proxy; identity headers ignored");
    // Host bits in a CIDR are ignored, as proxies' configs do.
    let p = provider(json!({"trusted_proxy_cidrs": ["10.9.9.9/8"]}));
    assert!(p.validate("", &request(Some("10.0.0.1:1"), &[("x-forwarded-user", "d")])).await.is_ok());
}

#[test]
fn owns_every_token_even_none() {
    let p = standard();
    assert_eq!(p.ownership(""), Ownership::Mine);
    assert_eq!(p.ownership("eyJ.x.y"), Ownership::Mine);
    assert!(p.describe().message.contains("x-forwarded-user"));
    assert_eq!(p.describe().type_name, "upstream_header");
}

#[test]
fn config_errors_name_the_field() {
    let cases = [
        (json!({}), "", "missing field `trusted_proxy_cidrs`"),
        (json!({"trusted_proxy_cidrs": []}), "trusted_proxy_cidrs", "is empty"),
        (json!({"trusted_proxy_cidrs": ["10.0.0.0/33"]}), "trusted_proxy_cidrs[0]", "is not a CIDR"),
        (json!({"trusted_proxy_cidrs": ["10.0.0.0/8", "proxy.local"]}), "trusted_proxy_cidrs[1]", "proxy.local"),
        (json!({"trusted_proxy_cidrs": ["::1"], "principal_header": "bad header"}), "principal_header", "not a valid"),
        (
            json!({"trusted_proxy_cidrs": ["::1"], "principal_header": "Authorization"}),
            "principal_header",
            "credentials",
        ),
        (
            json!({"trusted_proxy_cidrs": ["::1"], "attribute_headers": {"cookie": "x"}}),
            "attribute_headers.cookie",
            "credentials",
        ),
        (
            json!({"trusted_proxy_cidrs": ["::1"], "attribute_headers": {"X-Forwarded-User": "roles"}}),
            "attribute_headers.X-Forwarded-User",
            "principal_header",
        ),
        (json!({"trusted_proxy_cidrs": ["::1"], "attribute_headers": {"x-g": " "}}), "attribute_headers.x-g", "empty"),
        (json!({"trusted_proxy_cidrs": ["::1"], "trusted_proxies": ["::1"]}), "trusted_proxies", "unknown field"),
    ];
    for (config, field, needle) in cases {
        let e = parse_provider_config::<UpstreamHeaderConfig>(config.clone())
            .and_then(UpstreamHeaderProvider::from_config)
            .unwrap_err();
        assert_eq!(e.field, field, "{config}: {e}");
        assert!(e.message.contains(needle), "{config}: {e}");
    }
}

#[test]
fn example_config_builds() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/upstream_header.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let doc: serde_json::Value = yaml_serde::from_str(&text).unwrap();
    let mut section = doc["provider_config"].clone();
    assert_eq!(section.as_object_mut().unwrap().remove("type"), Some(json!("upstream_header")));
    UpstreamHeaderBuilder.build(section, &BuildContext::default()).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn attributes_header_json_and_json_array_values_merge_as_ogx_reads_them() {
    let config = serde_json::json!({
        "principal_header": "x-auth-principal",
        "attributes_header": "x-auth-attributes",
        "attribute_headers": {"x-groups": "teams"},
        "trusted_proxy_cidrs": ["10.0.0.0/8"]
    });
    let p = provider(config.clone());
    let headers = [
        ("x-auth-principal", "alice"),
        ("x-auth-attributes", r#"{"roles": ["admin", "dev"], "teams": "ml", "level": 3}"#),
        ("x-groups", r#"["ops", "ml, infra"]"#),
    ];
    let who = p.validate("", &request(Some("10.1.2.3:5000"), &headers)).await.unwrap();
    assert_eq!(who.attributes["roles"], vec!["admin", "dev"]);
    assert_eq!(who.attributes["teams"], vec!["ops", "ml, infra", "ml"], "a JSON item keeps its comma");
    assert_eq!(who.attributes["level"], vec!["3"]);

    for bad in ["not json", r#"["a list"]"#, r#"{"roles": [{"nested": 1}]}"#, "null"] {
        let headers = [("x-auth-principal", "alice"), ("x-auth-attributes", bad)];
        let e = p.validate("", &request(Some("10.1.2.3:5000"), &headers)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidToken, "{bad}");
    }

    // A plain value: comma-split in tokengate's own config, one value in a run.yaml (as OGX).
    let plain = [("x-auth-principal", "alice"), ("x-groups", "ml, infra")];
    let who = p.validate("", &request(Some("10.1.2.3:5000"), &plain)).await.unwrap();
    assert_eq!(who.attributes["teams"], vec!["ml", "infra"]);
    let run_yaml = BuildContext { llama_stack_defaults: true, ..Default::default() };
    let ogx = UpstreamHeaderBuilder.build(config, &run_yaml).unwrap();
    let who = ogx.validate("", &request(Some("10.1.2.3:5000"), &plain)).await.unwrap();
    assert_eq!(who.attributes["teams"], vec!["ml, infra"]);
}

#[test]
fn each_identity_header_is_one_of_its_own() {
    let base = json!({"principal_header": "x-user", "attribute_headers": {"x-groups": "teams"},
                      "trusted_proxy_cidrs": ["10.0.0.0/8"]});
    let with = |extra: serde_json::Value| {
        let mut config = base.clone();
        config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        UpstreamHeaderProvider::from_config(parse_provider_config(config).unwrap())
    };
    for (extra, field) in [
        (json!({"attributes_header": "X-User"}), "attributes_header"),
        (json!({"attributes_header": "x-groups"}), "attributes_header"),
        (json!({"tenant_header": "x-user"}), "tenant_header"),
        (json!({"tenant_header": "x-groups"}), "tenant_header"),
        (json!({"attributes_header": "x-attrs", "tenant_header": "X-Attrs"}), "tenant_header"),
    ] {
        assert_eq!(with(extra.clone()).unwrap_err().field, field, "{extra}");
    }
    assert!(with(json!({"attributes_header": "x-attrs", "tenant_header": "x-tenant"})).is_ok());
}

/// #20: an identity header is read exactly, as UTF-8, or refused; never absent.
#[tokio::test]
async fn identity_headers_are_read_as_utf8_or_refused() {
    let p = provider(json!({
        "attribute_headers": {"x-forwarded-groups": "teams"},
        "attributes_header": "x-auth-attributes",
        "tenant_header": "x-tenant",
        "trusted_proxy_cidrs": ["10.0.0.0/8"]
    }));
    let ctx = request(
        Some("10.0.0.1:1"),
        &[("x-forwarded-user", "josé"), ("x-forwarded-groups", "contractors,équipe"), ("x-tenant", "acme")],
    );
    let principal = p.validate("", &ctx).await.unwrap();
    assert_eq!(principal.principal, "josé");
    assert_eq!(principal.attributes["teams"], vec!["contractors", "équipe"]);

    for header in ["x-forwarded-user", "x-forwarded-groups", "x-auth-attributes", "x-tenant"] {
        let mut ctx = request(Some("10.0.0.1:1"), &[]);
        if header != "x-forwarded-user" {
            ctx.add_header("x-forwarded-user", "alice");
        }
        ctx.add_header_bytes(header, b"caf\xe9");
        let e = p.validate("", &ctx).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{header}: {e}");
        assert!(e.detail().contains(header), "{header}: {e}");
    }

    // One readable and one unreadable copy are two copies.
    let mut ctx = request(Some("10.0.0.1:1"), &[("x-forwarded-user", "admin")]);
    ctx.add_header_bytes("x-forwarded-user", b"jos\xc3\xa9");
    let e = p.validate("", &ctx).await.unwrap_err();
    assert!(e.detail().contains("more than once"), "{e}");
}

/// A value other readers would trim to another one is refused, not trimmed.
#[tokio::test]
async fn unicode_spaces_and_controls_in_identity_values_are_refused() {
    let p = provider(json!({
        "attribute_headers": {"x-forwarded-groups": "teams"},
        "attributes_header": "x-auth-attributes",
        "trusted_proxy_cidrs": ["10.0.0.0/8"]
    }));
    let cases = [
        ("x-forwarded-user", "admin\u{a0}"),
        ("x-forwarded-user", "\u{2003}admin"),
        ("x-forwarded-user", "ad\u{85}min"),
        ("x-forwarded-user", "ad\tmin"),
        ("x-forwarded-groups", "ml,\u{a0}contractors"),
        ("x-auth-attributes", r#"{"teams": ["contractors\n"]}"#),
        // Shown as `admin` by whoever reads it next (review round 2 of #20).
        ("x-forwarded-user", "admin\u{200b}"),
        ("x-forwarded-user", "\u{feff}admin"),
        ("x-forwarded-user", "\u{202e}nimda"),
        ("x-forwarded-groups", "staff\u{2060}"),
        ("x-forwarded-groups", "staff\u{2028}contractors"),
        // Default-ignorable and format characters beyond the usual zero-widths: Hangul filler,
        // combining grapheme joiner, an Arabic number sign.
        ("x-forwarded-user", "admin\u{3164}"),
        ("x-forwarded-user", "ad\u{34f}min"),
        ("x-forwarded-user", "\u{600}admin"),
    ];
    for (header, value) in cases {
        let mut ctx = request(Some("10.0.0.1:1"), &[(header, value)]);
        if header != "x-forwarded-user" {
            ctx.add_header("x-forwarded-user", "alice");
        }
        let e = p.validate("", &ctx).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{header}: {value:?}: {e}");
    }
    // HTTP's own padding is no part of a value.
    let ctx = request(Some("10.0.0.1:1"), &[("x-forwarded-user", " \talice\t "), ("x-forwarded-groups", " ml , ai ")]);
    let principal = p.validate("", &ctx).await.unwrap();
    assert_eq!(principal.principal, "alice");
    assert_eq!(principal.attributes["teams"], vec!["ml", "ai"]);
}

/// #20: a `_` spelling of a header `tokengate serve` sets is that header to a
/// back end reading `_` as `-` (and `serve` refuses a decision request
/// carrying one); the dash spelling, OGX's `x-auth-attributes`, is fine and
/// is among the names `serve` lets through for this provider.
#[test]
fn underscore_spellings_of_tokengate_headers_are_refused() {
    let base = json!({"trusted_proxy_cidrs": ["10.0.0.0/8"]});
    let with = |field: &str, value: serde_json::Value| {
        let mut config = base.clone();
        config[field] = value;
        parse_provider_config::<UpstreamHeaderConfig>(config).and_then(UpstreamHeaderProvider::from_config)
    };
    for (field, value, at) in [
        ("principal_header", json!("x_auth_principal"), "principal_header"),
        ("principal_header", json!("X-Auth_Principal"), "principal_header"),
        ("attributes_header", json!("x-auth_attributes"), "attributes_header"),
        ("tenant_header", json!("X_AUTH_TENANT"), "tenant_header"),
        ("tenant_header", json!("x.auth.tenant"), "tenant_header"),
        ("attribute_headers", json!({"x-auth-attr_teams": "teams"}), "attribute_headers.x-auth-attr_teams"),
        ("attribute_headers", json!({"x_auth_unknown_attributes": "u"}), "attribute_headers.x_auth_unknown_attributes"),
    ] {
        let e = with(field, value.clone()).unwrap_err();
        assert_eq!(e.field, at, "{value}: {e}");
        assert!(e.message.contains("tokengate itself sets"), "{value}: {e}");
    }
    assert!(with("principal_header", json!("x_forwarded_user")).is_ok(), "other `_` names are not ours to judge");

    let mut config = base.clone();
    config["principal_header"] = json!("X-Auth-User-Id");
    config["attributes_header"] = json!("X-Auth-Attributes");
    config["tenant_header"] = json!(" x-auth-tenant ");
    config["attribute_headers"] = json!({"X-Groups": "teams"});
    let config: UpstreamHeaderConfig = parse_provider_config(config).unwrap();
    assert_eq!(config.identity_headers(), ["x-auth-user-id", "x-groups", "x-auth-attributes", "x-auth-tenant"]);
    UpstreamHeaderProvider::from_config(config).unwrap();
}
