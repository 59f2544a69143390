use super::failure::{Cause, Certificate, Connect, Handshake};
use super::*;
use reqwest::Url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn urls(list: &[&str]) -> Vec<Url> {
    list.iter().map(|u| Url::parse(u).unwrap()).collect()
}

#[test]
fn redirects_stay_in_the_origin_never_downgrade_and_stop_after_three() {
    let next = |u: &str| Url::parse(u).unwrap();
    let other = Some("redirect to another origin (scheme, host or port) refused");
    let one = urls(&["http://idp.test/jwks"]);
    assert_eq!(redirect_refusal(&one, &next("http://idp.test/jwks.json")), None);
    assert_eq!(redirect_refusal(&one, &next("http://idp.test:80/jwks.json")), None, "the default port");
    assert_eq!(redirect_refusal(&one, &next("https://idp.test/jwks")), None, "upgrade is fine");
    // Another port is another service (#11): the old rule compared hosts only.
    assert_eq!(redirect_refusal(&one, &next("http://idp.test:8443/jwks")), other, "same host, other port");
    assert_eq!(redirect_refusal(&one, &next("https://idp.test:8443/jwks")), other, "upgrade to another port");
    for elsewhere in ["http://evil.test/jwks", "http://idp.test.evil.test/jwks", "http://127.0.0.1/jwks"] {
        assert_eq!(redirect_refusal(&one, &next(elsewhere)), other, "{elsewhere}");
    }
    let secure = urls(&["https://idp.test/jwks"]);
    assert_eq!(redirect_refusal(&secure, &next("http://idp.test/jwks")), Some("redirect from https to http refused"));
    assert_eq!(redirect_refusal(&secure, &next("https://idp.test:444/jwks")), other);
    let two_followed = urls(&["http://idp.test/a", "http://idp.test/b", "http://idp.test/c"]);
    assert_eq!(redirect_refusal(&two_followed, &next("http://idp.test/d")), None, "the third redirect");
    let three_followed = urls(&["http://idp.test/a", "http://idp.test/b", "http://idp.test/c", "http://idp.test/d"]);
    assert_eq!(redirect_refusal(&three_followed, &next("http://idp.test/e")), Some("more than 3 redirects"));
}

/// A one-route HTTP server on 127.0.0.1: answers every request with
/// `reply(path)` and sends each raw request (head and body) down the channel.
async fn server(
    reply: impl Fn(&str) -> String + Send + Sync + 'static,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (tx, reply) = (tx.clone(), reply.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut seen = Vec::new();
                // Read the head, then as much body as Content-Length says.
                loop {
                    let Ok(n) = socket.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen).to_string();
                    let Some(head_end) = text.find("\r\n\r\n") else { continue };
                    let length = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if seen.len() < head_end + 4 + length {
                        continue;
                    }
                    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let _ = tx.send(text);
                    let _ = socket.write_all(reply(&path).as_bytes()).await;
                    return;
                }
            });
        }
    });
    (base, rx)
}

fn redirect_to(location: &str) -> String {
    format!("HTTP/1.1 307 Temporary Redirect\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
}

fn ok_body(body: &str) -> String {
    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
}

#[tokio::test]
async fn a_redirect_to_another_port_is_refused_and_never_reaches_it() {
    let (other, mut other_seen) = server(|_| ok_body("{}")).await;
    let target = format!("{other}/jwks");
    let (origin, _seen) = server(move |_| redirect_to(&target)).await;
    let client = HttpClientOptions::default().build_client().unwrap();
    let err = client.get(format!("{origin}/jwks")).send().await.unwrap_err();
    assert!(err.is_redirect(), "{err}");
    assert!(other_seen.try_recv().is_err(), "the other port was asked");
}

#[tokio::test]
async fn a_followed_redirect_sends_no_referer() {
    let (origin, mut seen) =
        server(|path| if path.starts_with("/a") { redirect_to("/b") } else { ok_body("{}") }).await;
    let client = HttpClientOptions::default().build_client().unwrap();
    let res = client.get(format!("{origin}/a?x=1")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let _first = seen.recv().await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), seen.recv()).await.unwrap().unwrap();
    assert!(second.starts_with("GET /b "), "{second}");
    assert!(!second.to_ascii_lowercase().contains("referer"), "{second}");
}

#[tokio::test]
async fn the_credentialed_client_follows_no_redirect_even_within_the_origin() {
    let (origin, mut seen) = server(|path| if path == "/a" { redirect_to("/b") } else { ok_body("{}") }).await;
    let client = HttpClientOptions::default().build_credentialed_client().unwrap();
    let res = client.post(format!("{origin}/a")).body("token=secret-body").send().await.unwrap();
    assert_eq!(res.status(), 307);
    let err = redirect_failure("introspection endpoint 127.0.0.1", &res).unwrap();
    assert!(err.is_unavailable());
    assert!(err.detail().contains(&format!("redirecting to {origin}")), "{err}");
    let _first = seen.recv().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(seen.try_recv().is_err(), "the body was sent a second time");
    assert!(redirect_failure("x", &client.get(format!("{origin}/b")).send().await.unwrap()).is_none());
}

/// An error that wraps another, as reqwest and hyper-util wrap theirs.
#[derive(Debug)]
struct Wrap(&'static str, Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for Wrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Wrap {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.1)
    }
}

/// `tls` as it reaches reqwest: inside an `io::Error` (whose `source()`
/// skips it), inside two wrappers.
fn through_io(tls: rustls::Error) -> Wrap {
    let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
    Wrap("error sending request", Box::new(Wrap("client error (Connect)", Box::new(io))))
}

#[test]
fn tls_failures_are_classified_by_type_through_io_errors() {
    use rustls::{AlertDescription, CertificateError as C, Error as E};
    let of = |e: E| Cause::of(&through_io(e), true, false);
    let cert = |c: C| of(E::InvalidCertificate(c));
    assert_eq!(cert(C::UnknownIssuer), Cause::Certificate(Certificate::UnknownIssuer));
    assert_eq!(cert(C::Expired), Cause::Certificate(Certificate::Expired));
    assert_eq!(cert(C::NotValidYet), Cause::Certificate(Certificate::NotValidYet));
    assert_eq!(cert(C::NotValidForName), Cause::Certificate(Certificate::WrongName));
    assert_eq!(cert(C::Revoked), Cause::Certificate(Certificate::Revoked));
    assert_eq!(cert(C::BadSignature), Cause::Certificate(Certificate::BadSignature));
    assert_eq!(cert(C::ApplicationVerificationFailure), Cause::Certificate(Certificate::Other));
    assert_eq!(of(E::NoCertificatesPresented), Cause::Certificate(Certificate::NonePresented));
    assert_eq!(of(E::AlertReceived(AlertDescription::HandshakeFailure)), Cause::Handshake(Handshake::Alert));
    assert_eq!(of(E::InvalidMessage(rustls::InvalidMessage::InvalidContentType)), Cause::Handshake(Handshake::NotTls));
    assert_eq!(
        of(E::PeerIncompatible(rustls::PeerIncompatible::NoCipherSuitesInCommon)),
        Cause::Handshake(Handshake::Incompatible)
    );
    assert_eq!(of(E::DecryptError), Cause::Handshake(Handshake::Misbehaved));
    assert_eq!(of(E::General("x".into())), Cause::Handshake(Handshake::Other));
    // Every certificate problem keeps the wording tests and operators grep for.
    for c in [Certificate::UnknownIssuer, Certificate::Expired, Certificate::WrongName, Certificate::Other] {
        assert!(Cause::Certificate(c).words().unwrap().starts_with("TLS certificate not trusted"), "{c:?}");
    }
}

#[test]
fn io_kinds_say_refused_reset_or_closed_early() {
    use std::io::{Error, ErrorKind};
    let of = |kind: ErrorKind, connect: bool| {
        Cause::of(&Wrap("error sending request", Box::new(Error::new(kind, "os error"))), connect, false)
    };
    assert_eq!(of(ErrorKind::ConnectionRefused, true), Cause::Connect(Connect::Refused));
    assert_eq!(of(ErrorKind::ConnectionReset, true), Cause::Connect(Connect::Reset));
    assert_eq!(of(ErrorKind::ConnectionReset, false), Cause::ClosedEarly);
    assert_eq!(of(ErrorKind::UnexpectedEof, false), Cause::ClosedEarly);
    assert_eq!(of(ErrorKind::HostUnreachable, true), Cause::Connect(Connect::Unreachable));
    assert_eq!(of(ErrorKind::Other, true), Cause::Connect(Connect::Other));
    assert_eq!(of(ErrorKind::Other, false), Cause::Other);
    assert_eq!(of(ErrorKind::TimedOut, true), Cause::TimedOut);
    assert_eq!(Cause::of(&Wrap("redirect", Box::new(Wrap("x", "y".into()))), false, true), Cause::Redirect);
    for c in [Connect::Refused, Connect::Reset, Connect::Unreachable, Connect::Other] {
        assert!(Cause::Connect(c).words().unwrap().starts_with("connection failed"), "{c:?}");
    }
}

#[tokio::test]
async fn the_limit_refuses_quickly_past_max_and_frees_slots() {
    assert!(UpstreamLimit::new("t", 0).is_err());
    let limit = UpstreamLimit::new("t", 2).unwrap();
    let a = limit.acquire("x").await.unwrap();
    let _b = limit.acquire("x").await.unwrap();
    let started = std::time::Instant::now();
    let err = limit.acquire("upstream").await.err().unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(err.is_unavailable());
    assert_eq!(err.retry_after(), Some(UpstreamLimit::RETRY_AFTER));
    assert!(err.detail().contains("max_concurrent_requests"), "{err}");
    drop(a);
    assert!(limit.acquire("x").await.is_ok(), "a freed slot is reusable");
    let zero = HttpClientOptions { max_concurrent_requests: 0, ..Default::default() };
    assert_eq!(zero.build_client().unwrap_err().field, "max_concurrent_requests");
}
