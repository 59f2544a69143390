//! Arbitrary YAML through `Config::parse` with the Llama Stack / OGX run.yaml
//! reading in front (`server.auth`, `server.tenancy`, `${env…}` expansion,
//! the lenient key handling), then `Config::build`.
//!
//! Input: one mode byte, then YAML text: as it is (mode 0), as the body of
//! `server.auth` (1), or as the body of `server` in a run.yaml skeleton (2).
//!
//! Invariants: no panic (parse, build, error and Debug rendering); the same
//! text always gives the same verdict; and a file that loads with no provider
//! has a route policy that refuses something: a run.yaml never starts open.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::Once;
use tokengate::{Config, Format};
use tokengate_fuzz::REGISTRY;

static ENV: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    // Something for `${env.X}`, `${env.X:=d}` and `${env.X:+v}` to find, set and empty.
    ENV.call_once(|| {
        std::env::set_var("FUZZ_PROVIDER", "oauth2_token");
        std::env::set_var("FUZZ_EMPTY", "");
    });
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let indented = |by: &str| text.lines().map(|l| format!("{by}{l}\n")).collect::<String>();
    let yaml = match mode % 3 {
        0 => text.to_string(),
        1 => format!("version: 2\nserver:\n  auth:\n{}", indented("    ")),
        _ => format!("version: 2\nimage_name: fuzz\napis: [inference]\nserver:\n{}", indented("  ")),
    };
    // As the binary: config is read and built inside the runtime.
    let _runtime = tokengate_fuzz::RUNTIME.enter();
    let parsed = Config::parse(&yaml, Format::Yaml);
    let again = Config::parse(&yaml, Format::Yaml);
    assert_eq!(parsed.is_ok(), again.is_ok(), "the same text parsed one way, then another");
    let config = match parsed {
        Ok(config) => config,
        Err(e) => {
            let _ = (e.to_string(), format!("{e:?}"));
            return;
        }
    };
    let _ = (format!("{config:?}"), config.open_paths(), config.member_sections().len());
    match config.build(&REGISTRY) {
        Ok(pipeline) => {
            if pipeline.is_anonymous() {
                let refuses = pipeline.route_policy().is_some_and(|p| !p.is_permit_all());
                assert!(refuses, "loaded with no provider and no route policy that refuses anything:\n{yaml}");
            }
            let _ = (pipeline.accepts(), pipeline.message(), pipeline.name());
        }
        Err(e) => {
            let _ = (e.to_string(), format!("{e:?}"));
        }
    }
});
