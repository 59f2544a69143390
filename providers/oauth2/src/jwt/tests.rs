use super::*;

#[test]
fn tokens_are_cached_from_their_second_verification() {
    let cache = VerifiedCache::new(10_000, std::time::Duration::from_secs(60));
    assert_eq!(cache.seen.len(), 16_384);
    let (a, b) = ([1u8; 32], [2u8; 32]);
    assert!(!cache.admit(&a), "first sight: only remembered");
    assert!(!cache.admit(&b));
    assert!(cache.admit(&a), "second sight: cached");
    assert!(cache.admit(&a));
    // A token whose slot was taken by another starts over.
    let mut c = a;
    c[8] ^= 0xff;
    assert!(!cache.admit(&c));
    assert!(!cache.admit(&a));
    assert!(cache.admit(&a));
    assert_eq!(VerifiedCache::new(1, std::time::Duration::from_secs(1)).seen.len(), 1 << 10);
}

/// Issue #21: the twins of a token (the other ECDSA S) share its cache entry;
/// a spelling the verifier refuses (a padded signature), or high-S under
/// `require_low_s`, never reaches the entry its canonical twin left.
#[test]
fn twins_share_one_cache_entry_unless_the_verifier_refuses_them() {
    let b64 = |b: &[u8]| TOKEN_B64.encode(b);
    let mut signature: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(29).wrapping_add(0xa3)).collect();
    signature[32] = 0xf0; // s > n/2
    let high = format!("{}.{}.{}", b64(br#"{"alg":"ES256","kid":"k"}"#), b64(br#"{"sub":"a"}"#), b64(&signature));
    let low = crate::ecdsa::low_s_token(&high);
    assert_ne!(low, high);
    let key = cache_key(&identify(&low), false).unwrap();
    assert_eq!(key, tokengate_kit::token_identity(&low));
    assert_eq!(cache_key(&identify(&high), false), Some(key), "the high-S twin");
    assert_eq!(cache_key(&identify(&low), true), Some(key));
    assert_eq!(cache_key(&identify(&high), true), None, "require_low_s: verified, and refused, every time");
    assert_eq!(cache_key(&identify(&format!("{low}==")), false), None, "padded: refused by the verifier");
    let (input, _) = low.rsplit_once('.').unwrap();
    assert_ne!(cache_key(&identify(&format!("{input}.{}", b64(&[9; 64]))), false), Some(key));
}

#[test]
fn huge_cache_sizes_do_not_allocate_or_panic() {
    let cache = VerifiedCache::new(u64::MAX, std::time::Duration::from_secs(60));
    cache.insert([7; 32], Principal::new("a"), f64::INFINITY, None, 1);
    assert!(cache.entries.get(&[7; 32]).is_some());
    assert_eq!(cache.seen.len(), 1 << 17);
}

#[test]
fn rfc3339_formatting() {
    assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_700_000_000.9), "2023-11-14T22:13:20Z");
    assert_eq!(rfc3339(-1.0), "1969-12-31T23:59:59Z");
    assert_eq!(rfc3339(951_782_400.0), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(253_402_300_799.0), "9999-12-31T23:59:59Z");
    assert!(rfc3339(1e300).contains("seconds since 1970"));
}

#[test]
fn quoting_cuts_long_values_on_char_boundaries() {
    assert_eq!(quoted("k1"), "\"k1\"");
    let long = "é".repeat(100);
    let q = quoted(&long);
    assert!(q.ends_with('…') && q.len() < 80);
    assert_eq!(list(["a", "b"]), "[\"a\", \"b\"]");
    assert!(list((0..20).map(|_| "x")).contains("12 more"));
}

fn b64(s: &str) -> String {
    TOKEN_B64.encode(s)
}

#[test]
fn header_checks() {
    let all = AlgSet::asymmetric();
    let tok = |h: &str| format!("{}.{}.c2ln", b64(h), b64("{}"));
    let err = |t: &str| parse(t, all, true, &Trace::default()).unwrap_err().detail().to_string();
    assert!(err(&tok(r#"{"alg":"NoNe"}"#)).contains("never accepted"));
    assert!(err(&tok(r#"{"alg":"HS256"}"#)).contains("key confusion"));
    assert!(err(&tok(r#"{"alg":"RS256","alg":"RS256"}"#)).contains("duplicate"));
    assert!(err(&tok(r#"["RS256"]"#)).contains("not a JSON object"));
    assert!(err(&tok(r#"{"alg":"RS256","crit":["exp"]}"#)).contains("critical ([\"exp\"])"));
    assert!(err(&tok(r#"{"alg":"RS256","crit":null}"#)).contains("critical ([])"));
    assert!(err(&tok(r#"{"alg":"RS256","crit":[]}"#)).contains("critical ([])"));
    assert!(err(&tok(r#"{"kid":"a"}"#)).contains("no alg"));
    assert!(err(&tok(r#"{"alg":"XS1"}"#)).contains("unsupported alg \"XS1\""));
    assert!(err("a.b").contains("found 2"));
    assert!(err("a.b.c.d.e").contains("JWE"));
    let token = tok(r#"{"alg":"RS256","kid":"k\u0031","jku":"https://evil"}"#);
    let ok = parse(&token, all, true, &Trace::default()).unwrap();
    assert_eq!(ok.kid.as_deref(), Some("k1"));
    assert_eq!(ok.alg, Alg::RS256);
}

#[test]
fn peek_reads_unverified_iss() {
    let t = format!("{}.{}.sig", b64(r#"{"alg":"RS256"}"#), b64(r#"{"iss":"https://i"}"#));
    assert_eq!(peek(&t, 8192), Some(Some("https://i".to_string())));
    assert_eq!(peek("opaque-token", 8192), None);
    assert_eq!(peek("a.b.c", 8192), None);
}

#[test]
fn payloads_of_any_size_decode_the_same() {
    // Small, on both sides of the size decoded on the stack, and well past it.
    let around = PAYLOAD_STACK_BYTES - 40..PAYLOAD_STACK_BYTES + 8;
    let (mut on_stack, mut on_heap) = (false, false);
    for filler in [0, 5_000].into_iter().chain(around) {
        let claims = serde_json::json!({"sub": "alice", "exp": 1, "pad": "x".repeat(filler)});
        let payload = TOKEN_B64.encode(serde_json::to_vec(&claims).unwrap());
        if base64::decoded_len_estimate(payload.len()) <= PAYLOAD_STACK_BYTES {
            on_stack = true;
        } else {
            on_heap = true;
        }
        assert_eq!(decode_claims(&payload).unwrap(), claims, "{filler}");
        let broken = format!("{payload}!");
        assert!(decode_claims(&broken).is_err(), "{filler}");
    }
    assert!(on_stack && on_heap);
}

/// Reading the payload as text first changes nothing: what is not UTF-8 is
/// refused in the words `from_slice` gives (truncated, duplicate, syntax), and
/// text with escapes and non-ASCII reads as before.
#[test]
fn payloads_read_as_text_decode_and_fail_as_from_slice_does() {
    let detail = |json: &[u8]| decode_claims(&TOKEN_B64.encode(json)).unwrap_err().detail().to_string();
    let from_slice = |json: &[u8]| {
        let e = serde_json::from_slice::<strict::StrictClaims>(json).err().unwrap();
        format!("malformed JWT: the payload is not valid JSON ({})", e.classify_text())
    };
    for json in [
        &b"{\"sub\":\"\xff\"}"[..],
        b"{\"sub\":\"\xff",
        b"{\"a\":1,\"a\":2,\"\xc3\"}",
        b"{\"\xe2\x82\":1}",
        b"{\"sub\":\"ok\"} \xff",
    ] {
        assert_eq!(detail(json), from_slice(json), "{}", String::from_utf8_lossy(json));
    }
    let text = r#"{"sub":"\u00e9l\u00e8ve \"q\"","name":"Zoë 🚀","exp":1}"#;
    let claims = decode_claims(&TOKEN_B64.encode(text)).unwrap();
    assert_eq!(claims, serde_json::from_slice::<serde_json::Value>(text.as_bytes()).unwrap());
}

/// The payload read borrowed ([`JsonRef`]) accepts what the `Value` reading
/// accepted, as the same JSON, and refuses what it refused, in the same words
/// (the category of the first error met): duplicates before or after syntax
/// errors, at any depth, escaped keys, numbers out of range, depth limits,
/// not UTF-8; then the same over thousands of mutations of a realistic payload.
#[test]
fn the_borrowed_reading_agrees_with_the_value_reading() {
    let agree = |json: &[u8]| {
        let mine = decode_claims(&TOKEN_B64.encode(json));
        let text = String::from_utf8_lossy(json);
        let reference = match std::str::from_utf8(json) {
            Ok(text) => serde_json::from_str::<strict::StrictClaims>(text),
            Err(_) => serde_json::from_slice::<strict::StrictClaims>(json),
        };
        match (mine, reference) {
            (Ok(mine), Ok(reference)) => assert_eq!(mine, reference.0, "{text}"),
            (Err(mine), Err(reference)) => {
                let expected = format!("malformed JWT: the payload is not valid JSON ({})", reference.classify_text());
                assert_eq!(mine.detail(), expected, "{text}");
            }
            (mine, reference) => panic!("{text}: {:?} but the Value reading gave {:?}", mine, reference.map(|v| v.0)),
        }
    };
    let deep = |n: usize| format!("{{\"d\":{}1{}}}", "[".repeat(n), "]".repeat(n));
    let many: String = (0..60).map(|i| format!("\"c{i}\":{i},")).collect();
    for json in [
        r#"{}"#.to_string(),
        r#"{"sub":"a","s\u0075b":"b"}"#.into(),
        r#"{"s\u0075b":"alice","\u0069ss":"https:\/\/i","exp":1.5e9}"#.into(),
        r#"{"a":1,"a":2,"#.into(),
        r#"{"a":1,"a":}"#.into(),
        r#"{"o":{"k":1,"k":2,}}"#.into(),
        r#"{"o":{"k":1,"k":2},"x":tru}"#.into(),
        r#"{"o":{"k":1},"x":tru,"o":1}"#.into(),
        r#"{"a":1e400}"#.into(),
        r#"{"a":1,"a":1e400}"#.into(),
        r#"{"exp":-1e400}"#.into(),
        r#"{"exp":18446744073709551616,"nbf":-9223372036854775809,"iat":1e308}"#.into(),
        r#"{"k":"\x"}"#.into(),
        r#"{"k":"\ud800"}"#.into(),
        r#"{"k":"\ud83d\ude80","\ud83d\ude80":1}"#.into(),
        r#"{"k":1} x"#.into(),
        r#"{"k":1}   "#.into(),
        r#"{"k":1,}"#.into(),
        r#"{"k" 1}"#.into(),
        r#"{"k":[1,2,]}"#.into(),
        r#"{"k":"a"#.into(),
        r#"{"l":[{"t":1,"t":1}]}"#.into(),
        format!("{{{many}\"c59\":0}}"),
        format!("{{{many}\"c0\":0,\"x\":}}"),
        format!("{{\"o\":{{{many}\"c7\":[]}}}}"),
        deep(126),
        deep(127),
        deep(128),
        deep(200),
    ] {
        agree(json.as_bytes());
    }
    for json in [
        &b"{\"sub\":\"\xff\"}"[..],
        b"{\"a\":1,\"a\":2,\"\xc3\"}",
        b"{\"\xe2\x82\":1}",
        b"{\"a\":{\"b\":1,\"b\":\xff}}",
    ] {
        agree(json);
    }
    // Mutations: a byte replaced, inserted or removed, from an alphabet that
    // makes JSON and breaks it, over a payload with every kind of value.
    let template = br#"{"iss":"https://i","sub":"s\u0075b","aud":["a","b"],"exp":1700000000,"nbf":1.5e9,"scope":"read write","realm_access":{"roles":["x","y"]},"n":null,"t":true,"big":18446744073709551615}"#;
    let alphabet = b"{}[]:,\"\\u0123456789.eE+-tfnasub \xff";
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    for _ in 0..20_000 {
        let mut json = template.to_vec();
        for _ in 0..1 + next(3) {
            let at = next(json.len());
            let byte = alphabet[next(alphabet.len())];
            match next(3) {
                0 => json[at] = byte,
                1 => json.insert(at, byte),
                _ => {
                    json.remove(at);
                }
            }
        }
        if json.first() == Some(&b'{') {
            agree(&json);
        }
    }
}
