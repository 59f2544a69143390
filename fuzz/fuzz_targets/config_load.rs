//! Arbitrary text through `Config::parse` (YAML, JSON or TOML, by the first
//! byte) and, when it parses, `Config::build` with the built-in providers.
//! Building must neither panic nor touch the network (nothing listens where
//! fuzzed URLs point, and building never connects).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokengate::{Config, Format};
use tokengate_fuzz::REGISTRY;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let format = match mode % 3 {
        0 => Format::Yaml,
        1 => Format::Json,
        _ => Format::Toml,
    };
    let Ok(config) = Config::parse(text, format) else { return };
    let _ = format!("{config:?}");
    match config.build(&REGISTRY) {
        Ok(pipeline) => {
            let _ = (pipeline.accepts(), pipeline.message(), pipeline.name(), pipeline.needs_token());
            let _ = pipeline.owner("eyJhbGciOiJSUzI1NiJ9.e30.c2ln");
            let _ = pipeline.owner("ghp_0123456789");
            let _ = pipeline.owner("");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
