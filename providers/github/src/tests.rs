use super::*;

#[test]
fn link_header_next_is_found() {
    let mut h = HeaderMap::new();
    h.insert(
        reqwest::header::LINK,
        HeaderValue::from_static(
            r#"<https://api.github.com/user/orgs?per_page=100&page=1>; rel="prev", <https://api.github.com/user/orgs?per_page=100&page=3>; rel="next", <https://api.github.com/user/orgs?per_page=100&page=5>; rel="last""#,
        ),
    );
    assert_eq!(
        next_link(&h).map(|u| u.to_string()).as_deref(),
        Some("https://api.github.com/user/orgs?per_page=100&page=3")
    );
    h.insert(reqwest::header::LINK, HeaderValue::from_static(r#"<https://x/a>; rel="first""#));
    assert!(next_link(&h).is_none());
    h.insert(reqwest::header::LINK, HeaderValue::from_static("garbage, ;;, <>"));
    assert!(next_link(&h).is_none());
}

#[test]
fn token_expiration_header() {
    let utc = parse_token_expiration("2026-01-31 12:00:00 UTC").unwrap();
    let pst = parse_token_expiration("2026-01-31 04:00:00 -0800").unwrap();
    let ist = parse_token_expiration("2026-01-31 17:30:00 +0530").unwrap();
    assert_eq!(utc, pst);
    assert_eq!(utc, ist);
    assert_eq!(humantime::format_rfc3339_seconds(utc).to_string(), "2026-01-31T12:00:00Z");
    assert!(parse_token_expiration("soon").is_none());
    assert!(parse_token_expiration("2026-01-31 12:00:00 Mars").is_none());
}

#[test]
fn ownership_by_shape() {
    let p = GitHubProvider::new(GitHubConfig::default(), &BuildContext::default()).unwrap();
    assert_eq!(p.ownership("ghp_abc"), Ownership::Mine);
    assert_eq!(p.ownership("github_pat_11ABC"), Ownership::Mine);
    assert_eq!(p.ownership(&"a1".repeat(20)), Ownership::Mine);
    assert_eq!(p.ownership("eyJhbGciOiJSUzI1NiJ9.e30.sig"), Ownership::NotMine);
    assert_eq!(p.ownership("sk-live-123"), Ownership::NotMine);
}

#[test]
fn config_is_checked() {
    let ctx = BuildContext::default();
    let bad = |url: &str| {
        let cfg = GitHubConfig { github_api_base_url: url.into(), ..GitHubConfig::default() };
        GitHubProvider::new(cfg, &ctx).unwrap_err().field
    };
    assert_eq!(bad("ftp://github.example.com"), "github_api_base_url");
    assert_eq!(bad("not a url"), "github_api_base_url");
    assert_eq!(bad("https://api.github.com/?x=1"), "github_api_base_url");
    let cfg = GitHubConfig { github_api_base_url: "https://ghe.example.com/api/v3/".into(), ..GitHubConfig::default() };
    let p = GitHubProvider::new(cfg, &ctx).unwrap();
    assert_eq!(p.base, "https://ghe.example.com/api/v3");
}
