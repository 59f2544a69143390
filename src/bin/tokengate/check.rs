//! `tokengate check`: validate one token, print the principal or the error as JSON.

use crate::{
    cli_audit, error_json, exit, exit_code, print_error, print_json, read_token, RouteArgs, AUDIT_FLUSH_TIMEOUT,
};
use std::path::PathBuf;
use tokengate::{Config, Registry};

pub async fn check(config_path: PathBuf, token: Option<String>, route: RouteArgs) -> u8 {
    let token = match read_token(token) {
        Ok(t) => t,
        Err(e) => {
            print_error(format_args!("tokengate check: {e}"));
            return exit::USAGE;
        }
    };
    let registry = Registry::with_builtins();
    let loaded = Config::load(&config_path).and_then(|c| {
        let audit = cli_audit(&c)?;
        Ok((c.build(&registry)?, audit))
    });
    let (pipeline, audit) = match loaded {
        Ok(p) => p,
        Err(e) => {
            print_error(format_args!("tokengate check: config error: {e}"));
            return exit::USAGE;
        }
    };
    if pipeline.is_anonymous() {
        eprintln!(
            "tokengate check: config error: the config has no provider (authentication is off), so there is nothing \
             to check a token against"
        );
        return exit::USAGE;
    }
    let mut ctx = match route.context() {
        Ok(ctx) => ctx,
        Err(e) => {
            print_json(&error_json(&e, "The request path has no single meaning"), false);
            pipeline.close().await;
            return exit_code(e.kind());
        }
    };
    // Asking must not spend the caller's rate or quota (shared in Redis): the limits only say what they would decide.
    ctx.peek_limits = true;
    let decision = pipeline.decide(&token, &ctx).await;
    if let Some(audit) = &audit {
        audit.record(&tokengate::ops::audit::AuditRecord::of(&pipeline, &decision, &ctx, &token));
        let log = audit.clone();
        // Waiting for the writer thread blocks; not on an async worker.
        let _ = tokio::task::spawn_blocking(move || log.flush(AUDIT_FLUSH_TIMEOUT)).await;
    }
    let code = match &decision.outcome {
        Ok(principal) => {
            print_json(principal, false);
            exit::OK
        }
        Err(err) => {
            print_json(&error_json(err, &pipeline.refusal_message(err, decision.validated.as_ref())), false);
            exit_code(err.kind())
        }
    };
    pipeline.close().await;
    code
}
