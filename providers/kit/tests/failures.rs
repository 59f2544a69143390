//! Transport failures against real servers on 127.0.0.1, worded by
//! [`HttpFailure::from_reqwest`] from the error types in reqwest's chain: a
//! certificate from an unknown CA, expired, not yet valid or for another
//! name; a plain-http port behind `https://`; an answer that is not HTTP; a
//! connection closed early; nothing listening.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use std::net::SocketAddr;
use std::sync::Arc;
use tokengate_kit::{read_body_limited, HttpClientOptions, HttpFailure};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls;

const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";

/// A CA (its PEM in a file) and a leaf it signed for `names`, valid over `validity` (years).
struct Pki {
    ca_file: tempfile::NamedTempFile,
    server: Arc<rustls::ServerConfig>,
}

fn pki(names: &[&str], validity: Option<(i32, i32)>) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Each CA its own name: a CA of the same name is taken for the issuer and
    // its signature fails (BadSignature), another case than an unknown CA.
    static SERIAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ca.distinguished_name.push(DnType::CommonName, format!("tokengate-kit test CA {serial}"));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca, &ca_key);

    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, names[0]);
    for name in names {
        leaf.subject_alt_names.push(match name.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*name).try_into().unwrap()),
        });
    }
    if let Some((from, to)) = validity {
        leaf.not_before = rcgen::date_time_ymd(from, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(to, 1, 1);
    }
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();

    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), ca_cert.pem()).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf_cert.der().clone(), ca_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    Pki { ca_file, server: Arc::new(server) }
}

/// Reads a request head (unless `reply` starts with `SSH-`: such a server
/// speaks first), then writes `reply` and closes.
async fn answer(mut io: impl AsyncRead + AsyncWrite + Unpin, reply: &'static str) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !reply.starts_with("SSH-") && !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let _ = io.write_all(reply.as_bytes()).await;
    let _ = io.shutdown().await;
}

/// A server on 127.0.0.1 answering every request with `reply`, over TLS with `tls`.
async fn serve(tls: Option<Arc<rustls::ServerConfig>>, reply: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(config) => {
                        if let Ok(stream) = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await {
                            answer(stream, reply).await;
                        }
                    }
                    None => answer(tcp, reply).await,
                }
            });
        }
    });
    addr
}

fn trusting(pki: &Pki) -> HttpClientOptions {
    HttpClientOptions { tls_cafile: Some(pki.ca_file.path().to_path_buf()), ..Default::default() }
}

/// The worded failure of a GET to `url` (which must fail).
async fn failure(options: &HttpClientOptions, url: &str) -> String {
    let client = options.build_client().unwrap();
    match client.get(url).send().await {
        Ok(res) => match read_body_limited("idp", res, 1024).await {
            Ok(body) => panic!("{url} answered {body:?}"),
            Err(e) => e.detail().to_string(),
        },
        Err(e) => HttpFailure::from_reqwest("idp", &e).0,
    }
}

/// `detail` has `words` first, then the error chain in parentheses.
fn says(detail: &str, words: &str) {
    assert!(detail.starts_with(&format!("idp: {words}")) && detail.ends_with(')'), "{detail}");
}

#[tokio::test]
async fn a_trusted_certificate_works() {
    let pki = pki(&["127.0.0.1"], None);
    let addr = serve(Some(pki.server.clone()), OK).await;
    let res = trusting(&pki).build_client().unwrap().get(format!("https://{addr}/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn an_unknown_ca_is_named_as_such() {
    let pki = pki(&["127.0.0.1"], None);
    let addr = serve(Some(pki.server.clone()), OK).await;
    // The system roots do not know the test CA; nor does another test CA.
    let other = self::pki(&["127.0.0.1"], None);
    for options in [HttpClientOptions::default(), trusting(&other)] {
        let detail = failure(&options, &format!("https://{addr}/")).await;
        says(&detail, "TLS certificate not trusted: not issued by a CA in tls_cafile");
        assert!(detail.contains("UnknownIssuer"), "{detail}");
    }
}

#[tokio::test]
async fn an_expired_certificate_is_named_as_such() {
    let pki = pki(&["127.0.0.1"], Some((2000, 2001)));
    let addr = serve(Some(pki.server.clone()), OK).await;
    says(&failure(&trusting(&pki), &format!("https://{addr}/")).await, "TLS certificate not trusted: expired");
}

#[tokio::test]
async fn a_certificate_not_valid_yet_is_named_as_such() {
    let pki = pki(&["127.0.0.1"], Some((2999, 3000)));
    let addr = serve(Some(pki.server.clone()), OK).await;
    says(&failure(&trusting(&pki), &format!("https://{addr}/")).await, "TLS certificate not trusted: not valid yet");
}

#[tokio::test]
async fn a_certificate_for_another_name_is_named_as_such() {
    let pki = pki(&["idp.example.com"], None);
    let addr = serve(Some(pki.server.clone()), OK).await;
    let detail = failure(&trusting(&pki), &format!("https://{addr}/")).await;
    says(&detail, "TLS certificate not trusted: issued for another name");
    assert!(detail.contains("certificate not valid for name \"127.0.0.1\""), "{detail}");
}

#[tokio::test]
async fn plain_http_behind_https_is_not_tls() {
    let addr = serve(None, "SSH-2.0-OpenSSH_9.6\r\n").await;
    let detail = failure(&HttpClientOptions::default(), &format!("https://{addr}/")).await;
    says(&detail, "TLS handshake failed: the answer is not TLS");
}

#[tokio::test]
async fn an_answer_that_is_not_http_says_so() {
    let addr = serve(None, "220 mail.example ESMTP ready\r\n\r\n").await;
    says(&failure(&HttpClientOptions::default(), &format!("http://{addr}/")).await, "the answer is not valid HTTP");
}

#[tokio::test]
async fn a_connection_closed_early_says_so() {
    let head_only = serve(None, "").await;
    let short_body = serve(None, "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"a\"").await;
    for addr in [head_only, short_body] {
        let detail = failure(&HttpClientOptions::default(), &format!("http://{addr}/")).await;
        says(&detail, "the connection closed before the answer was complete");
    }
}

#[tokio::test]
async fn nothing_listening_is_a_refused_connection() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    says(&failure(&HttpClientOptions::default(), &format!("http://{addr}/")).await, "connection failed: refused");
}
