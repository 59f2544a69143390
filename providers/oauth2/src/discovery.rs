//! OIDC discovery: `{issuer}/.well-known/openid-configuration` → `jwks_uri`.

use crate::text::display_url;
use serde_json::Value;
use tokengate_api::AuthError;
use tokengate_kit::{read_json_limited, HttpFailure};
use url::Url;

/// Where the discovery document of `issuer` lives (OIDC Discovery §4: the
/// issuer's path, without a trailing slash, plus the well-known suffix).
pub(crate) fn discovery_url(issuer: &str) -> Result<Url, String> {
    let base = issuer.trim_end_matches('/');
    let url = Url::parse(&format!("{base}/.well-known/openid-configuration"))
        .map_err(|e| format!("is not a URL, so OIDC discovery cannot use it ({e})"))?;
    check_scheme(&url)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("an issuer used for OIDC discovery cannot have a query or fragment".to_string());
    }
    Ok(url)
}

pub(crate) fn check_scheme(url: &Url) -> Result<(), String> {
    match url.scheme() {
        "https" | "http" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        "https" | "http" => Err("has no host".to_string()),
        other => Err(format!("uses {other}://; only https:// (or http:// for local testing) is supported")),
    }
}

/// Fetches the discovery document and returns its `jwks_uri`, after checking
/// that the document speaks for the configured issuer: a mismatch means a
/// misconfigured or impersonating provider, so its keys must not be trusted.
pub(crate) async fn discover(
    client: &reqwest::Client,
    url: &Url,
    issuer: &str,
    max_response_bytes: usize,
) -> Result<Url, AuthError> {
    let outcome = fetch(client, url, issuer, max_response_bytes).await;
    let result = if outcome.is_ok() { "ok" } else { "error" };
    metrics::counter!("tokengate_idp_fetches_total", "provider" => "oauth2_token", "kind" => "discovery", "result" => result)
        .increment(1);
    outcome
}

async fn fetch(client: &reqwest::Client, url: &Url, issuer: &str, limit: usize) -> Result<Url, AuthError> {
    let what = format!("OIDC discovery at {}", display_url(url));
    let response = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| HttpFailure::from_reqwest(&what, &e.without_url()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(AuthError::unavailable(format!("{what}: answered HTTP {status}")));
    }
    let doc: Value = read_json_limited(&what, response, limit).await?;
    match doc.get("issuer").and_then(Value::as_str) {
        Some(named) if named == issuer => {}
        Some(named) => {
            return Err(AuthError::unavailable(format!(
                "{what}: the document names issuer {}, not the configured {}",
                crate::text::quoted(named),
                crate::text::quoted(issuer)
            )))
        }
        None => return Err(AuthError::unavailable(format!("{what}: the document has no `issuer`"))),
    }
    let Some(jwks_uri) = doc.get("jwks_uri").and_then(Value::as_str) else {
        return Err(AuthError::unavailable(format!("{what}: the document has no `jwks_uri`")));
    };
    let jwks =
        Url::parse(jwks_uri).map_err(|e| AuthError::unavailable(format!("{what}: `jwks_uri` is not a URL ({e})")))?;
    check_scheme(&jwks).map_err(|e| AuthError::unavailable(format!("{what}: `jwks_uri` {e}")))?;
    check_jwks_origin(url, &jwks).map_err(|e| AuthError::unavailable(format!("{what}: {e}")))?;
    Ok(jwks)
}

/// The discovered `jwks_uri` is where the keys (and `jwks.token`) go: it
/// must not downgrade an https issuer to plain http, where anyone on the path
/// could swap the keys. Another host is legitimate (CDNs, separate key
/// services) but worth a warning, since the document alone decided it.
/// `discovery` has the issuer's scheme and host.
fn check_jwks_origin(discovery: &Url, jwks: &Url) -> Result<(), String> {
    if discovery.scheme() == "https" && jwks.scheme() != "https" {
        return Err(format!(
            "`jwks_uri` {} is {}:// while the issuer is https://; refusing to fetch keys over a downgraded connection",
            display_url(jwks),
            jwks.scheme()
        ));
    }
    if discovery.host_str() != jwks.host_str() {
        tracing::warn!(
            issuer_host = discovery.host_str().unwrap_or_default(),
            jwks = %display_url(jwks),
            "OIDC discovery names a jwks_uri on another host than the issuer; keys (and jwks.token, if set) go there"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_url_strips_the_trailing_slash() {
        assert_eq!(
            discovery_url("https://idp.example/realms/a/").unwrap().as_str(),
            "https://idp.example/realms/a/.well-known/openid-configuration"
        );
        assert!(discovery_url("not a url").is_err());
        assert!(discovery_url("ftp://x").unwrap_err().contains("ftp://"));
        assert!(discovery_url("https://x/?q=1").is_err());
    }

    #[test]
    fn jwks_uri_never_downgrades_an_https_issuer() {
        let issuer = Url::parse("https://idp.example/.well-known/openid-configuration").unwrap();
        let e = check_jwks_origin(&issuer, &Url::parse("http://idp.example/jwks").unwrap()).unwrap_err();
        assert!(e.contains("http:// while the issuer is https://"), "{e}");
        assert!(check_jwks_origin(&issuer, &Url::parse("https://idp.example/jwks").unwrap()).is_ok());
        assert!(check_jwks_origin(&issuer, &Url::parse("https://keys.cdn.example/jwks").unwrap()).is_ok(), "warned");
        let local = Url::parse("http://127.0.0.1:1/.well-known/openid-configuration").unwrap();
        assert!(check_jwks_origin(&local, &Url::parse("https://127.0.0.1:2/jwks").unwrap()).is_ok(), "no downgrade");
    }
}
