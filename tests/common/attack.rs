//! Fixtures for the hardening tests (`tests/attack_*.rs`, `tests/tls.rs`,
//! `tests/secrets_never_leak.rs`): real keys generated per run, a recording
//! HTTP(S) server on 127.0.0.1 that plays JWKS endpoint, introspection
//! endpoint, custom endpoint and GitHub API, raw token crafting, and a log
//! capture. Included with `#[path = "common/attack.rs"] mod attack;` so it
//! stays independent of `tests/common/mod.rs`.
#![allow(dead_code)]

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokengate::{AuthError, ConfigError, DynProvider, ErrorKind, Format, Principal, Registry, RequestContext};

pub const ISS: &str = "https://issuer.attack.test";
pub const AUD: &str = "attack-aud";

// ------------------------------------------------------------------ keys

/// A signing key and its public JWK (without `kid`).
pub struct TestKey {
    pub enc: EncodingKey,
    pub alg: Algorithm,
    pub public_jwk: Value,
}

impl TestKey {
    /// The public JWK with `kid` (and the `alg` jsonwebtoken puts in it).
    pub fn jwk(&self, kid: &str) -> Value {
        let mut jwk = self.public_jwk.clone();
        jwk["kid"] = json!(kid);
        jwk
    }

    /// The public JWK with `kid` and without `alg`, so any algorithm of its type may use it.
    pub fn jwk_unpinned(&self, kid: &str) -> Value {
        let mut jwk = self.jwk(kid);
        jwk.as_object_mut().unwrap().remove("alg");
        jwk
    }
}

/// An RSA key plus the encodings of its public key an attacker would use as an HMAC secret.
pub struct RsaKey {
    pub key: TestKey,
    pub spki_pem: String,
    pub spki_der: Vec<u8>,
    pub pkcs1_der: Vec<u8>,
}

pub struct Keys {
    pub rsa: RsaKey,
    pub rsa_attacker: TestKey,
    pub ec: TestKey,
    pub ec2: TestKey,
    pub ec_attacker: TestKey,
    /// The attacker key's PKCS#8, for embedding it in certificates (`x5c`).
    pub ec_attacker_pkcs8: Vec<u8>,
    pub ec384: TestKey,
    pub ed: TestKey,
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

fn jwk_of(enc: &EncodingKey, alg: Algorithm) -> Value {
    serde_json::to_value(Jwk::from_encoding_key(enc, alg).unwrap()).unwrap()
}

fn rsa_key() -> RsaKey {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let pkcs8 = AsDer::<Pkcs8V1Der>::as_der(&pair).unwrap();
    let enc = EncodingKey::from_rsa_pem(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes()).unwrap();
    let public = aws_lc_rs::signature::KeyPair::public_key(&pair);
    let spki_der = AsDer::<PublicKeyX509Der>::as_der(public).unwrap().as_ref().to_vec();
    RsaKey {
        key: TestKey { public_jwk: jwk_of(&enc, Algorithm::RS256), enc, alg: Algorithm::RS256 },
        spki_pem: pem("PUBLIC KEY", &spki_der),
        spki_der,
        pkcs1_der: public.as_ref().to_vec(),
    }
}

fn ec_key(p384: bool) -> (TestKey, Vec<u8>) {
    let rng = SystemRandom::new();
    let (signing, alg) = if p384 {
        (&ECDSA_P384_SHA384_FIXED_SIGNING, Algorithm::ES384)
    } else {
        (&ECDSA_P256_SHA256_FIXED_SIGNING, Algorithm::ES256)
    };
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
    let enc = EncodingKey::from_ec_der(pkcs8.as_ref());
    (TestKey { public_jwk: jwk_of(&enc, alg), enc, alg }, pkcs8.as_ref().to_vec())
}

pub static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let ed_der = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).unwrap();
    let ed = EncodingKey::from_ed_der(ed_der.as_ref());
    let (ec_attacker, ec_attacker_pkcs8) = ec_key(false);
    Keys {
        rsa: rsa_key(),
        rsa_attacker: rsa_key().key,
        ec: ec_key(false).0,
        ec2: ec_key(false).0,
        ec_attacker,
        ec_attacker_pkcs8,
        ec384: ec_key(true).0,
        ed: TestKey { public_jwk: jwk_of(&ed, Algorithm::EdDSA), enc: ed, alg: Algorithm::EdDSA },
    }
});

/// The standard key set: RSA "rsa-1", EC P-256 "ec-1", EC P-384 "ec384-1", Ed25519 "ed-1".
pub fn standard_jwks() -> Value {
    let k = &*KEYS;
    json!({"keys": [k.rsa.key.jwk("rsa-1"), k.ec.jwk("ec-1"), k.ec384.jwk("ec384-1"), k.ed.jwk("ed-1")]})
}

// ------------------------------------------------------------------ tokens

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).unwrap()
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Claims every check accepts.
pub fn claims() -> Value {
    json!({"sub": "alice", "iss": ISS, "aud": AUD, "exp": now() + 600, "iat": now() - 10, "nbf": now() - 10})
}

/// `base` with `extra` merged in; a `null` in `extra` removes the member.
pub fn with(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

pub fn alg_name(alg: Algorithm) -> String {
    serde_json::to_value(alg).unwrap().as_str().unwrap().to_string()
}

/// `b64(header).b64(payload)`, from JSON text as given (so tests can craft any bytes).
pub fn signing_input(header: &str, payload: &str) -> String {
    format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()))
}

/// `jsonwebtoken::crypto::sign`, with ES256/ES384 signatures normalized to
/// low-S (aws-lc does not, and tokengate refuses high-S by default).
pub fn low_s_sign(message: &[u8], key: &EncodingKey, alg: Algorithm) -> String {
    let signature = jsonwebtoken::crypto::sign(message, key, alg).unwrap();
    if !matches!(alg, Algorithm::ES256 | Algorithm::ES384) {
        return signature;
    }
    let mut bytes = unb64(&signature);
    tokengate_oauth2::ecdsa::normalize_low_s(&mut bytes);
    b64(&bytes)
}

/// Signs any header and claims with `key` under `alg`, whatever they say.
pub fn sign_with(key: &TestKey, alg: Algorithm, header: &Value, claims: &Value) -> String {
    let input = signing_input(&header.to_string(), &claims.to_string());
    format!("{input}.{}", low_s_sign(input.as_bytes(), &key.enc, alg))
}

/// A token signed by `key` with its own algorithm and `kid`.
pub fn token(key: &TestKey, kid: &str, claims: &Value) -> String {
    sign_with(key, key.alg, &json!({"alg": alg_name(key.alg), "typ": "JWT", "kid": kid}), claims)
}

/// An HMAC-signed token with the header given as JSON text.
pub fn hmac_token(alg: &str, secret: &[u8], header: &str, claims: &Value) -> String {
    let algorithm = match alg {
        "HS256" => aws_lc_rs::hmac::HMAC_SHA256,
        "HS384" => aws_lc_rs::hmac::HMAC_SHA384,
        "HS512" => aws_lc_rs::hmac::HMAC_SHA512,
        other => panic!("not an HMAC alg: {other}"),
    };
    let input = signing_input(header, &claims.to_string());
    let tag = aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(algorithm, secret), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// The three segments of a compact token.
pub fn segments(token: &str) -> (String, String, String) {
    let mut it = token.split('.');
    let parts = (it.next().unwrap().to_string(), it.next().unwrap().to_string(), it.next().unwrap().to_string());
    assert!(it.next().is_none());
    parts
}

/// The same token with its signature replaced by `signature` bytes.
pub fn with_signature(token: &str, signature: &[u8]) -> String {
    let (h, p, _) = segments(token);
    format!("{h}.{p}.{}", b64(signature))
}

// ------------------------------------------------------------------ server

/// What a route answers.
#[derive(Clone)]
pub enum Reply {
    Json(u16, Value),
    /// Raw bytes; `chunked` streams them without a Content-Length.
    Raw {
        status: u16,
        body: Vec<u8>,
        chunked: bool,
    },
    /// Repeats what the client sent (Authorization header and body) in every
    /// message field providers might quote: an upstream that echoes the token.
    Echo(u16),
}

/// One request the server saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Default)]
pub struct ServerState {
    pub routes: Mutex<HashMap<String, Reply>>,
    pub seen: Mutex<Vec<Seen>>,
}

/// A recording HTTP server on 127.0.0.1 (plain or TLS).
pub struct Server {
    pub addr: SocketAddr,
    pub scheme: &'static str,
    pub state: Arc<ServerState>,
    task: tokio::task::JoinHandle<()>,
}

async fn handle(State(state): State<Arc<ServerState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 4 * 1024 * 1024).await.unwrap_or_default();
    let target = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let seen = Seen {
        method: parts.method.to_string(),
        target: target.clone(),
        headers: headers.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    state.seen.lock().unwrap().push(seen.clone());
    let path = parts.uri.path().to_string();
    let reply = state.routes.lock().unwrap().get(&path).cloned();
    let json_response = |status: u16, body: Vec<u8>| {
        Response::builder().status(status).header("content-type", "application/json").body(Body::from(body)).unwrap()
    };
    match reply {
        None => json_response(404, br#"{"message":"Not Found"}"#.to_vec()),
        Some(Reply::Json(status, value)) => json_response(status, value.to_string().into_bytes()),
        Some(Reply::Raw { status, body, chunked: false }) => json_response(status, body),
        Some(Reply::Raw { status, body, chunked: true }) => {
            let chunks: Vec<Result<Bytes, std::io::Error>> =
                body.chunks(16 * 1024).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from_stream(futures_util::stream::iter(chunks)))
                .unwrap()
        }
        Some(Reply::Echo(status)) => {
            let auth = headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.clone()).unwrap_or_default();
            let echoed = format!("you sent {auth} with {}", seen.body);
            let value =
                json!({"message": echoed, "detail": echoed, "error": {"message": echoed}, "error_description": echoed});
            json_response(status, value.to_string().into_bytes())
        }
    }
}

impl Server {
    pub async fn start() -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ServerState::default());
        let app = Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server { addr, scheme: "http", state, task }
    }

    /// The same server over TLS with `config` (see [`tls_server_config`]).
    pub async fn start_tls(config: Arc<tokio_rustls::rustls::ServerConfig>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ServerState::default());
        let app = Router::new().fallback(handle).with_state(state.clone());
        let tls = TlsListener { tcp: listener, acceptor: tokio_rustls::TlsAcceptor::from(config) };
        let task = tokio::spawn(async move {
            let _ = axum::serve(tls, app).await;
        });
        Server { addr, scheme: "https", state, task }
    }

    /// A server with the standard key set at `/jwks`.
    pub async fn jwks() -> Server {
        let server = Server::start().await;
        server.route("/jwks", Reply::Json(200, standard_jwks()));
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    pub fn route(&self, path: &str, reply: Reply) {
        self.state.routes.lock().unwrap().insert(path.to_string(), reply);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Targets (path and query) of every request so far.
    pub fn targets(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.target).collect()
    }

    pub fn count(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.target.split('?').next() == Some(path)).count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts TCP connections and completes the TLS handshake; failed handshakes
/// (a client that does not trust us) are skipped, as a real server would.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else { continue };
            if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(5), self.acceptor.accept(stream)).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A CA and a server certificate it signed, for `names` (DNS names; IP
/// addresses are recognised and put in IP SANs).
pub struct TestPki {
    pub ca_pem: String,
    pub server_config: Arc<tokio_rustls::rustls::ServerConfig>,
}

pub fn test_pki(names: &[&str]) -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
    use tokio_rustls::rustls;
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    static SERIAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ca_params.distinguished_name.push(DnType::CommonName, format!("tokengate test CA {serial}"));
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);

    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf_params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("localhost"));
    for name in names {
        leaf_params.subject_alt_names.push(match name.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*name).try_into().unwrap()),
        });
    }
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone(), ca_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    TestPki { ca_pem: ca_cert.pem(), server_config: Arc::new(server_config) }
}

// ------------------------------------------------------------------ providers

/// Builds a provider from a `provider_config` section through a real YAML
/// config file's path: `Config::parse(yaml, Format::Yaml)?.build(&Registry::with_builtins())`.
pub fn build(section: Value) -> Result<DynProvider, ConfigError> {
    let yaml = serde_yaml::to_string(&json!({ "provider_config": section })).unwrap();
    tokengate::Config::parse(&yaml, Format::Yaml)?.build(&Registry::with_builtins())
}

/// The error building `section` gives (it must fail).
pub fn build_err(section: Value) -> ConfigError {
    match build(section) {
        Ok(p) => panic!("config accepted ({})", p.accepts()),
        Err(e) => e,
    }
}

pub fn build_ok(section: Value) -> DynProvider {
    build(section).unwrap_or_else(|e| panic!("config refused: {e}"))
}

/// The error a config gets, which must name `field` and say `needle`.
pub fn config_refused(section: Value, field: &str, needle: &str) -> ConfigError {
    match build(section) {
        Ok(p) => panic!("config accepted ({}); expected an error at {field}", p.accepts()),
        Err(e) => {
            assert_eq!(e.field, field, "{e}");
            assert!(e.message.contains(needle), "{e:?} does not say {needle:?}");
            e
        }
    }
}

/// `oauth2_token` trusting `server`'s `/jwks`.
pub fn jwt_config(server: &Server) -> Value {
    json!({"type": "oauth2_token", "issuer": ISS, "audience": AUD, "jwks": {"uri": server.url("/jwks")}})
}

pub fn ctx() -> RequestContext {
    RequestContext::new("GET", "/v1/models")
}

/// Asserts that `token` is refused with `kind` and a detail naming every one of `reasons`.
pub async fn refused(provider: &DynProvider, token: &str, kind: ErrorKind, reasons: &[&str]) -> AuthError {
    match provider.validate(token, &ctx()).await {
        Ok(p) => panic!("token accepted as {:?}; expected {kind:?} saying {reasons:?}", p.principal),
        Err(e) => {
            assert_eq!(e.kind(), kind, "wrong kind: {e}");
            for reason in reasons {
                assert!(e.detail().contains(reason), "detail {:?} does not say {reason:?}", e.detail());
            }
            e
        }
    }
}

pub async fn invalid(provider: &DynProvider, token: &str, reasons: &[&str]) -> AuthError {
    refused(provider, token, ErrorKind::InvalidToken, reasons).await
}

pub async fn accepted(provider: &DynProvider, token: &str) -> Principal {
    provider.validate(token, &ctx()).await.unwrap_or_else(|e| panic!("token refused: {e}"))
}

// ------------------------------------------------------------------ logs

/// Everything logged by this test binary (TRACE, every target, `log` records
/// included), from the first call on.
#[derive(Clone)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once per test binary) a global TRACE subscriber writing into a buffer.
pub fn capture_logs() -> Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs(Arc::new(Mutex::new(Vec::new())));
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("no other global subscriber in this test binary");
        let _ = writeln!(logs.clone(), "-- log capture started --");
        logs
    })
    .clone()
}
