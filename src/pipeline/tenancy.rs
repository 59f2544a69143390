//! Tenancy: which tenant a request acts for, and whether it must have one.
//!
//! Providers resolve a tenant where the identity says one (`tenant_claim`,
//! `tenant_field`, `tenant_header`), already a valid tenant id. This stage
//! applies the deployment's mode, after OGX's tenancy design (ADR-0001):
//!
//! - `disabled` (the default): the resolved tenant, if any, travels on; none is fine;
//! - `single`: one tenant, `default_tenant_id`, for every request; a principal
//!   whose provider resolved another tenant is refused (401): it belongs elsewhere,
//!   and quietly renaming its tenant would mix two tenants' data;
//! - `multi`: every authenticated request must resolve a tenant, else 401.

use serde::Deserialize;
use tokengate_api::{tenant_id, AuthError, Principal, Reason};

/// `tenancy:` (tokengate) or `server.tenancy:` (run.yaml).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenancyConfig {
    /// `disabled` (default), `single` or `multi`.
    #[serde(default)]
    pub mode: TenancyMode,
    /// The tenant of every request with `mode: single` (required there, refused elsewhere).
    #[serde(default)]
    pub default_tenant_id: Option<String>,
}

/// See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TenancyMode {
    /// No tenant enforcement.
    #[default]
    Disabled,
    /// One configured tenant.
    Single,
    /// Every request resolves its own tenant.
    Multi,
}

/// The compiled stage.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Tenancy {
    /// See [`TenancyMode::Disabled`].
    #[default]
    Disabled,
    /// See [`TenancyMode::Single`]: the tenant, a valid tenant id.
    Single(String),
    /// See [`TenancyMode::Multi`].
    Multi,
}

impl TenancyConfig {
    /// Checks the config; `Err` is (field, message).
    pub fn compile(&self) -> Result<Tenancy, (&'static str, String)> {
        match (self.mode, &self.default_tenant_id) {
            (TenancyMode::Single, Some(id)) => tenant_id(id, "default_tenant_id")
                .map(Tenancy::Single)
                .map_err(|e| ("default_tenant_id", e.detail().to_string())),
            (TenancyMode::Single, None) => {
                Err(("default_tenant_id", "is required with `mode: single`: the tenant of every request".into()))
            }
            (mode, Some(_)) => Err((
                "default_tenant_id",
                format!("only applies to `mode: single` (mode is {})", format!("{mode:?}").to_lowercase()),
            )),
            (TenancyMode::Disabled, None) => Ok(Tenancy::Disabled),
            (TenancyMode::Multi, None) => Ok(Tenancy::Multi),
        }
    }
}

impl Tenancy {
    /// The principal with its tenant settled, or why it has none it may use.
    pub fn settle(&self, mut principal: Principal) -> Result<Principal, AuthError> {
        match self {
            Tenancy::Disabled => Ok(principal),
            Tenancy::Single(only) => match &principal.tenant {
                None => {
                    principal.tenant = Some(only.clone());
                    Ok(principal)
                }
                Some(t) if t == only => Ok(principal),
                Some(t) => Err(AuthError::invalid_token(format!(
                    "the token is for tenant {t}, and this deployment serves only tenant {only} (tenancy: single)"
                ))
                .because(Reason::Tenant)),
            },
            Tenancy::Multi if principal.tenant.is_some() => Ok(principal),
            Tenancy::Multi => Err(AuthError::invalid_token(
                "no tenant could be resolved for this principal, and tenancy `multi` requires one \
                 (set tenant_claim, tenant_field or tenant_header on the provider)",
            )
            .because(Reason::Tenant)),
        }
    }

    /// The tenant of a request let in without a principal (open paths, no provider).
    pub fn anonymous(&self) -> Option<&str> {
        match self {
            Tenancy::Single(only) => Some(only),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: serde_json::Value) -> Result<Tenancy, (&'static str, String)> {
        serde_json::from_value::<TenancyConfig>(yaml).unwrap().compile()
    }

    #[test]
    fn modes_compile_and_refuse_what_cannot_be_meant() {
        use serde_json::json;
        assert_eq!(config(json!({})), Ok(Tenancy::Disabled));
        assert_eq!(config(json!({"mode": "multi"})), Ok(Tenancy::Multi));
        assert_eq!(config(json!({"mode": "single", "default_tenant_id": "Acme"})), Ok(Tenancy::Single("acme".into())));
        assert_eq!(config(json!({"mode": "single"})).unwrap_err().0, "default_tenant_id");
        assert_eq!(config(json!({"mode": "single", "default_tenant_id": "a b"})).unwrap_err().0, "default_tenant_id");
        assert_eq!(config(json!({"mode": "multi", "default_tenant_id": "acme"})).unwrap_err().0, "default_tenant_id");
        assert!(serde_json::from_value::<TenancyConfig>(json!({"mode": "Multi"})).is_err());
        assert!(serde_json::from_value::<TenancyConfig>(json!({"mode": "multi", "strict": true})).is_err());
    }

    #[test]
    fn settle_by_mode() {
        let with = |t: Option<&str>| Principal::new("alice").with_tenant(t.map(str::to_string));
        assert_eq!(Tenancy::Disabled.settle(with(None)).unwrap().tenant, None);
        assert_eq!(Tenancy::Disabled.settle(with(Some("x"))).unwrap().tenant.as_deref(), Some("x"));
        let single = Tenancy::Single("acme".into());
        assert_eq!(single.settle(with(None)).unwrap().tenant.as_deref(), Some("acme"));
        assert_eq!(single.settle(with(Some("acme"))).unwrap().tenant.as_deref(), Some("acme"));
        let other = single.settle(with(Some("globex"))).unwrap_err();
        assert_eq!((other.kind().http_status(), other.reason()), (401, &Reason::Tenant));
        assert_eq!(Tenancy::Multi.settle(with(Some("x"))).unwrap().tenant.as_deref(), Some("x"));
        let none = Tenancy::Multi.settle(with(None)).unwrap_err();
        assert_eq!((none.kind().http_status(), none.reason()), (401, &Reason::Tenant));
        assert_eq!(single.anonymous(), Some("acme"));
        assert_eq!(Tenancy::Multi.anonymous(), None);
    }
}
