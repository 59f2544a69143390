//! The `tokengate` command line.

use clap::{Parser, Subcommand};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokengate::{AuthError, Config, ErrorKind, Registry, RequestContext};

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
        /// Config file (YAML, or JSON/TOML by extension; a Llama Stack run.yaml works too).
        #[arg(long, short)]
        config: PathBuf,
        /// The token; without it, the first line of standard input.
        // Opaque tokens may start with `-`; they are values, not flags.
        #[arg(long, short, allow_hyphen_values = true)]
        token: Option<String>,
        #[command(flatten)]
        route: RouteArgs,
    },
    /// Like `check`, but show which provider owned the token, every check, and where each attribute came from.
    Explain {
        /// Config file (as for `check`).
        #[arg(long, short)]
        config: PathBuf,
        /// The token; without it, the first line of standard input.
        // Opaque tokens may start with `-`; they are values, not flags.
        #[arg(long, short, allow_hyphen_values = true)]
        token: Option<String>,
        #[command(flatten)]
        route: RouteArgs,
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
        proxy: Option<tokengate::server::Proxy>,
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
        let (path, query) = tokengate::gate::route_target(&self.path)?;
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
    /// Print a fresh high-entropy key (once) and the config entry holding only its hash.
    New {
        /// Every key starts with this; match the provider's `prefix`.
        #[arg(long, default_value = "tg_")]
        prefix: String,
        /// Whom the key authenticates as (default: `api-key-` and the first 8 hex digits of its hash).
        #[arg(long)]
        principal: Option<String>,
        /// A label shown in logs, to tell one principal's keys apart.
        #[arg(long)]
        id: Option<String>,
        /// An attribute value, NAME=VALUE; repeat for more (`--attr roles=admin --attr roles=dev`).
        #[arg(long = "attr", value_name = "NAME=VALUE")]
        attrs: Vec<String>,
        /// When the key stops working: an RFC 3339 time (2027-01-01T00:00:00Z) or a lifetime (90d).
        #[arg(long)]
        expires: Option<String>,
        /// Print one JSON object {key, hash, config_entry} instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A server's decisions are logged at INFO; one-shot commands only say when something is wrong.
    init_logging(if matches!(cli.command, Command::Serve { .. }) { "info" } else { "warn" });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokengate: cannot start the async runtime: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Check { config, token, route } => check(config, token, route).await,
            Command::Explain { config, token, route, format } => explain(config, token, route, format).await,
            Command::Key { command: KeyCommand::New { prefix, principal, id, attrs, expires, json } } => {
                key_new(prefix, principal, id, attrs, expires, json)
            }
            Command::Serve { config, listen, dev, path_prefix, proxy, admin_listen } => {
                serve(config, listen, dev, path_prefix, proxy, admin_listen).await
            }
            Command::Token { url, sub, claims, ttl } => token(url, sub, claims, ttl).await,
            Command::Revoke { config, jti, issuer, token_sha256, token, ttl } => {
                revoke(config, jti, issuer, token_sha256, token, ttl).await
            }
        }
    });
    ExitCode::from(code)
}

/// `TOKENGATE_LOG` filters (`info`, `tokengate::decision=warn`…); `TOKENGATE_LOG_FORMAT=json` for JSON lines.
fn init_logging(default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("TOKENGATE_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let json = std::env::var("TOKENGATE_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // Colors only for a person at a terminal, never into log files or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = if json {
        builder.json().try_init()
    } else {
        let fields = tokengate::audit::escaping_fields();
        builder.fmt_fields(fields).try_init()
    };
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
fn cli_audit(config: &Config) -> Result<Option<tokengate::audit::AuditLog>, tokengate::ConfigError> {
    use tokengate::audit::{AuditLog, AuditOutput};
    let Some(cfg) = &config.settings.audit else { return Ok(None) };
    let base = config.build_context().base_dir;
    match AuditOutput::parse(&cfg.output, base.as_deref()) {
        Ok(AuditOutput::Stdout) => AuditLog::open(AuditOutput::Stderr).map(Some),
        _ => config.audit_log(),
    }
}

async fn check(config_path: PathBuf, token: Option<String>, route: RouteArgs) -> u8 {
    let token = match read_token(token) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tokengate check: {e}");
            return exit::USAGE;
        }
    };
    let registry = Registry::with_builtins();
    let loaded = Config::load(&config_path).and_then(|c| {
        let audit = cli_audit(&c)?;
        Ok((c.build(&registry)?, audit))
    });
    let (provider, audit) = match loaded {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tokengate check: config error: {e}");
            return exit::USAGE;
        }
    };
    let ctx = match route.context() {
        Ok(ctx) => ctx,
        Err(e) => {
            println!("{}", error_json(&e, "The request path has no single meaning"));
            provider.close().await;
            return exit_code(e.kind());
        }
    };
    let outcome = provider.validate(&token, &ctx).await;
    if let Some(audit) = &audit {
        let status = |e: &AuthError| e.kind().http_status();
        let label = |e: &AuthError| match e.kind() {
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Config => "error",
            _ => "deny",
        };
        let record = tokengate::gate::audit_record(
            &provider,
            outcome.as_ref().map_err(|e| (e, status(e), label(e))),
            &ctx,
            &token,
        );
        audit.record(&record);
        let log = audit.clone();
        // Waiting for the writer thread blocks; not on an async worker.
        let _ = tokio::task::spawn_blocking(move || log.flush(AUDIT_FLUSH_TIMEOUT)).await;
    }
    let code = match &outcome {
        Ok(principal) => {
            println!("{}", serde_json::to_string(principal).unwrap_or_else(|_| "{}".into()));
            exit::OK
        }
        Err(err) => {
            println!("{}", error_json(err, &provider.error_message()));
            exit_code(err.kind())
        }
    };
    provider.close().await;
    code
}

async fn explain(config_path: PathBuf, token: Option<String>, route: RouteArgs, format: OutputFormat) -> u8 {
    let token = match read_token(token) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tokengate explain: {e}");
            return exit::USAGE;
        }
    };
    let config = match Config::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tokengate explain: config error: {e}");
            return exit::USAGE;
        }
    };
    let ctx = match route.context() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("tokengate explain: --path: {}", e.detail());
            return exit_code(e.kind());
        }
    };
    let explained = match tokengate::explain::explain(&config, &Registry::with_builtins(), &token, &ctx).await {
        Ok(x) => x,
        Err(e) => {
            eprintln!("tokengate explain: config error: {e}");
            return exit::USAGE;
        }
    };
    match format {
        OutputFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&explained).unwrap_or_else(|_| "{}".into()))
        }
        OutputFormat::Text => print!("{}", explained.to_text()),
    }
    explained.error_kind.map_or(exit::OK, exit_code)
}

fn key_new(
    prefix: String,
    principal: Option<String>,
    id: Option<String>,
    attrs: Vec<String>,
    expires: Option<String>,
    json: bool,
) -> u8 {
    use tokengate_api_key::{config_line, generate_key, KeyEntry};
    let fail = |e: String| {
        eprintln!("tokengate key new: {e}");
        exit::USAGE
    };
    let mut attributes = tokengate::Attributes::new();
    for arg in &attrs {
        let Some((name, value)) = arg.split_once('=') else {
            return fail(format!("--attr {arg:?}: write NAME=VALUE"));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() || value.is_empty() {
            return fail(format!("--attr {arg:?}: both NAME and VALUE must be non-empty"));
        }
        let values = attributes.entry(name.to_string()).or_default();
        if !values.iter().any(|v| v == value) {
            values.push(value.to_string());
        }
    }
    let (key, hash) = match generate_key(&prefix) {
        Ok(k) => k,
        Err(e) => return fail(e.to_string()),
    };
    let principal = principal.unwrap_or_else(|| format!("api-key-{}", &hash[..8]));
    let mut entry = KeyEntry::new(format!("sha256:{hash}"), principal).with_attributes(attributes);
    if let Some(id) = id {
        entry = entry.with_id(id);
    }
    if let Some(text) = expires {
        // A lifetime (`90d`) is turned into the time it ends; anything else must be RFC 3339.
        entry = match humantime::parse_duration(text.trim()) {
            Ok(d) => entry.expiring_at(std::time::SystemTime::now() + d),
            Err(_) => {
                entry.expires_at = Some(text.trim().to_string());
                entry
            }
        };
    }
    let line = match config_line(&entry) {
        Ok(l) => l,
        Err(e) => return fail(e.to_string().replace("`expires_at`", "--expires")),
    };
    if json {
        let out = serde_json::json!({"key": key, "hash": format!("sha256:{hash}"), "config_entry": line});
        println!("{out}");
    } else {
        println!("{key}");
        println!();
        println!("# The key above is shown only now: give it to its owner. tokengate stores only its hash.");
        println!("# Paste this into the keys_file, or (indented) under `keys:` of the api_key provider:");
        print!("{line}");
    }
    exit::OK
}

fn error_json(err: &AuthError, message: &str) -> serde_json::Value {
    serde_json::json!({"error": {"code": err.code(), "message": message, "detail": err.detail()}})
}

async fn serve(
    config_path: Option<PathBuf>,
    listen: Option<SocketAddr>,
    dev: bool,
    path_prefix: Option<String>,
    proxy: Option<tokengate::server::Proxy>,
    admin_listen: Option<SocketAddr>,
) -> u8 {
    // Before any provider is built, so their fetch counters are recorded from the start.
    let _ = tokengate::server::metrics_handle();
    let config = match (&config_path, dev) {
        (Some(path), false) => match Config::load(path) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("tokengate serve: config error: {e}");
                return exit::USAGE;
            }
        },
        _ => None,
    };
    let default_listen = if dev { tokengate::dev::DEFAULT_DEV_LISTEN } else { tokengate::server::DEFAULT_LISTEN };
    let addr = listen
        .or_else(|| config.as_ref().and_then(|c| c.settings.listen))
        .or_else(|| default_listen.parse().ok())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tokengate serve: cannot listen on {addr}: {e}");
            return exit::REJECTED;
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    let admin_addr = admin_listen.or_else(|| config.as_ref().and_then(|c| c.settings.admin_listen));
    let admin_listener = match admin_addr {
        Some(admin_addr) => match tokio::net::TcpListener::bind(admin_addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("tokengate serve: cannot listen on {admin_addr} (admin_listen): {e}");
                return exit::REJECTED;
            }
        },
        None => None,
    };
    let mut options = config.as_ref().map(tokengate::server::ServeOptions::from_config).unwrap_or_default();
    let limits = config.as_ref().and_then(|c| c.settings.forward_auth.as_ref()).map(|f| f.limits()).unwrap_or_default();
    if path_prefix.is_some() {
        options.path_prefix = path_prefix;
    }
    if let Some(proxy) = proxy {
        options.proxy = proxy;
    }
    if options.proxy == tokengate::server::Proxy::Auto && !dev {
        tracing::warn!(
            "forward_auth.proxy is auto: set it to the proxy in front (nginx, traefik, caddy, envoy) so only its \
             headers describe the original request"
        );
    }
    options.separate_admin = admin_listener.is_some();
    if let Some(config) = &config {
        match config.audit_log() {
            Ok(audit) => options.audit = audit,
            Err(e) => {
                eprintln!("tokengate serve: config error: {e}");
                return exit::USAGE;
            }
        }
    }
    let registry = Registry::with_builtins();
    let (app, provider) = if dev {
        eprintln!("{}", tokengate::dev::BANNER);
        tracing::warn!("development mode: throwaway issuer, tokens minted on request; NOT for production");
        let dev = match tokengate::dev::DevServer::new(local, &registry) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("tokengate serve --dev: {e}");
                return exit::USAGE;
            }
        };
        let token = match dev.sample_token() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("tokengate serve --dev: {e}");
                return exit::USAGE;
            }
        };
        print!("{}", dev.instructions(&token));
        (dev.router(options), dev.provider().clone())
    } else {
        let Some(config) = config else {
            eprintln!("tokengate serve: --config FILE or --dev is required");
            return exit::USAGE;
        };
        let provider = match config.build(&registry) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("tokengate serve: config error: {e}");
                return exit::USAGE;
            }
        };
        println!("tokengate listening on http://{local}");
        (tokengate::server::router(provider.clone(), options), provider)
    };
    tracing::info!(listen = %local, provider = provider.type_name(), "serving forward-auth decisions");
    let admin = admin_listener.map(|l| {
        let admin_local = l.local_addr().map_or_else(|_| "?".to_string(), |a| a.to_string());
        println!("tokengate admin (/healthz /readyz /metrics) on http://{admin_local}");
        (l, tokengate::server::admin_router(provider.clone()))
    });
    let shutdown = tokengate::server::shutdown_signal();
    match tokengate::server::run_with_limits(listener, app, admin, provider, limits, shutdown).await {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("tokengate serve: {e}");
            exit::REJECTED
        }
    }
}

/// `tokengate revoke`: see [`tokengate::redis`] for the keys it writes.
async fn revoke(
    config_path: PathBuf,
    jti: Option<String>,
    issuer: Option<String>,
    token_sha256: Option<String>,
    token: Option<String>,
    ttl: Option<String>,
) -> u8 {
    use tokengate::redis::RevokeTarget;
    let target = match (jti, token_sha256, token) {
        (Some(jti), _, _) if jti.trim().is_empty() => Err("--jti is empty".to_string()),
        (Some(_), _, _) if issuer.as_deref().is_some_and(|i| i.trim().is_empty()) => {
            Err("--issuer is empty".to_string())
        }
        (Some(jti), _, _) => {
            if issuer.is_none() {
                eprintln!("tokengate revoke: note: without --issuer, jti {jti:?} is revoked for every issuer's tokens");
            }
            Ok(RevokeTarget::Jti { issuer, jti })
        }
        (_, Some(hex), _) => parse_sha256(&hex).map(RevokeTarget::TokenSha256),
        (_, _, Some(t)) => read_token((t != "-").then_some(t))
            .map(|t| RevokeTarget::TokenSha256(tokengate::revocation::revocation_digest(&t))),
        (None, None, None) => Err("name what to revoke: --jti, --token-sha256 or --token".to_string()),
    };
    let target = match target {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tokengate revoke: {e}");
            return exit::USAGE;
        }
    };
    let ttl = match ttl.as_deref().map(humantime::parse_duration).transpose() {
        Ok(Some(d)) if d.is_zero() => {
            eprintln!("tokengate revoke: --ttl must be longer than 0s");
            return exit::USAGE;
        }
        Ok(t) => t,
        Err(e) => {
            eprintln!("tokengate revoke: --ttl: {e} (use e.g. 30m, 24h, 7d)");
            return exit::USAGE;
        }
    };
    let config = match Config::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tokengate revoke: config error: {e}");
            return exit::USAGE;
        }
    };
    let store = match config.redis_store() {
        Ok(Some(s)) => s,
        Ok(None) => {
            eprintln!(
                "tokengate revoke: {} has no `redis` section; list the token in the revocation file instead",
                config_path.display()
            );
            return exit::USAGE;
        }
        Err(e) => {
            eprintln!("tokengate revoke: config error: {e}");
            return exit::USAGE;
        }
    };
    // An operator can wait longer than a request: the connect timeout plus a few seconds.
    let timeout = config.settings.redis.as_ref().map_or(Duration::ZERO, |r| r.connect_timeout) + Duration::from_secs(5);
    match store.revoke(&target, ttl, timeout).await {
        Ok(key) => {
            match ttl {
                Some(ttl) => println!("revoked: {key} (lapses in {})", humantime::format_duration(ttl)),
                None => println!("revoked: {key}"),
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("tokengate revoke: {e}");
            exit::UNAVAILABLE
        }
    }
}

/// 64 hex digits, optionally `sha256:`-prefixed; never echoed (it might be a token pasted by mistake).
fn parse_sha256(text: &str) -> Result<[u8; 32], String> {
    let hex_part = text.trim();
    let hex_part = hex_part.strip_prefix("sha256:").unwrap_or(hex_part);
    let mut digest = [0u8; 32];
    if hex_part.len() != 64 || hex::decode_to_slice(hex_part, &mut digest).is_err() {
        return Err(format!(
            "--token-sha256 is not a SHA-256 digest (64 hex digits expected, got {} characters); \
             to revoke by the token itself use --token -",
            hex_part.chars().count()
        ));
    }
    Ok(digest)
}

async fn token(url: String, sub: Option<String>, claim_args: Vec<String>, ttl: Option<String>) -> u8 {
    let mut claims = serde_json::Map::new();
    for arg in &claim_args {
        match tokengate::dev::parse_claim(arg) {
            Ok((k, v)) => {
                claims.insert(k, v);
            }
            Err(e) => {
                eprintln!("tokengate token: {e}");
                return exit::USAGE;
            }
        }
    }
    match tokengate::dev::request_token(&url, sub.as_deref(), claims, ttl.as_deref()).await {
        Ok(token) => {
            println!("{token}");
            exit::OK
        }
        Err(e) => {
            eprintln!("tokengate token: {e}");
            exit::UNAVAILABLE
        }
    }
}
