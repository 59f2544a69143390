use super::rate::{civil_from_days, days_from_civil, gcra, utc_timestamp};
use super::*;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use tokengate_api::{CredentialInfo, ErrorKind};

/// A clock the test moves.
#[derive(Default)]
struct ManualClock(AtomicU64);

impl ManualClock {
    fn at(us: u64) -> Arc<Self> {
        Arc::new(ManualClock(AtomicU64::new(us)))
    }
    fn set(&self, us: u64) {
        self.0.store(us, Ordering::SeqCst);
    }
    fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_micros() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_us(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Microseconds at `y-m-d h:mi:s` UTC.
fn utc(y: u64, m: u64, d: u64, h: u64, mi: u64, s: u64) -> u64 {
    ((days_from_civil(y, m, d) * 86_400) + h * 3600 + mi * 60 + s) * SECOND_US
}

fn limits(yaml: &str, clock: &Arc<ManualClock>) -> Limits {
    let config: LimitsConfig = yaml_serde::from_str(yaml).expect("the limits parse");
    Limits::from_config(&config).expect("the limits compile").with_clock(clock.clone())
}

fn ctx(method: &str, path: &str) -> RequestContext {
    RequestContext::new(method, path)
}

async fn run(l: &Limits, c: &RequestContext, p: &Principal, n: usize) -> (usize, Option<AuthError>) {
    let mut allowed = 0;
    let mut last = None;
    for _ in 0..n {
        match l.check(c, Some(p)).await {
            Ok(()) => allowed += 1,
            Err(e) => last = Some(e),
        }
    }
    (allowed, last)
}

#[test]
fn rates_parse_as_written_and_nothing_else() {
    assert_eq!(Rate::parse("100/min").unwrap(), Rate { count: 100, window_secs: 60, burst: 100 });
    assert_eq!(Rate::parse("10/s burst 20").unwrap(), Rate { count: 10, window_secs: 1, burst: 20 });
    assert_eq!(Rate::parse(" 5000/Hour ").unwrap().window_secs, 3600);
    assert_eq!(Rate::parse("1/second BURST 1").unwrap().burst, 1);
    for bad in [
        "",
        "100",
        "100/day",
        "0/min",
        "-1/min",
        "+5/min",
        "1.5/s",
        "10/s burst",
        "10/s burst 0",
        "10/s 20",
        "10/s burst 20 x",
        "99999999999/s",
    ] {
        assert!(Rate::parse(bad).is_err(), "{bad:?} was read");
    }
}

#[test]
fn calendar_arithmetic_matches_known_dates() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(days_from_civil(2024, 2, 29), 19_782);
    assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    for day in (0..80_000).step_by(17) {
        let (y, m, d) = civil_from_days(day);
        assert_eq!(days_from_civil(y, m, d), day);
    }
    let span = Period::Month.at(utc(2024, 2, 10, 12, 0, 0));
    assert_eq!((span.start_us, span.end_us), (utc(2024, 2, 1, 0, 0, 0), utc(2024, 3, 1, 0, 0, 0)));
    let dec = Period::Month.at(utc(2025, 12, 31, 23, 59, 59));
    assert_eq!(dec.end_us, utc(2026, 1, 1, 0, 0, 0));
    assert_eq!(utc_timestamp(utc(2026, 1, 31, 7, 8, 9)), "2026-01-31T07:08:09Z");
}

#[test]
fn gcra_allows_the_burst_then_the_steady_rate() {
    let interval = 1_000_000; // 1/s
    let mut tat = None;
    let now = 10_000_000_000;
    for i in 0..3 {
        let (r, t) = gcra(tat, now, interval, 3, 1);
        assert!(r.allowed, "request {i} of the burst");
        assert_eq!(r.remaining, 2 - i);
        tat = Some(t);
    }
    let (r, _) = gcra(tat, now, interval, 3, 1);
    assert!(!r.allowed);
    assert_eq!(r.retry_us, interval, "one interval until one more fits");
    let (r, _) = gcra(tat, now + interval, interval, 3, 1);
    assert!(r.allowed, "one interval later");
}

#[tokio::test]
async fn a_rate_with_a_burst_admits_the_burst_and_refills_at_the_rate() {
    let clock = ManualClock::at(utc(2026, 3, 1, 12, 0, 0));
    let l = limits("rules: [{name: chat, paths: [/v1/chat/*], rate: 60/min burst 5}]", &clock);
    let (c, alice) = (ctx("POST", "/v1/chat/completions"), Principal::new("alice"));
    let (allowed, error) = run(&l, &c, &alice, 20).await;
    assert_eq!(allowed, 5, "the burst, and not one more");
    let error = error.expect("refused past the burst");
    assert_eq!(error.kind(), ErrorKind::RateLimited);
    assert_eq!(error.kind().http_status(), 429);
    assert_eq!(*error.reason(), Reason::RateLimited);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(1)));
    let info = error.rate_limit().expect("the limits that applied");
    assert_eq!(info.policies[0].name, "chat");
    assert_eq!((info.policies[0].quota, info.policies[0].window_secs, info.policies[0].remaining), (60, 60, 0));
    clock.advance(Duration::from_secs(3));
    assert_eq!(run(&l, &c, &alice, 10).await.0, 3, "one a second refilled");
    let bob = Principal::new("bob");
    assert_eq!(run(&l, &c, &bob, 10).await.0, 5, "bob has his own count");
    assert_eq!(run(&l, &ctx("GET", "/v1/models"), &alice, 10).await.0, 10, "another route is not counted");
}

#[tokio::test]
async fn a_daily_quota_rolls_over_at_utc_midnight_and_not_before() {
    let clock = ManualClock::at(utc(2026, 5, 10, 23, 59, 58));
    let l = limits("rules: [{name: daily, daily_quota: 3}]", &clock);
    let (c, alice) = (ctx("GET", "/x"), Principal::new("alice"));
    assert_eq!(run(&l, &c, &alice, 5).await.0, 3);
    let e = l.check(&c, Some(&alice)).await.unwrap_err();
    assert_eq!(*e.reason(), Reason::QuotaExceeded);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(2)), "until midnight UTC");
    assert!(e.detail().contains("until 2026-05-11T00:00:00Z"), "{e:?}");
    assert_eq!(e.rate_limit().unwrap().policies[0].name, "daily:day");
    assert_eq!(e.rate_limit().unwrap().policies[0].window_secs, 86_400);
    clock.set(utc(2026, 5, 10, 23, 59, 59) + 999_999);
    assert_eq!(run(&l, &c, &alice, 1).await.0, 0, "one microsecond before midnight");
    clock.set(utc(2026, 5, 11, 0, 0, 0));
    assert_eq!(run(&l, &c, &alice, 5).await.0, 3, "a new day");
}

#[tokio::test]
async fn a_monthly_quota_rolls_over_at_month_end_including_february_and_december() {
    for (last_second, next) in [
        (utc(2024, 2, 29, 23, 59, 59), utc(2024, 3, 1, 0, 0, 0)),
        (utc(2025, 2, 28, 23, 59, 59), utc(2025, 3, 1, 0, 0, 0)),
        (utc(2025, 12, 31, 23, 59, 59), utc(2026, 1, 1, 0, 0, 0)),
        (utc(2026, 4, 30, 23, 59, 59), utc(2026, 5, 1, 0, 0, 0)),
    ] {
        let clock = ManualClock::at(last_second - 20 * 86_400 * SECOND_US);
        let l = limits("rules: [{name: monthly, monthly_quota: 2}]", &clock);
        let (c, alice) = (ctx("GET", "/x"), Principal::new("alice"));
        assert_eq!(run(&l, &c, &alice, 3).await.0, 2);
        clock.set(last_second);
        let e = l.check(&c, Some(&alice)).await.unwrap_err();
        assert_eq!(e.retry_after(), Some(Duration::from_secs(1)), "{}", utc_timestamp(last_second));
        clock.set(next);
        assert_eq!(run(&l, &c, &alice, 3).await.0, 2, "a new month at {}", utc_timestamp(next));
    }
}

#[tokio::test]
async fn every_limit_must_have_room_and_a_refusal_charges_none() {
    let clock = ManualClock::at(utc(2026, 1, 1, 0, 0, 0));
    let l = limits(
        "rules: [{name: fast, rate: 100/s, daily_quota: 1000}, {name: expensive, paths: [/v1/gen*], cost: 5, daily_quota: 10}]",
        &clock,
    );
    let alice = Principal::new("alice");
    let generate = ctx("POST", "/v1/generate");
    assert_eq!(run(&l, &generate, &alice, 5).await.0, 2, "10 units, 5 each");
    // The refused requests charged nothing to `fast`: 98 of its burst of 100 are left.
    assert_eq!(run(&l, &ctx("GET", "/other"), &alice, 200).await.0, 98);
}

#[tokio::test]
async fn tiers_choose_the_limits_and_an_unknown_tier_gets_the_rule_s_own() {
    let clock = ManualClock::at(utc(2026, 1, 1, 0, 0, 0));
    let l = limits(
        "rules:\n- name: api\n  rate: 2/min\n  tiers:\n    attribute: tier\n    values:\n    - {value: premium, rate: 10/min}\n",
        &clock,
    );
    let c = ctx("GET", "/v1/x");
    let premium = Principal::new("p").with_attributes([("tier".to_string(), vec!["premium".to_string()])].into());
    let unknown = Principal::new("u").with_unknown_attributes(["tier"]);
    let none = Principal::new("n");
    assert_eq!(run(&l, &c, &premium, 20).await.0, 10);
    assert_eq!(run(&l, &c, &unknown, 20).await.0, 2);
    assert_eq!(run(&l, &c, &none, 20).await.0, 2);
}

#[tokio::test]
async fn missing_values_never_escape_a_rule() {
    let clock = ManualClock::at(utc(2026, 1, 1, 0, 0, 0));
    let l = limits(
        "rules: [{name: team, by: {attribute: team}, daily_quota: 2}, {name: ten, by: tenant, daily_quota: 100}]",
        &clock,
    );
    let c = ctx("GET", "/x");
    // No team, no tenant: they share one count with every caller without one.
    assert_eq!(run(&l, &c, &Principal::new("a"), 1).await.0, 1);
    assert_eq!(run(&l, &c, &Principal::new("b"), 5).await.0, 1);
    // A member of two teams is charged in both.
    let two = Principal::new("c").with_attributes([("team".to_string(), vec!["x".into(), "y".into()])].into());
    let x = Principal::new("d").with_attributes([("team".to_string(), vec!["x".into()])].into());
    assert_eq!(run(&l, &c, &two, 1).await.0, 1);
    assert_eq!(run(&l, &c, &x, 5).await.0, 1, "team x has one left after the two-team caller");
}

#[tokio::test]
async fn client_ip_counts_ipv6_by_64_and_an_unknown_address_is_an_error() {
    let clock = ManualClock::at(utc(2026, 1, 1, 0, 0, 0));
    let l = limits("rules: [{name: anon, by: client_ip, daily_quota: 2}]", &clock);
    let mut c = ctx("GET", "/x");
    let e = l.check(&c, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "never counted as nobody's");
    for (i, ip) in ["2001:db8:1:2::1", "2001:db8:1:2:ffff::9", "2001:db8:1:2::3"].iter().enumerate() {
        c.client_ip = Some(ip.parse().unwrap());
        assert_eq!(l.check(&c, None).await.is_ok(), i < 2, "{ip}: one /64");
    }
    c.client_ip = Some("2001:db8:1:3::1".parse().unwrap());
    assert!(l.check(&c, None).await.is_ok(), "another /64");
    c.client_ip = Some("::ffff:192.0.2.1".parse().unwrap());
    assert!(l.check(&c, None).await.is_ok());
    c.client_ip = Some("192.0.2.1".parse().unwrap());
    assert!(l.check(&c, None).await.is_ok());
    assert!(l.check(&c, None).await.is_err(), "a mapped address is its IPv4 one");
}

#[tokio::test]
async fn an_api_key_s_own_limits_apply_by_its_id() {
    let clock = ManualClock::at(utc(2026, 1, 1, 0, 0, 0));
    let l = limits("rules: [{name: gen, paths: [/gen], cost: 2, daily_quota: 1000}]", &clock);
    let key = |id: &str, rate: &str| {
        Principal::new("svc").with_credential(Some(Arc::new(CredentialInfo::new(id).with_limits(
            Some(rate.to_string()),
            Some(100),
            None,
        ))))
    };
    let k1 = key("k1", "10/s burst 4");
    assert_eq!(run(&l, &ctx("GET", "/gen"), &k1, 10).await.0, 2, "cost 2 of the route, burst 4");
    let e = l.check(&ctx("GET", "/gen"), Some(&k1)).await.unwrap_err();
    assert_eq!(e.rate_limit().unwrap().policies[0].name, "key");
    assert_eq!(
        run(&l, &ctx("GET", "/gen"), &key("k2", "10/s burst 4"), 10).await.0,
        2,
        "another key of the same principal"
    );
    let bad = key("k3", "lots");
    let e = l.check(&ctx("GET", "/x"), Some(&bad)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.detail().contains("API key `k3`"), "{e:?}");
}

#[tokio::test]
async fn dry_run_counts_and_refuses_nothing() {
    let clock = ManualClock::at(utc(2026, 1, 1, 0, 0, 0));
    let l = limits("mode: shadow\nrules: [{name: r, rate: 1/min}]", &clock);
    assert_eq!(l.mode(), LimitMode::DryRun);
    assert_eq!(run(&l, &ctx("GET", "/"), &Principal::new("a"), 10).await.0, 10);
}

#[tokio::test]
async fn paths_match_in_canonical_form_and_any_case() {
    let clock = ManualClock::at(utc(2026, 1, 1, 0, 0, 0));
    let l = limits("rules: [{name: r, paths: [/v1/chat/*, /admin], methods: [post, GET], rate: 1/min}]", &clock);
    let a = Principal::new("a");
    assert!(l.check(&ctx("POST", "/v1/chat/x"), Some(&a)).await.is_ok());
    assert!(l.check(&ctx("POST", "//V1/Chat/y"), Some(&a)).await.is_err(), "the same route to a case-folding back end");
    let b = Principal::new("b");
    assert!(l.check(&ctx("HEAD", "/admin/"), Some(&b)).await.is_ok());
    assert!(l.check(&ctx("GET", "/ADMIN"), Some(&b)).await.is_err());
    assert!(l.check(&ctx("DELETE", "/admin"), Some(&b)).await.is_ok(), "not a named method");
    assert_eq!(l.check(&ctx("GET", "/v1/chat/..;/x"), Some(&b)).await.unwrap_err().kind(), ErrorKind::InvalidRequest);
}

#[test]
fn configs_that_cannot_work_are_refused_naming_the_field() {
    let error = |yaml: &str| {
        let config: LimitsConfig = yaml_serde::from_str(yaml).unwrap();
        Limits::from_config(&config).unwrap_err()
    };
    assert_eq!(error("rules: [{name: 'a b', rate: 1/s}]").field, "rules[0].name");
    assert_eq!(error("rules: [{name: key, rate: 1/s}]").field, "rules[0].name");
    assert_eq!(error("rules: [{name: a, rate: 1/s}, {name: a, rate: 2/s}]").field, "rules[1].name");
    assert_eq!(error("rules: [{name: a}]").field, "rules[0].rate");
    assert_eq!(error("rules: [{name: a, rate: 1/fortnight}]").field, "rules[0].rate");
    assert_eq!(error("rules: [{name: a, rate: 10/s burst 2, cost: 3}]").field, "rules[0].cost");
    assert_eq!(error("rules: [{name: a, daily_quota: 0}]").field, "rules[0].daily_quota");
    assert_eq!(
        error("rules: [{name: a, by: principal, callers: anonymous, daily_quota: 1}]").field,
        "rules[0].callers"
    );
    assert_eq!(error("rules: [{name: a, paths: [], daily_quota: 1}]").field, "rules[0].paths");
    assert_eq!(error("rules: [{name: a, paths: [v1], daily_quota: 1}]").field, "rules[0].paths");
    assert!(yaml_serde::from_str::<LimitsConfig>("rules: [{name: a, by: everyone, rate: 1/s}]").is_err());
    assert!(yaml_serde::from_str::<LimitsConfig>("rules: [{name: a, rat: 1/s}]").is_err());
    assert!(yaml_serde::from_str::<LimitsConfig>("mode: sometimes").is_err());
}

fn charge(value: &str, component: Component, limit: Limit) -> Charge<'_> {
    Charge {
        rule: "a",
        component,
        by: "principal",
        value: Cow::Borrowed(value),
        limit,
        cost: 1,
        rule_index: 0,
        quota: 1,
        window_secs: 1,
        rate: None,
    }
}

#[test]
fn the_local_store_applies_all_charges_or_none() {
    let store = LocalStore::default();
    let charges = [
        charge("x", Component::Rate, Limit::Rate { interval_us: 1_000_000, burst: 10 }),
        charge("x", Component::Quota { period: Period::Day, id: 1 }, Limit::Quota { limit: 1, end_us: 10_000_000 }),
    ];
    assert!(store.charge(&charges, 1, Commit::Charge).iter().all(|r| r.allowed));
    let second = store.charge(&charges, 2, Commit::Charge);
    assert!(second[0].allowed && !second[1].allowed);
    assert_eq!(second[0].remaining, 8, "the rate was not charged by the refused decision");
}

#[test]
fn a_peek_at_the_local_store_answers_as_a_charge_and_charges_nothing() {
    let store = LocalStore::default();
    let quota = [charge("x", Component::Quota { period: Period::Day, id: 1 }, Limit::Quota { limit: 1, end_us: 10 })];
    for _ in 0..5 {
        assert!(store.charge(&quota, 1, Commit::Peek)[0].allowed);
    }
    assert!(store.is_empty(), "nothing was written");
    assert!(store.charge(&quota, 1, Commit::Charge)[0].allowed);
    let peek = store.charge(&quota, 1, Commit::Peek)[0];
    assert!(!peek.allowed, "the peek sees the quota used up");
    assert_eq!(peek, store.charge(&quota, 1, Commit::Charge)[0]);
}

#[test]
fn buckets_differ_by_every_part_of_their_name() {
    let store = LocalStore::default();
    let rate = Limit::Rate { interval_us: 1_000_000_000, burst: 1 };
    let base = charge("x", Component::Rate, rate.clone());
    let mut others = vec![
        charge("y", Component::Rate, rate.clone()),
        charge("x", Component::Quota { period: Period::Day, id: 1 }, Limit::Quota { limit: 1, end_us: 10 }),
        Charge { rule: "b", ..base.clone() },
        Charge { by: "tenant", ..base.clone() },
        // The parts cannot run into each other.
        Charge { rule: "a|principal", by: "", ..base.clone() },
        Charge { value: Cow::Borrowed(""), by: "principalx", ..base.clone() },
    ];
    assert!(store.charge(std::slice::from_ref(&base), 1, Commit::Charge)[0].allowed);
    assert!(!store.charge(std::slice::from_ref(&base), 1, Commit::Charge)[0].allowed, "the rate of 1 is used");
    for other in others.drain(..) {
        assert!(store.charge(std::slice::from_ref(&other), 1, Commit::Charge)[0].allowed, "{other:?}");
    }
}

#[test]
fn many_charges_of_one_decision_over_many_shards_are_all_or_none() {
    let store = LocalStore::default();
    let values: Vec<String> = (0..64).map(|i| format!("caller-{i}")).collect();
    let mut charges: Vec<Charge<'_>> =
        values.iter().map(|v| charge(v, Component::Rate, Limit::Rate { interval_us: 1_000_000, burst: 1 })).collect();
    assert!(store.charge(&charges, 1, Commit::Charge).iter().all(|r| r.allowed));
    assert_eq!(store.len(), 64);
    charges.push(charge("fresh", Component::Rate, Limit::Rate { interval_us: 1_000_000, burst: 1 }));
    let again = store.charge(&charges, 2, Commit::Charge);
    assert!(again[64].allowed && !again[0].allowed);
    assert_eq!(store.len(), 64, "the refused decision wrote nothing, not even its new bucket");
}

#[tokio::test]
async fn a_peek_says_what_the_limits_would_and_never_charges() {
    let clock = ManualClock::at(utc(2026, 1, 1, 0, 0, 0));
    let l = limits("rules: [{name: one, daily_quota: 1}, {name: r, rate: 1/min}]", &clock);
    let alice = Principal::new("alice");
    let mut peek = ctx("GET", "/x");
    peek.peek_limits = true;
    peek.trace = tokengate_api::Trace::on();
    for _ in 0..5 {
        assert!(l.check(&peek, Some(&alice)).await.is_ok(), "a peek never uses the quota up");
    }
    assert!(peek.trace.checks().iter().all(|c| c.detail.contains("nothing was charged")), "{:?}", peek.trace.checks());
    assert!(l.check(&ctx("GET", "/x"), Some(&alice)).await.is_ok(), "the real caller's one request");
    let e = l.check(&peek, Some(&alice)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited, "the peek sees what the next request would get");
    assert_eq!(e.rate_limit().unwrap().policies[0].name, "one:day");
}

#[test]
fn a_path_that_looks_canonical_is_canonical() {
    for path in ["/", "/v1/chat/completions", "/a/", "/.well-known/x", "/A-b_c~d!$&'()*+,=:@"] {
        assert!(plainly_canonical(path), "{path}");
        assert_eq!(crate::path::canonical_path(path).as_deref(), Ok(path));
    }
    for path in ["", "v1", "//", "/a//b", "/a/.", "/a/../b", "/a./b", "/a%41", "/a;b", "/a\\b", "/é", "/a b", "/a?b"] {
        assert!(!plainly_canonical(path), "{path}");
    }
}

proptest::proptest! {
    /// The fast path never takes a path `canonical_path` would change or refuse.
    #[test]
    fn plainly_canonical_paths_are_their_own_canonical_form(path in "[/a.A%;:@ ~+]{0,12}") {
        if plainly_canonical(&path) {
            let canonical = crate::path::canonical_path(&path);
            proptest::prop_assert_eq!(canonical.as_deref(), Ok(path.as_str()));
        }
    }
}
