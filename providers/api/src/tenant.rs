//! Tenant ids: the one normal form every provider resolves a tenant into.
//!
//! A tenant id partitions data (OGX's `User.tenant_id`), so two spellings of
//! one tenant must never become two tenants, and a tenant id must be safe in
//! a header, a log line, a path and a database key without any escaping:
//! it is lower-cased, then must match [`TENANT_PATTERN`].

use crate::{claim_at_path, AuthError, ClaimValue, ClaimView, Reason};

/// What a tenant id looks like after lower-casing.
pub const TENANT_PATTERN: &str = "^[a-z0-9][a-z0-9_-]{0,127}$";

/// `raw` lower-cased, if that is a valid tenant id; else a 401 naming `source`
/// (the claim, field or header it came from) without echoing the value.
pub fn tenant_id(raw: &str, source: &str) -> Result<String, AuthError> {
    let tenant = raw.to_ascii_lowercase();
    let bytes = tenant.as_bytes();
    let valid = matches!(bytes.first(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.len() <= 128
        && bytes.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if valid {
        return Ok(tenant);
    }
    let why = if raw.is_empty() {
        "is empty".to_string()
    } else if raw.len() > 128 {
        format!("is {} bytes long (at most 128)", raw.len())
    } else {
        format!("is not a tenant id ({TENANT_PATTERN} after lower-casing)")
    };
    Err(AuthError::invalid_token(format!("the tenant in {source} {why}")).because(Reason::Tenant))
}

/// The tenant named by `claim` in `claims`: a dotted path into nested objects
/// first, then the literal key (as claims mapping reads them). `Ok(None)` when
/// the claim is absent, null or an empty list; a list of one string is that
/// string; anything else that is not a string (or a number), including a list
/// of several tenants, is refused rather than guessed at.
pub fn tenant_from<C: ClaimValue>(claims: &C, claim: &str, source: &str) -> Result<Option<String>, AuthError> {
    let not_a_string =
        || Err(AuthError::invalid_token(format!("the tenant in {source} is not a string")).because(Reason::Tenant));
    match claim_at_path(claims, claim).map(ClaimValue::view) {
        None | Some(ClaimView::Null) => Ok(None),
        Some(ClaimView::String(s)) => tenant_id(s, source).map(Some),
        Some(ClaimView::Number(n)) => tenant_id(&n.to_string(), source).map(Some),
        // Kubernetes `extra` values are always lists; one tenant in one is that tenant.
        Some(ClaimView::Array([])) => Ok(None),
        Some(ClaimView::Array([one])) => match one.view() {
            ClaimView::String(s) => tenant_id(s, source).map(Some),
            _ => not_a_string(),
        },
        Some(ClaimView::Array(items)) => {
            Err(AuthError::invalid_token(format!("{source} names {} tenants, not one", items.len()))
                .because(Reason::Tenant))
        }
        Some(_) => not_a_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tenant_ids_are_lower_cased_and_checked() {
        assert_eq!(tenant_id("Acme-Prod_1", "x").unwrap(), "acme-prod_1");
        assert_eq!(tenant_id("7", "x").unwrap(), "7");
        assert_eq!(tenant_id(&"a".repeat(128), "x").unwrap().len(), 128);
        for bad in ["", "-acme", "_acme", "acme corp", "acme/prod", "acme.prod", "ACMÉ", "a\u{0}", "İstanbul"] {
            let e = tenant_id(bad, "claim `tid`").unwrap_err();
            assert_eq!(e.reason(), &Reason::Tenant, "{bad:?}");
            assert_eq!(e.kind().http_status(), 401);
            assert!(e.detail().contains("claim `tid`"), "{}", e.detail());
        }
        assert!(tenant_id(&"a".repeat(129), "x").is_err());
    }

    #[test]
    fn the_value_is_never_echoed() {
        let e = tenant_id("secret value with spaces", "header x-tenant").unwrap_err();
        assert!(!e.detail().contains("secret"), "{}", e.detail());
    }

    #[test]
    fn claims_nested_path_first_then_literal_key() {
        let claims = json!({"org": {"id": "Nested"}, "org.id": "literal", "n": 42, "one": ["A"], "two": ["a", "b"],
                            "none": [], "nul": null, "obj": {}});
        assert_eq!(tenant_from(&claims, "org.id", "x").unwrap().as_deref(), Some("nested"));
        assert_eq!(tenant_from(&json!({"org.id": "Literal"}), "org.id", "x").unwrap().as_deref(), Some("literal"));
        assert_eq!(tenant_from(&claims, "n", "x").unwrap().as_deref(), Some("42"));
        assert_eq!(tenant_from(&claims, "missing", "x").unwrap(), None);
        assert_eq!(tenant_from(&claims, "nul", "x").unwrap(), None);
        assert_eq!(tenant_from(&claims, "one", "x").unwrap().as_deref(), Some("a"));
        assert_eq!(tenant_from(&claims, "none", "x").unwrap(), None);
        assert_eq!(tenant_from(&claims, "two", "x").unwrap_err().reason(), &Reason::Tenant);
        assert_eq!(tenant_from(&claims, "obj", "x").unwrap_err().reason(), &Reason::Tenant);
    }
}
