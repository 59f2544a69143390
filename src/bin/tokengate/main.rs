//! The `tokengate` command line.
//!
//! One file per command (`check`, `explain`, `key`, `serve`, `revoke`,
//! `token`); this one parses the command line, sets up logging and exit
//! codes. Uses the `tokengate` library only through its public API.

mod check;
mod clock;
mod explain;
mod key;
mod log;
mod revoke;
mod serve;
mod token;

use clap::{Parser, Subcommand};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokengate::{AuthError, Config, ErrorKind, RequestContext};

/// Exit codes operators script against.
mod exit {
    pub const OK: u8 = 0;
    pub const REJECTED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const UNAVAILABLE: u8 = 3;
}

#[derive(Parser)]
#[command(
    name = "tokengate",
    version,
    about = "Bearer-token authentication: check tokens, or serve forward-auth decisions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate one token and print the principal as JSON (exit 0 ok, 1 rejected, 3 provider unavailable, 2 usage/config).
    Check {
        #[command(flatten)]
        input: TokenArgs,
    },
    /// Like `check`, but show which provider owned the token, every check, and where each attribute came from.
    Explain {
        #[command(flatten)]
        input: TokenArgs,
        /// `json` (default) or `text`.
        #[arg(long, value_enum, default_value_t = OutputFormat::Json)]
        format: OutputFormat,
    },
    /// Manage API keys for the `api_key` provider.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Serve forward-auth decisions (nginx auth_request, Traefik ForwardAuth, Envoy ext_authz HTTP).
    Serve {
        /// Config file (as for `check`).
        #[arg(long, short, required_unless_present = "dev", conflicts_with = "dev")]
        config: Option<PathBuf>,
        /// Listen address (default: the config's `listen`, else 127.0.0.1:8080; port 0 picks a free one).
        #[arg(long, short)]
        listen: Option<SocketAddr>,
        /// Development mode: no config, a throwaway issuer on the same listener. NOT for production.
        #[arg(long)]
        dev: bool,
        /// Envoy ext_authz `path_prefix` to strip from decision request paths.
        #[arg(long)]
        path_prefix: Option<String>,
        /// Which proxy asks, so which headers carry the original request (default: the
        /// config's `forward_auth.proxy`, else auto).
        #[arg(long, value_enum)]
        proxy: Option<tokengate::config::Proxy>,
        /// Serve /healthz, /readyz and /metrics here instead (default: the config's
        /// `admin_listen`, else on the main listener); every main-listener path is then a decision.
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
    },
    /// Revoke a token on every replica: write its key to the config's Redis (exit 0 done, 2 usage/config, 3 Redis unavailable).
    #[command(group(clap::ArgGroup::new("target").required(true).args(["jti", "token_sha256", "token"])))]
    Revoke {
        /// Config file with a `redis` section (as for `check`).
        #[arg(long, short)]
        config: PathBuf,
        /// A JWT ID (the `jti` claim); with --issuer for that issuer's token only,
        /// without it for every issuer's.
        #[arg(long)]
        jti: Option<String>,
        /// The `iss` whose --jti is revoked (other issuers' tokens with the same jti stay valid).
        #[arg(long, requires = "jti")]
        issuer: Option<String>,
        /// A token digest, 64 hex digits, optionally `sha256:`-prefixed: for a JWT the SHA-256 of its
        /// signing input (`printf %s "${TOKEN%.*}" | sha256sum`), else of the token (`printf %s "$TOKEN" | sha256sum`).
        #[arg(long)]
        token_sha256: Option<String>,
        /// The token itself, or `-` to read it from standard input; only a SHA-256 leaves this process
        /// (for a JWT, of `header.payload`, which a rewritten signature cannot change).
        // Opaque tokens may start with `-`; they are values, not flags.
        #[arg(long, allow_hyphen_values = true)]
        token: Option<String>,
        /// Let the revocation lapse after this long (30m, 24h, 7d), e.g. the token's remaining lifetime (default: never).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Mint a token from a running `tokengate serve --dev` and print only the token.
    Token {
        /// The dev server.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The subject (default dev-user).
        #[arg(long)]
        sub: Option<String>,
        /// An extra claim, KEY=VALUE; VALUE is read as JSON when it is JSON (`true`, `["a","b"]`). Repeatable.
        #[arg(long = "claim", value_name = "KEY=VALUE")]
        claims: Vec<String>,
        /// Lifetime such as 30m, 1h, 7d (default 1h).
        #[arg(long)]
        ttl: Option<String>,
    },
}

/// What `check` and `explain` look at: the config, the token and the request.
#[derive(clap::Args)]
struct TokenArgs {
    /// Config file (YAML, or JSON/TOML by extension; a Llama Stack run.yaml works too).
    #[arg(long, short)]
    config: PathBuf,
    /// The token; without it, the first line of standard input.
    // Opaque tokens may start with `-`; they are values, not flags.
    #[arg(long, short, allow_hyphen_values = true)]
    token: Option<String>,
    #[command(flatten)]
    route: RouteArgs,
}

/// The request a one-shot check pretends to be, for `route_policy`.
#[derive(clap::Args)]
struct RouteArgs {
    /// The request method route_policy sees.
    #[arg(long, default_value = "GET")]
    method: String,
    /// The request path route_policy sees.
    #[arg(long, default_value = "/")]
    path: String,
}

impl RouteArgs {
    /// The context, with the path in the canonical form `serve` and the layer use.
    fn context(&self) -> Result<RequestContext, AuthError> {
        let (path, query) = tokengate::http::credential::route_target(&self.path)?;
        let mut ctx = RequestContext::new(self.method.to_ascii_uppercase(), path);
        if let Some(query) = query {
            ctx.set_query(&query);
        }
        Ok(ctx)
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OutputFormat {
    Json,
    Text,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Make a fresh high-entropy key, print it (once), and add its entry (hash only) to the key file
    /// (--file/--config) or print the entry to paste.
    New {
        // Boxed: the entry's many fields would make every other command as large.
        #[command(flatten)]
        args: Box<key::NewKeyArgs>,
        #[command(flatten)]
        file: key::KeyFileArgs,
        /// Print one JSON object {id, key, hash, config_entry} instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the keys of the key file: id, owner, status, created, expires, last used, requests (never a key or hash).
    List {
        #[command(flatten)]
        file: key::KeyFileArgs,
        /// Print a JSON list instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Replace a key: a new key (printed once) works at once, the old one until the grace ends.
    Rotate {
        /// The id of the key to replace.
        id: String,
        /// How long the old key keeps working (`24h`, `30m`).
        #[arg(long, value_parser = humantime::parse_duration)]
        grace: Duration,
        /// The new key's prefix; match the provider's `prefix`.
        #[arg(long, default_value = "tg_")]
        prefix: String,
        #[command(flatten)]
        file: key::KeyFileArgs,
        /// Print one JSON object {id, key, replaces, old_key_works_until} instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Refuse a key for now, saying why (`key suspended: <reason>`); `resume` undoes it.
    Suspend {
        /// The key's id.
        id: String,
        /// Why; said in every refusal of the key.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        file: key::KeyFileArgs,
    },
    /// Let a suspended key work again.
    Resume {
        /// The key's id.
        id: String,
        #[command(flatten)]
        file: key::KeyFileArgs,
    },
    /// Refuse a key for good, keeping its record.
    Revoke {
        /// The key's id.
        id: String,
        /// Why; said in every refusal of the key.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        file: key::KeyFileArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A server's decisions are logged at INFO; one-shot commands only say when something is wrong.
    // Held to the end of `main`: dropping it writes out what is still queued.
    let _log_flush = init_logging(if matches!(cli.command, Command::Serve { .. }) { "info" } else { "warn" });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            print_error(format_args!("tokengate: cannot start the async runtime: {e}"));
            return ExitCode::from(exit::USAGE);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Check { input } => check::check(input.config, input.token, input.route).await,
            Command::Explain { input, format } => {
                explain::explain(input.config, input.token, input.route, format).await
            }
            Command::Key { command } => match command {
                KeyCommand::New { args, file, json } => key::key_new(*args, file, json).await,
                KeyCommand::List { file, json } => key::key_list(file, json).await,
                KeyCommand::Rotate { id, grace, prefix, file, json } => {
                    key::key_rotate(id, grace, prefix, file, json).await
                }
                KeyCommand::Suspend { id, reason, file } => {
                    key::key_change("suspend", id, key::Change::Suspend(reason), file).await
                }
                KeyCommand::Resume { id, file } => key::key_change("resume", id, key::Change::Resume, file).await,
                KeyCommand::Revoke { id, reason, file } => {
                    key::key_change("revoke", id, key::Change::Revoke(reason), file).await
                }
            },
            Command::Serve { config, listen, dev, path_prefix, proxy, admin_listen } => {
                serve::serve(config, listen, dev, path_prefix, proxy, admin_listen).await
            }
            Command::Token { url, sub, claims, ttl } => token::token(url, sub, claims, ttl).await,
            Command::Revoke { config, jti, issuer, token_sha256, token, ttl } => {
                revoke::revoke(config, jti, issuer, token_sha256, token, ttl).await
            }
        }
    });
    ExitCode::from(code)
}

/// `TOKENGATE_LOG` filters (`info`, `tokengate::decision=warn`…); `TOKENGATE_LOG_FORMAT=json` for JSON lines.
///
/// The log (with the one line per decision `serve` writes) goes to standard
/// error through a writer thread of its own, in batches (see [`log`]), so a
/// slow terminal, pipe or disk never holds up a decision. It is not lossy:
/// when too much is waiting, the request that logs waits rather than a line
/// being dropped.
fn init_logging(default_level: &str) -> Option<log::FlushGuard> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("TOKENGATE_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let json = std::env::var("TOKENGATE_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // Colors only for a person at a terminal, never into log files or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, flush) = match log::batched(std::io::stderr(), "tokengate-log") {
        Ok(pair) => pair,
        Err(e) => {
            print_error(format_args!(
                "tokengate: cannot start the log writer thread ({e}); logging to standard error directly"
            ));
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).try_init();
            return None;
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .with_timer(clock::LogClock);
    let _ = if json {
        builder.json().try_init()
    } else {
        let fields = tokengate::ops::audit::escaping_fields();
        builder.fmt_fields(fields).try_init()
    };
    Some(flush)
}

fn read_token(token: Option<String>) -> Result<String, String> {
    let raw = match token {
        Some(t) => t,
        None => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("cannot read standard input: {e}"))?;
            line
        }
    };
    let trimmed = raw.trim();
    // People paste whole headers; accept `Bearer <token>` too.
    let token = match trimmed.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => trimmed,
    };
    if token.is_empty() {
        return Err("no token: pass --token TOKEN or write it on standard input".into());
    }
    Ok(token.to_string())
}

/// How long a one-shot command waits for its audit line to be written.
const AUDIT_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Unavailable => exit::UNAVAILABLE,
        ErrorKind::Config => exit::USAGE,
        _ => exit::REJECTED,
    }
}

/// The config's audit log for a one-shot command: `stdout` goes to standard
/// error instead, so standard output stays exactly one JSON document.
fn cli_audit(config: &Config) -> Result<Option<tokengate::ops::audit::AuditLog>, tokengate::ConfigError> {
    use tokengate::ops::audit::{AuditLog, AuditOutput};
    let Some(cfg) = &config.settings.audit else { return Ok(None) };
    let base = config.build_context().base_dir;
    match AuditOutput::parse(&cfg.output, base.as_deref()) {
        Ok(AuditOutput::Stdout) => AuditLog::open(AuditOutput::Stderr).map(Some),
        _ => config.audit_log(),
    }
}

/// Writes `line` to standard error as one line: every value in it (a config
/// error quoting the file, an identity provider's message, a path) escaped
/// as the log escapes them (`tokengate::ops::audit::escape_controls`).
fn print_error(line: std::fmt::Arguments<'_>) {
    eprintln!("{}", tokengate::ops::audit::escape_controls(&line.to_string()));
}

/// Writes `value` to standard output as JSON (`pretty`: indented), with the
/// characters a terminal would act on escaped inside its strings
/// (`tokengate::ops::audit::escape_in_json`): the same document.
fn print_json(value: &impl serde::Serialize, pretty: bool) {
    let text = if pretty { serde_json::to_string_pretty(value) } else { serde_json::to_string(value) };
    println!("{}", tokengate::ops::audit::escape_in_json(&text.unwrap_or_else(|_| "{}".into())));
}

fn error_json(err: &AuthError, message: &str) -> serde_json::Value {
    let message = tokengate::http::rejection::with_reason(message, err);
    // `reason`: the typed Reason's stable name, as the audit line, the decision log and metrics say it.
    serde_json::json!({"error": {"code": err.code(), "reason": err.reason().code(), "message": message, "detail": err.detail()}})
}
