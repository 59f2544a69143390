//! `tokengate serve`: the forward-auth decision service (see `tokengate::http::server`).

use crate::{exit, print_error};
use std::net::SocketAddr;
use std::path::PathBuf;
use tokengate::{Config, Registry};

pub async fn serve(
    config_path: Option<PathBuf>,
    listen: Option<SocketAddr>,
    dev: bool,
    path_prefix: Option<String>,
    proxy: Option<tokengate::config::Proxy>,
    admin_listen: Option<SocketAddr>,
) -> u8 {
    // Before any provider is built, so their fetch counters are recorded from the start.
    let _ = tokengate::ops::metrics::prometheus();
    let config = match (&config_path, dev) {
        (Some(path), false) => match Config::load(path) {
            Ok(c) => Some(c),
            Err(e) => {
                print_error(format_args!("tokengate serve: config error: {e}"));
                return exit::USAGE;
            }
        },
        _ => None,
    };
    let default_listen = if dev { tokengate::dev::DEFAULT_DEV_LISTEN } else { tokengate::http::server::DEFAULT_LISTEN };
    let addr = listen
        .or_else(|| config.as_ref().and_then(|c| c.settings.listen))
        .or_else(|| default_listen.parse().ok())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            print_error(format_args!("tokengate serve: cannot listen on {addr}: {e}"));
            return exit::REJECTED;
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    let admin_addr = admin_listen.or_else(|| config.as_ref().and_then(|c| c.settings.admin_listen));
    let admin_listener = match admin_addr {
        Some(admin_addr) => match tokio::net::TcpListener::bind(admin_addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                print_error(format_args!("tokengate serve: cannot listen on {admin_addr} (admin_listen): {e}"));
                return exit::REJECTED;
            }
        },
        None => None,
    };
    let mut options = config.as_ref().map(tokengate::http::server::ServeOptions::from_config).unwrap_or_default();
    let mut limits = config
        .as_ref()
        .and_then(|c| c.settings.forward_auth.as_ref())
        .map(tokengate::http::server::ConnectionLimits::from_config)
        .unwrap_or_default();
    // Each listener holds up to max_connections; both must fit the open-file limit.
    let listeners = 1 + usize::from(admin_listener.is_some());
    tokengate::http::listener::fit_descriptor_limit(&mut limits, listeners);
    if path_prefix.is_some() {
        options.path_prefix = path_prefix;
    }
    if let Some(proxy) = proxy {
        options.proxy = proxy;
    }
    if options.proxy == tokengate::config::Proxy::Auto && !dev {
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
                print_error(format_args!("tokengate serve: config error: {e}"));
                return exit::USAGE;
            }
        }
    }
    let registry = Registry::with_builtins();
    let (app, pipeline) = if dev {
        eprintln!("{}", tokengate::dev::BANNER);
        tracing::warn!("development mode: throwaway issuer, tokens minted on request; NOT for production");
        let dev = match tokengate::dev::DevServer::new(local, &registry) {
            Ok(d) => d,
            Err(e) => {
                print_error(format_args!("tokengate serve --dev: {e}"));
                return exit::USAGE;
            }
        };
        let token = match dev.sample_token() {
            Ok(t) => t,
            Err(e) => {
                print_error(format_args!("tokengate serve --dev: {e}"));
                return exit::USAGE;
            }
        };
        print!("{}", dev.instructions(&token));
        (dev.router(options), dev.pipeline().clone())
    } else {
        let Some(config) = config else {
            eprintln!("tokengate serve: --config FILE or --dev is required");
            return exit::USAGE;
        };
        let pipeline = match config.build(&registry) {
            Ok(p) => std::sync::Arc::new(p),
            Err(e) => {
                print_error(format_args!("tokengate serve: config error: {e}"));
                return exit::USAGE;
            }
        };
        println!("tokengate listening on http://{local}");
        (tokengate::http::server::router(pipeline.clone(), options), pipeline)
    };
    tracing::info!(listen = %local, provider = pipeline.name(), "serving forward-auth decisions");
    let admin = admin_listener.map(|l| {
        let admin_local = l.local_addr().map_or_else(|_| "?".to_string(), |a| a.to_string());
        println!("tokengate admin (/healthz /readyz /metrics) on http://{admin_local}");
        (l, tokengate::http::server::admin_router(pipeline.clone()))
    });
    let shutdown = tokengate::http::server::shutdown_signal();
    match tokengate::http::server::run_with_limits(listener, app, admin, pipeline, limits, shutdown).await {
        Ok(()) => exit::OK,
        Err(e) => {
            print_error(format_args!("tokengate serve: {e}"));
            exit::REJECTED
        }
    }
}
