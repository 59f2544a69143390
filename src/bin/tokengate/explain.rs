//! `tokengate explain`: what happened to a token, step by step (see `tokengate::explain`).

use crate::{exit, exit_code, print_error, print_json, read_token, OutputFormat, RouteArgs};
use std::path::PathBuf;
use tokengate::{Config, Registry};

pub async fn explain(config_path: PathBuf, token: Option<String>, route: RouteArgs, format: OutputFormat) -> u8 {
    let token = match read_token(token) {
        Ok(t) => t,
        Err(e) => {
            print_error(format_args!("tokengate explain: {e}"));
            return exit::USAGE;
        }
    };
    let config = match Config::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            print_error(format_args!("tokengate explain: config error: {e}"));
            return exit::USAGE;
        }
    };
    let ctx = match route.context() {
        Ok(ctx) => ctx,
        Err(e) => {
            print_error(format_args!("tokengate explain: --path: {}", e.detail()));
            return exit_code(e.kind());
        }
    };
    let explained = match tokengate::explain::explain(&config, &Registry::with_builtins(), &token, &ctx).await {
        Ok(x) => x,
        Err(e) => {
            print_error(format_args!("tokengate explain: config error: {e}"));
            return exit::USAGE;
        }
    };
    match format {
        OutputFormat::Json => print_json(&explained, true),
        OutputFormat::Text => print!("{}", explained.to_text()),
    }
    explained.error_kind.map_or(exit::OK, exit_code)
}
