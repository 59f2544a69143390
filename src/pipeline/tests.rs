use super::*;
use tokengate_api::{AuthProvider, Trace};

/// Owns tokens starting with its prefix; `<prefix>ok` is valid, anything else is not.
struct Prefixed(&'static str, &'static str);

#[async_trait::async_trait]
impl AuthProvider for Prefixed {
    async fn validate(&self, token: &str, _: &RequestContext) -> Result<Principal, AuthError> {
        match token.strip_prefix(self.0) {
            Some("ok") => Ok(Principal::new(self.1).with_attributes([("roles".into(), vec!["dev".into()])].into())),
            Some("ctl") => Ok(Principal::new("eve\nINFO forged")),
            _ => Err(AuthError::invalid_token("unknown key")),
        }
    }
    fn ownership(&self, token: &str) -> Ownership {
        if token.starts_with(self.0) {
            Ownership::Mine
        } else {
            Ownership::NotMine
        }
    }
    fn describe(&self) -> Description {
        Description::new("prefixed").accepting(format!("keys starting with {}", self.0))
    }
}

fn chain() -> Pipeline {
    Pipeline::new(vec![Arc::new(Prefixed("a_", "alice")), Arc::new(Prefixed("b_", "bob"))])
}

#[tokio::test]
async fn the_owner_decides_and_is_named() {
    let p = chain();
    let ctx = RequestContext::new("GET", "/");
    let d = p.decide("b_ok", &ctx).await;
    assert_eq!(d.owner, Some(Owner { index: 1, type_name: Arc::from("prefixed") }));
    assert_eq!(d.outcome.unwrap().principal, "bob");
    assert!(d.trace.is_empty(), "no trace unless asked");
    let e = p.decide("b_bad", &ctx).await.outcome.unwrap_err();
    assert_eq!(e.reason(), &Reason::Rejected);
    let d = p.decide("c_ok", &ctx).await;
    assert_eq!((d.owner, d.outcome.unwrap_err().reason().clone()), (None, Reason::NotOwned));
}

#[tokio::test]
async fn principals_that_cannot_travel_are_refused() {
    let e = chain().validate("a_ctl", &RequestContext::new("GET", "/")).await.unwrap_err();
    assert_eq!((e.code(), e.reason()), ("invalid_token", &Reason::Principal));
}

#[tokio::test]
async fn route_policy_refusals_are_policy_and_traced() {
    let policy = RoutePolicy::from_value(&serde_json::json!({
        "default": "permit",
        "rules": [{"forbid": {"paths": ["/admin/*"], "attribute": "roles", "none_of": ["admin"]}}]
    }))
    .unwrap();
    let p = chain().with_route_policy(policy);
    let mut ctx = RequestContext::new("GET", "/admin/users");
    ctx.trace = Trace::on();
    let d = p.decide("a_ok", &ctx).await;
    let e = d.outcome.unwrap_err();
    assert_eq!((e.code(), e.reason()), ("insufficient_scope", &Reason::Policy));
    let checks: Vec<(&str, bool)> = d.trace.iter().map(|c| (c.check.as_str(), c.ok)).collect();
    assert_eq!(checks, [("ownership", true), ("shape", true), ("provider", true), ("route_policy", false)]);
    assert_eq!(d.attributes.len(), 1, "attributes are explained even when the route is refused");
    assert_eq!(d.attributes[0].rule, "set by the prefixed provider");
}
