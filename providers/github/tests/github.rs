//! `type: github_token` against a stand-in that answers the way GitHub's REST
//! docs show: `/user`, paginated `/user/orgs`, `Bad credentials`, primary and
//! secondary rate limits, outages.
//!
//! One file, past 400 lines, because every test shares the one stand-in.

use reqwest::header::HeaderValue;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokengate_api::{AuthError, BuildContext, DynProvider, ErrorKind, ProviderBuilder, RequestContext};
use tokengate_github::GitHubBuilder;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

const TOKEN: &str = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";

const LLAMA_STACK_MESSAGE: &str = "Authentication required. Please provide a valid GitHub access token (https://docs.github.com/en/authentication/keeping-your-account-and-data-secure/managing-your-personal-access-tokens) in the Authorization header (Bearer <token>)";

/// GitHub's documented `GET /user` example (abridged only of URL fields).
fn octocat() -> Value {
    json!({
        "login": "octocat",
        "id": 1,
        "node_id": "MDQ6VXNlcjE=",
        "avatar_url": "https://github.com/images/error/octocat_happy.gif",
        "gravatar_id": "",
        "url": "https://api.github.com/users/octocat",
        "html_url": "https://github.com/octocat",
        "type": "User",
        "site_admin": false,
        "name": "monalisa octocat",
        "company": "GitHub",
        "blog": "https://github.com/blog",
        "location": "San Francisco",
        "email": "octocat@github.com",
        "hireable": false,
        "bio": "There once was...",
        "twitter_username": "monatheoctocat",
        "public_repos": 2,
        "public_gists": 1,
        "followers": 20,
        "following": 0,
        "created_at": "2008-01-14T04:33:35Z",
        "updated_at": "2008-01-14T04:33:35Z",
        "private_gists": 81,
        "total_private_repos": 100,
        "owned_private_repos": 100,
        "disk_usage": 10000,
        "collaborators": 8,
        "two_factor_authentication": true,
        "plan": {"name": "Medium", "space": 400, "private_repos": 20, "collaborators": 0}
    })
}

/// An organization as `GET /user/orgs` lists it.
fn org(login: &str, id: u64) -> Value {
    json!({
        "login": login,
        "id": id,
        "node_id": "MDEyOk9yZ2FuaXphdGlvbjE=",
        "url": format!("https://api.github.com/orgs/{login}"),
        "repos_url": format!("https://api.github.com/orgs/{login}/repos"),
        "events_url": format!("https://api.github.com/orgs/{login}/events"),
        "hooks_url": format!("https://api.github.com/orgs/{login}/hooks"),
        "issues_url": format!("https://api.github.com/orgs/{login}/issues"),
        "members_url": format!("https://api.github.com/orgs/{login}/members{{/member}}"),
        "public_members_url": format!("https://api.github.com/orgs/{login}/public_members{{/member}}"),
        "avatar_url": "https://github.com/images/error/octocat_happy.gif",
        "description": "A great organization"
    })
}

/// The scopes of `TOKEN`, a classic personal access token that may list
/// every organization (`read:org`).
const CLASSIC_SCOPES: &str = "repo, read:org";

/// A 200 as GitHub answers `TOKEN`: every reply to a classic token carries its scopes.
fn classic_reply() -> ResponseTemplate {
    ResponseTemplate::new(200).insert_header("x-oauth-scopes", CLASSIC_SCOPES)
}

/// A request as tokengate must send it: token and GitHub's recommended headers.
fn github_get(p: &str) -> MockBuilder {
    github_get_with(p, TOKEN)
}

fn github_get_with(p: &str, token: &str) -> MockBuilder {
    Mock::given(method("GET"))
        .and(path(p))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .and(header("accept", "application/vnd.github+json"))
        .and(header("x-github-api-version", "2022-11-28"))
        .and(header("user-agent", "tokengate"))
}

fn link(server: &MockServer, page: u32, last: u32) -> String {
    let url = |n: u32| format!("{}/user/orgs?per_page=100&page={n}", server.uri());
    let mut parts = Vec::new();
    if page > 1 {
        parts.push(format!("<{}>; rel=\"prev\"", url(page - 1)));
    }
    if page < last {
        parts.push(format!("<{}>; rel=\"next\"", url(page + 1)));
        parts.push(format!("<{}>; rel=\"last\"", url(last)));
    }
    if page > 1 {
        parts.push(format!("<{}>; rel=\"first\"", url(1)));
    }
    parts.join(", ")
}

/// `/user` as octocat, and three pages of organizations.
async fn mount_github(server: &MockServer) {
    github_get("/user").respond_with(classic_reply().set_body_json(octocat())).mount(server).await;
    let pages = [vec![org("github", 1), org("octo-org", 2)], vec![org("ml-team", 3)], vec![org("infra", 4)]];
    for (i, orgs) in pages.into_iter().enumerate() {
        let page = i as u32 + 1;
        let mut mock = github_get("/user/orgs").and(query_param("per_page", "100"));
        mock = if page == 1 {
            mock.and(query_param_is_missing("page"))
        } else {
            mock.and(query_param("page", page.to_string().as_str()))
        };
        mock.respond_with(classic_reply().insert_header("link", link(server, page, 3).as_str()).set_body_json(orgs))
            .mount(server)
            .await;
    }
}

fn provider(server: &MockServer, extra: Value) -> DynProvider {
    let mut config = json!({ "github_api_base_url": server.uri() });
    if let (Some(cfg), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        cfg.extend(extra.clone());
    }
    match GitHubBuilder.build(config, &BuildContext::default()) {
        Ok(p) => p,
        Err(e) => panic!("config rejected: {e}"),
    }
}

async fn validate(p: &DynProvider) -> Result<tokengate_api::Principal, AuthError> {
    p.validate(TOKEN, &RequestContext::new("GET", "/v1/models")).await
}

async fn count(server: &MockServer, p: &str) -> usize {
    server.received_requests().await.unwrap_or_default().iter().filter(|r| r.url.path() == p).count()
}

fn assert_kind(err: &AuthError, kind: ErrorKind) {
    assert_eq!(err.kind(), kind, "unexpected error: {err}");
    assert!(!err.detail().contains(TOKEN), "token leaked: {err}");
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn user_and_three_pages_of_organizations() {
    let server = MockServer::start().await;
    mount_github(&server).await;
    let p = provider(&server, json!({}));
    let who = validate(&p).await.unwrap();
    assert_eq!(who.principal, "octocat");
    assert_eq!(who.attributes["roles"], vec!["octocat"]);
    assert_eq!(who.attributes["teams"], vec!["github", "octo-org", "ml-team", "infra"]);
    assert_eq!(count(&server, "/user").await, 1);
    assert_eq!(count(&server, "/user/orgs").await, 3);
    assert_eq!(p.describe().message, LLAMA_STACK_MESSAGE);
}

/// OGX's test servers (and some proxies) send no `Link` header: pages are
/// then asked for by number until one is not full.
#[tokio::test]
async fn without_link_headers_pages_are_followed_by_number_until_a_short_one() {
    let server = MockServer::start().await;
    github_get("/user").respond_with(classic_reply().set_body_json(octocat())).mount(&server).await;
    let page = |from: u64, n: u64| (from..from + n).map(|i| org(&format!("org-{i}"), i)).collect::<Vec<_>>();
    for (number, orgs) in [(None, page(0, 100)), (Some("2"), page(100, 100)), (Some("3"), page(200, 1))] {
        let mock = github_get("/user/orgs").and(query_param("per_page", "100"));
        let mock = match number {
            None => mock.and(query_param_is_missing("page")),
            Some(n) => mock.and(query_param("page", n)),
        };
        mock.respond_with(classic_reply().set_body_json(orgs)).mount(&server).await;
    }
    let who = validate(&provider(&server, json!({}))).await.unwrap();
    assert_eq!(who.attributes["teams"].len(), 201);
    assert_eq!(who.attributes["teams"].last().unwrap(), "org-200");
    assert_eq!(count(&server, "/user/orgs").await, 3, "the short third page ends it");
}

#[tokio::test]
async fn claims_object_has_id_name_email() {
    let server = MockServer::start().await;
    mount_github(&server).await;
    let p = provider(
        &server,
        json!({"claims_mapping": {"id": "uid", "name": "names", "email": "emails", "organizations": "orgs"}}),
    );
    let who = validate(&p).await.unwrap();
    assert_eq!(who.attributes["uid"], vec!["1"]);
    // #11: a string claim is one value (Llama Stack split it on whitespace);
    // only list claims (scope, scp, or marked `split: true`) split.
    assert_eq!(who.attributes["names"], vec!["monalisa octocat"]);
    assert_eq!(who.attributes["emails"], vec!["octocat@github.com"]);
    assert_eq!(who.attributes["orgs"].len(), 4);
    assert!(!who.attributes.contains_key("roles"));
}

#[tokio::test]
async fn max_org_pages_bounds_pagination() {
    let server = MockServer::start().await;
    mount_github(&server).await;
    // #11: a partial list is not the list: the organizations are unknown.
    let who = validate(&provider(&server, json!({"max_org_pages": 2}))).await.unwrap();
    assert!(!who.attributes.contains_key("teams"), "{who:?}");
    assert!(who.is_unknown("teams"));
    assert_eq!(count(&server, "/user/orgs").await, 2);

    let server = MockServer::start().await;
    mount_github(&server).await;
    let who = validate(&provider(&server, json!({"max_org_pages": 3}))).await.unwrap();
    assert_eq!(who.attributes["teams"], vec!["github", "octo-org", "ml-team", "infra"]);
    assert!(who.unknown_attributes.is_empty());
    let shown = serde_json::to_value(&who).unwrap();
    assert!(shown.get("unknown_attributes").is_none(), "the usual JSON shape is unchanged: {shown}");

    let server = MockServer::start().await;
    mount_github(&server).await;
    let who = validate(&provider(&server, json!({"max_org_pages": 0}))).await.unwrap();
    assert!(!who.attributes.contains_key("teams"));
    assert!(who.is_unknown("teams"), "organizations not read are not known either");
    assert_eq!(count(&server, "/user/orgs").await, 0);
}

#[tokio::test]
async fn pagination_never_follows_another_origin() {
    let server = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    github_get("/user").respond_with(classic_reply().set_body_json(octocat())).mount(&server).await;
    github_get("/user/orgs")
        .respond_with(
            classic_reply()
                .insert_header("link", format!("<{}/user/orgs?page=2>; rel=\"next\"", elsewhere.uri()).as_str())
                .set_body_json(vec![org("github", 1)]),
        )
        .mount(&server)
        .await;
    let who = validate(&provider(&server, json!({}))).await.unwrap();
    assert_eq!(who.attributes["teams"], vec!["github"]);
    assert_eq!(elsewhere.received_requests().await.unwrap_or_default().len(), 0, "the token went to another origin");
}

#[tokio::test]
async fn bad_credentials_401() {
    let server = MockServer::start().await;
    Mock::given(path("/user"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "message": "Bad credentials",
            "documentation_url": "https://docs.github.com/rest",
            "status": "401"
        })))
        .mount(&server)
        .await;
    let err = validate(&provider(&server, json!({}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::InvalidToken);
    assert_eq!(err.detail(), "GitHub rejected the token (401 Bad credentials)");
}

#[tokio::test]
async fn primary_rate_limit_403() {
    let server = MockServer::start().await;
    let reset = now_secs() + 120;
    Mock::given(path("/user"))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-limit", "5000")
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-used", "5000")
                .insert_header("x-ratelimit-reset", reset.to_string().as_str())
                .insert_header("x-ratelimit-resource", "core")
                .set_body_json(json!({
                    "message": "API rate limit exceeded for user ID 1.",
                    "documentation_url": "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"
                })),
        )
        .mount(&server)
        .await;
    let err = validate(&provider(&server, json!({}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::Unavailable);
    let at = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(reset));
    assert_eq!(err.detail(), format!("GitHub rate limit exceeded; resets at {at}"));
    let after = err.retry_after().expect("retry_after set").as_secs();
    assert!((100..=120).contains(&after), "retry after {after}s");
}

#[tokio::test]
async fn secondary_rate_limit_429() {
    let server = MockServer::start().await;
    let reset = now_secs() + 3000;
    Mock::given(path("/user"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "60")
                .insert_header("x-ratelimit-limit", "5000")
                .insert_header("x-ratelimit-remaining", "4987")
                .insert_header("x-ratelimit-used", "13")
                .insert_header("x-ratelimit-reset", reset.to_string().as_str())
                .set_body_json(json!({
                    "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
                })),
        )
        .mount(&server)
        .await;
    let err = validate(&provider(&server, json!({}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::Unavailable);
    assert_eq!(err.detail(), "GitHub rate limit exceeded; retry after 60s");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(60)));
}

#[tokio::test]
async fn forbidden_without_rate_limit_is_the_tokens_fault() {
    let server = MockServer::start().await;
    Mock::given(path("/user"))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-limit", "5000")
                .insert_header("x-ratelimit-remaining", "4999")
                .set_body_json(json!({
                    "message": "Resource not accessible by integration",
                    "documentation_url": "https://docs.github.com/rest/users/users#get-the-authenticated-user",
                    "status": "403"
                })),
        )
        .mount(&server)
        .await;
    let err = validate(&provider(&server, json!({}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::InvalidToken);
    assert_eq!(err.detail(), "GitHub refused the token access to /user (403 Resource not accessible by integration)");
}

/// #11: a 403 from /user/orgs used to mean "no organizations", so a
/// contractor escaped `forbid: {attribute: teams, ...}` with a token lacking
/// read:org. The attributes mapped from organizations are now unknown.
#[tokio::test]
async fn orgs_forbidden_without_read_org_makes_teams_unknown() {
    let server = MockServer::start().await;
    github_get("/user").respond_with(classic_reply().set_body_json(octocat())).mount(&server).await;
    github_get("/user/orgs")
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "message": "Resource not accessible by personal access token",
            "documentation_url": "https://docs.github.com/rest/orgs/orgs#list-organizations-for-the-authenticated-user",
            "status": "403"
        })))
        .mount(&server)
        .await;
    let who = validate(&provider(&server, json!({}))).await.unwrap();
    assert_eq!(who.principal, "octocat");
    assert_eq!(who.attributes["roles"], vec!["octocat"]);
    assert!(!who.attributes.contains_key("teams"));
    assert!(who.is_unknown("teams"), "{who:?}");
    assert!(!who.is_unknown("roles"));
    let shown = serde_json::to_value(&who).unwrap();
    assert_eq!(shown["unknown_attributes"], json!(["teams"]));
}

#[tokio::test]
async fn orgs_rate_limited_is_unavailable() {
    let server = MockServer::start().await;
    github_get("/user").respond_with(classic_reply().set_body_json(octocat())).mount(&server).await;
    github_get("/user/orgs")
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", (now_secs() + 60).to_string().as_str()),
        )
        .mount(&server)
        .await;
    let err = validate(&provider(&server, json!({}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::Unavailable);
    assert!(err.detail().starts_with("GitHub rate limit exceeded"), "{err}");
}

#[tokio::test]
async fn server_errors_are_unavailable() {
    let server = MockServer::start().await;
    Mock::given(path("/user")).respond_with(ResponseTemplate::new(500)).mount(&server).await;
    let err = validate(&provider(&server, json!({}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::Unavailable);
    assert_eq!(err.detail(), "GitHub answered 500 for /user");

    let server = MockServer::start().await;
    github_get("/user").respond_with(classic_reply().set_body_json(octocat())).mount(&server).await;
    github_get("/user/orgs")
        .respond_with(ResponseTemplate::new(502).set_body_json(json!({"message": "Server Error"})))
        .mount(&server)
        .await;
    let err = validate(&provider(&server, json!({}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::Unavailable);
    assert_eq!(err.detail(), "GitHub answered 502 for /user/orgs: Server Error");
}

#[tokio::test]
async fn wrong_base_url_404_is_unavailable() {
    let server = MockServer::start().await;
    let err = validate(&provider(&server, json!({}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::Unavailable);
    assert!(err.detail().starts_with("GitHub answered 404 for /user; check github_api_base_url"), "{err}");
}

#[tokio::test]
async fn garbage_200_is_unavailable() {
    let server = MockServer::start().await;
    Mock::given(path("/user"))
        .respond_with(classic_reply().set_body_string("<html>GitHub is down</html>"))
        .mount(&server)
        .await;
    let err = validate(&provider(&server, json!({}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::Unavailable);
    assert!(err.detail().starts_with("GitHub answered 200 with a malformed /user reply: not JSON"), "{err}");

    let server = MockServer::start().await;
    Mock::given(path("/user")).respond_with(classic_reply().set_body_json(json!({"id": 1}))).mount(&server).await;
    let err = validate(&provider(&server, json!({}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::Unavailable);
    assert!(err.detail().contains("no `login`"), "{err}");
}

#[tokio::test]
async fn slow_github_is_unavailable() {
    let server = MockServer::start().await;
    Mock::given(path("/user"))
        .respond_with(classic_reply().set_body_json(octocat()).set_delay(Duration::from_secs(2)))
        .mount(&server)
        .await;
    let started = std::time::Instant::now();
    let err = validate(&provider(&server, json!({"timeout": 0.2}))).await.unwrap_err();
    assert_kind(&err, ErrorKind::Unavailable);
    assert_eq!(err.detail(), "GitHub /user: timed out");
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn concurrent_validations_share_one_lookup() {
    let server = MockServer::start().await;
    github_get("/user")
        .respond_with(classic_reply().set_body_json(octocat()).set_delay(Duration::from_millis(200)))
        .mount(&server)
        .await;
    github_get("/user/orgs").respond_with(classic_reply().set_body_json(vec![org("github", 1)])).mount(&server).await;
    let p = provider(&server, json!({}));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let p = Arc::clone(&p);
        tasks.push(tokio::spawn(async move { validate(&p).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().principal, "octocat");
    }
    assert_eq!(count(&server, "/user").await, 1);
    assert_eq!(count(&server, "/user/orgs").await, 1);
}

/// #11: each made-up token is a lookup at GitHub, whose rate limit is shared
/// by everyone; past `max_concurrent_requests` the excess is refused at once.
#[tokio::test]
async fn excess_concurrent_lookups_are_unavailable_at_once() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/user"))
        .respond_with(classic_reply().set_body_json(octocat()).set_delay(Duration::from_millis(1500)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/user/orgs"))
        .respond_with(classic_reply().set_body_json(json!([])))
        .mount(&server)
        .await;
    let p = provider(&server, json!({"max_concurrent_requests": 2, "cache": {"enabled": false}}));
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..3)
        .map(|i| {
            let p = Arc::clone(&p);
            tokio::spawn(async move {
                let outcome = p.validate(&format!("ghp_{i:036}"), &RequestContext::new("GET", "/")).await;
                (outcome, started.elapsed())
            })
        })
        .collect();
    let mut refused = Vec::new();
    for t in tasks {
        if let (Err(e), when) = t.await.unwrap() {
            refused.push((e, when));
        }
    }
    assert_eq!(refused.len(), 1, "{refused:?}");
    let (err, when) = &refused[0];
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.retry_after().is_some());
    assert!(*when < Duration::from_millis(1000), "the excess waited: {when:?}");
    assert_eq!(count(&server, "/user").await, 2);
}

#[tokio::test]
async fn bad_credentials_are_negatively_cached() {
    let server = MockServer::start().await;
    Mock::given(path("/user"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"message": "Bad credentials"})))
        .mount(&server)
        .await;
    let p = provider(&server, json!({}));
    for _ in 0..3 {
        assert_kind(&validate(&p).await.unwrap_err(), ErrorKind::InvalidToken);
    }
    assert_eq!(count(&server, "/user").await, 1);
}

#[tokio::test]
async fn token_expiration_bounds_the_cache() {
    let server = MockServer::start().await;
    // Whole seconds: the token expires 2–3s from now.
    let expires = humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(3))
        .to_string()
        .replace('T', " ")
        .replace('Z', " UTC");
    github_get("/user")
        .respond_with(
            classic_reply()
                .insert_header("github-authentication-token-expiration", expires.as_str())
                .set_body_json(octocat()),
        )
        .mount(&server)
        .await;
    github_get("/user/orgs").respond_with(classic_reply().set_body_json(Vec::<Value>::new())).mount(&server).await;
    let p = provider(&server, json!({"cache": {"ttl": "1h"}}));
    validate(&p).await.unwrap();
    validate(&p).await.unwrap();
    assert_eq!(count(&server, "/user").await, 1, "a hit before expiry");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    validate(&p).await.unwrap();
    assert_eq!(count(&server, "/user").await, 2, "re-checked after the token's expiry");
}

#[tokio::test]
async fn cache_disabled_asks_every_time() {
    let server = MockServer::start().await;
    mount_github(&server).await;
    let p = provider(&server, json!({"cache": {"enabled": false}}));
    validate(&p).await.unwrap();
    validate(&p).await.unwrap();
    assert_eq!(count(&server, "/user").await, 2);
}

#[tokio::test]
async fn config_typos_are_rejected() {
    let Err(err) = GitHubBuilder.build(
        json!({"github_api_base_url": "https://api.github.com", "github_api_url": "x"}),
        &BuildContext::default(),
    ) else {
        panic!("typo accepted")
    };
    assert!(err.message.contains("github_api_url"), "{err}");
    assert_eq!(GitHubBuilder.type_name(), "github_token");
    // Llama Stack's minimal config: just the type.
    assert!(GitHubBuilder.build(json!({}), &BuildContext::default()).is_ok());
}

/// A fine-grained personal access token, as GitHub shapes them.
const FINE_GRAINED_TOKEN: &str =
    "github_pat_11ABCDEFG0aBcDeFgHiJkL_mNoPqRsTuVwXyZ0123456789aBcDeFgHiJkLmNoPqRsTuVwXyZ01234";
/// A GitHub App user access token.
const APP_USER_TOKEN: &str = "ghu_16C7e42F292c6912E7710c838347Ae178B4a";

/// GitHub answering `token` with octocat and three pages of organizations
/// (as `mount_github`), every reply carrying `scopes` as its
/// `X-OAuth-Scopes` headers: none, one, or several copies.
async fn mount_github_scoped(server: &MockServer, token: &str, scopes: &[HeaderValue]) {
    let reply = || scopes.iter().fold(ResponseTemplate::new(200), |r, v| r.append_header("x-oauth-scopes", v.clone()));
    github_get_with("/user", token).respond_with(reply().set_body_json(octocat())).mount(server).await;
    let pages = [vec![org("github", 1), org("octo-org", 2)], vec![org("ml-team", 3)], vec![org("contractors", 4)]];
    for (i, orgs) in pages.into_iter().enumerate() {
        let page = i as u32 + 1;
        let mock = github_get_with("/user/orgs", token).and(query_param("per_page", "100"));
        let mock = match page {
            1 => mock.and(query_param_is_missing("page")),
            _ => mock.and(query_param("page", page.to_string().as_str())),
        };
        let answer = reply().insert_header("link", link(server, page, 3).as_str()).set_body_json(orgs);
        mock.respond_with(answer).mount(server).await;
    }
}

async fn validate_with(p: &DynProvider, token: &str) -> tokengate_api::Principal {
    match p.validate(token, &RequestContext::new("GET", "/v1/models")).await {
        Ok(who) => who,
        Err(e) => panic!("refused: {e}"),
    }
}

fn scopes(text: &str) -> Vec<HeaderValue> {
    vec![HeaderValue::from_str(text).unwrap()]
}

/// #20: fine-grained and GitHub App user tokens list only the organizations
/// they were granted, with a 200 and no `X-OAuth-Scopes`. Their list used to
/// be taken as the membership, so a contractor escaped `forbid: {attribute:
/// teams, any_of: [contractors]}` with a token not granted `contractors`.
#[tokio::test]
async fn fine_grained_and_github_app_tokens_leave_teams_unknown() {
    let no_header = Vec::new();
    let empty_header = scopes("");
    for (token, scopes) in [
        (FINE_GRAINED_TOKEN, &no_header),
        (APP_USER_TOKEN, &no_header),
        (FINE_GRAINED_TOKEN, &empty_header),
        (APP_USER_TOKEN, &empty_header),
    ] {
        let server = MockServer::start().await;
        mount_github_scoped(&server, token, scopes).await;
        let who = validate_with(&provider(&server, json!({})), token).await;
        assert_eq!(who.principal, "octocat");
        assert!(!who.attributes.contains_key("teams"), "{token}: {who:?}");
        assert!(who.is_unknown("teams"), "{token}: {who:?}");
        assert_eq!(count(&server, "/user/orgs").await, 1, "{token}: the first page already proves nothing");
    }
}

/// #20: a classic token's scopes say whether GitHub listed every
/// organization; only `read:org`, `write:org`, `admin:org` and `user` do
/// (`read:user` and `user:email` are not `user`).
#[tokio::test]
async fn classic_tokens_know_memberships_only_with_an_organization_scope() {
    for listed in ["repo", "repo, gist", "read:user, user:email", "READ:ORG", "read:org:x", "read : org", ""] {
        let server = MockServer::start().await;
        mount_github_scoped(&server, TOKEN, &scopes(listed)).await;
        let who = validate_with(&provider(&server, json!({})), TOKEN).await;
        assert!(!who.attributes.contains_key("teams"), "`{listed}`: {who:?}");
        assert!(who.is_unknown("teams"), "`{listed}`: {who:?}");
    }
    for listed in ["read:org", "repo, read:org", "repo,write:org", "admin:org", "gist, user", " user\t", "repo,, user"]
    {
        let server = MockServer::start().await;
        mount_github_scoped(&server, TOKEN, &scopes(listed)).await;
        let who = validate_with(&provider(&server, json!({})), TOKEN).await;
        assert_eq!(who.attributes["teams"], vec!["github", "octo-org", "ml-team", "contractors"], "`{listed}`");
        assert!(who.unknown_attributes.is_empty(), "`{listed}`: {who:?}");
    }
}

/// #20: GitHub writes one `X-OAuth-Scopes` of visible ASCII. Two copies, or
/// bytes past ASCII, are not GitHub's answer to read one way or another: the
/// memberships stay unknown, even when a copy would grant `read:org`.
#[tokio::test]
async fn repeated_or_unreadable_scopes_prove_nothing() {
    let cases = [
        vec![HeaderValue::from_static("repo"), HeaderValue::from_static("read:org")],
        vec![HeaderValue::from_static("read:org"), HeaderValue::from_static("read:org")],
        vec![HeaderValue::from_bytes(b"read:org, r\xc3\xa9po").unwrap()],
        vec![HeaderValue::from_bytes(b"read:org, \xff").unwrap()],
    ];
    for header in cases {
        let server = MockServer::start().await;
        mount_github_scoped(&server, TOKEN, &header).await;
        let who = validate_with(&provider(&server, json!({})), TOKEN).await;
        assert!(who.is_unknown("teams") && !who.attributes.contains_key("teams"), "{header:?}: {who:?}");
    }
}

/// #20: every page must prove itself; a later page without the scope leaves
/// the whole list unknown.
#[tokio::test]
async fn a_later_page_without_scopes_makes_the_list_unknown() {
    let server = MockServer::start().await;
    github_get("/user").respond_with(classic_reply().set_body_json(octocat())).mount(&server).await;
    github_get("/user/orgs")
        .and(query_param_is_missing("page"))
        .respond_with(
            classic_reply().insert_header("link", link(&server, 1, 2).as_str()).set_body_json(vec![org("a", 1)]),
        )
        .mount(&server)
        .await;
    github_get("/user/orgs")
        .and(query_param("page", "2"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", link(&server, 2, 2).as_str())
                .set_body_json(vec![org("b", 2)]),
        )
        .mount(&server)
        .await;
    let who = validate(&provider(&server, json!({}))).await.unwrap();
    assert!(who.is_unknown("teams"), "{who:?}");
    assert_eq!(count(&server, "/user/orgs").await, 2);
}

/// #20: `accept_partial_memberships: true` takes what a scoped token lists,
/// every page of it; a 403 still lists nothing, so it stays unknown.
#[tokio::test]
async fn accept_partial_memberships_takes_a_scoped_tokens_list() {
    for (token, header) in [(FINE_GRAINED_TOKEN, Vec::new()), (APP_USER_TOKEN, scopes("")), (TOKEN, scopes("repo"))] {
        let server = MockServer::start().await;
        mount_github_scoped(&server, token, &header).await;
        let who = validate_with(&provider(&server, json!({"accept_partial_memberships": true})), token).await;
        assert_eq!(who.attributes["teams"], vec!["github", "octo-org", "ml-team", "contractors"], "{token}");
        assert!(who.unknown_attributes.is_empty(), "{token}: {who:?}");
        assert_eq!(count(&server, "/user/orgs").await, 3);
    }

    let server = MockServer::start().await;
    github_get("/user").respond_with(classic_reply().set_body_json(octocat())).mount(&server).await;
    github_get("/user/orgs")
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"message": "Must have admin rights"})))
        .mount(&server)
        .await;
    let who = validate(&provider(&server, json!({"accept_partial_memberships": true}))).await.unwrap();
    assert!(who.is_unknown("teams"), "{who:?}");
}
