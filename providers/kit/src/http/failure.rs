//! [`HttpFailure`]: a failed exchange with an identity service, worded from
//! the types in its error chain (a TLS failure by its rustls type, "not HTTP"
//! and "closed early" by hyper's) rather than from message text.

use tokengate_api::AuthError;

/// Why an exchange with an identity service failed, already worded for operators.
#[derive(Debug)]
pub struct HttpFailure(pub String);

impl HttpFailure {
    /// Words a transport error: timeout, refused connection, untrusted certificate…
    ///
    /// Classified by the types in the error's source chain (rustls's
    /// [`rustls::Error`], std's [`std::io::Error`], [`hyper::Error`]), never by
    /// message text; the chain's own text follows in parentheses with the
    /// particulars (which name the certificate was for, which alert…).
    pub fn from_reqwest(what: &str, err: &reqwest::Error) -> Self {
        let cause =
            if err.is_timeout() { Cause::TimedOut } else { Cause::of(err, err.is_connect(), err.is_redirect()) };
        let reason = match cause.words() {
            None => "timed out".to_string(),
            Some("") => error_chain(err),
            Some(words) => format!("{words} ({})", error_chain(err)),
        };
        HttpFailure(format!("{what}: {reason}"))
    }
}

impl From<HttpFailure> for AuthError {
    fn from(f: HttpFailure) -> Self {
        AuthError::unavailable(f.0)
    }
}

/// What went wrong in an exchange, as the types in the error chain tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cause {
    TimedOut,
    /// The server's certificate was refused (by us).
    Certificate(Certificate),
    /// The TLS handshake failed for another reason than the certificate.
    Handshake(Handshake),
    /// What came back is not HTTP.
    NotHttp,
    /// The connection closed before the answer was complete.
    ClosedEarly,
    Connect(Connect),
    Redirect,
    /// Nothing more specific: the chain's text alone.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Certificate {
    UnknownIssuer,
    Expired,
    NotValidYet,
    WrongName,
    Revoked,
    BadSignature,
    Malformed,
    WrongPurpose,
    UnsupportedAlgorithm,
    RevocationUnknown,
    NonePresented,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Handshake {
    /// The server sent a fatal alert: it refused us (a client certificate it wants…).
    Alert,
    /// The first bytes back were not a TLS record: a plain-http port behind `https://`.
    NotTls,
    /// No protocol version, cipher suite or key exchange in common.
    Incompatible,
    /// The server broke the protocol.
    Misbehaved,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Connect {
    Refused,
    Reset,
    Unreachable,
    Other,
}

impl Cause {
    /// Reads the chain of `err`. `connect` and `redirect` are what reqwest
    /// says of the outermost error (its own kinds, not in the chain as types).
    pub(super) fn of(err: &(dyn std::error::Error + 'static), connect: bool, redirect: bool) -> Cause {
        let mut io_kind = None;
        for e in causes(err) {
            if let Some(tls) = e.downcast_ref::<rustls::Error>() {
                return Cause::from_rustls(tls);
            }
            if let Some(h) = e.downcast_ref::<hyper::Error>() {
                if h.is_parse() {
                    return Cause::NotHttp;
                }
                if h.is_incomplete_message() {
                    return Cause::ClosedEarly;
                }
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                io_kind.get_or_insert(io.kind());
            }
        }
        use std::io::ErrorKind as K;
        match io_kind {
            Some(K::TimedOut) => Cause::TimedOut,
            Some(K::UnexpectedEof) => Cause::ClosedEarly,
            Some(K::ConnectionRefused) => Cause::Connect(Connect::Refused),
            Some(K::ConnectionReset | K::ConnectionAborted) if connect => Cause::Connect(Connect::Reset),
            Some(K::ConnectionReset | K::ConnectionAborted) => Cause::ClosedEarly,
            Some(K::HostUnreachable | K::NetworkUnreachable) => Cause::Connect(Connect::Unreachable),
            _ if connect => Cause::Connect(Connect::Other),
            _ if redirect => Cause::Redirect,
            _ => Cause::Other,
        }
    }

    fn from_rustls(err: &rustls::Error) -> Cause {
        use rustls::{CertificateError as C, Error as E};
        let cert = |c| Cause::Certificate(c);
        let handshake = |h| Cause::Handshake(h);
        match err {
            E::InvalidCertificate(c) => cert(match c {
                C::UnknownIssuer => Certificate::UnknownIssuer,
                C::Expired | C::ExpiredContext { .. } => Certificate::Expired,
                C::NotValidYet | C::NotValidYetContext { .. } => Certificate::NotValidYet,
                C::NotValidForName | C::NotValidForNameContext { .. } => Certificate::WrongName,
                C::Revoked => Certificate::Revoked,
                C::BadSignature => Certificate::BadSignature,
                C::BadEncoding | C::UnhandledCriticalExtension => Certificate::Malformed,
                C::InvalidPurpose | C::InvalidPurposeContext { .. } => Certificate::WrongPurpose,
                C::UnsupportedSignatureAlgorithmContext { .. }
                | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => Certificate::UnsupportedAlgorithm,
                C::UnknownRevocationStatus | C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => {
                    Certificate::RevocationUnknown
                }
                _ => Certificate::Other,
            }),
            E::InvalidCertRevocationList(_) => cert(Certificate::RevocationUnknown),
            E::NoCertificatesPresented => cert(Certificate::NonePresented),
            E::AlertReceived(_) => handshake(Handshake::Alert),
            E::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => handshake(Handshake::NotTls),
            E::PeerIncompatible(_) | E::NoApplicationProtocol => handshake(Handshake::Incompatible),
            E::InvalidMessage(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::PeerMisbehaved(_)
            | E::DecryptError
            | E::PeerSentOversizedRecord => handshake(Handshake::Misbehaved),
            _ => handshake(Handshake::Other),
        }
    }

    /// The words before the chain's text: `None` for a timeout (said alone),
    /// empty for [`Cause::Other`] (the chain alone).
    pub(super) fn words(self) -> Option<&'static str> {
        Some(match self {
            Cause::TimedOut => return None,
            Cause::Certificate(c) => match c {
                Certificate::UnknownIssuer => {
                    "TLS certificate not trusted: not issued by a CA in tls_cafile or, without one, the system's roots"
                }
                Certificate::Expired => "TLS certificate not trusted: expired",
                Certificate::NotValidYet => {
                    "TLS certificate not trusted: not valid yet; is this machine's clock right?"
                }
                Certificate::WrongName => "TLS certificate not trusted: issued for another name than the URL's host",
                Certificate::Revoked => "TLS certificate not trusted: revoked",
                Certificate::BadSignature => "TLS certificate not trusted: its signature does not verify",
                Certificate::Malformed => "TLS certificate not trusted: malformed",
                Certificate::WrongPurpose => "TLS certificate not trusted: not issued for TLS servers",
                Certificate::UnsupportedAlgorithm => {
                    "TLS certificate not trusted: signed with an unsupported algorithm"
                }
                Certificate::RevocationUnknown => "TLS certificate not trusted: its revocation status is unknown",
                Certificate::NonePresented => "TLS certificate not trusted: the server presented none",
                Certificate::Other => "TLS certificate not trusted",
            },
            Cause::Handshake(h) => match h {
                Handshake::Alert => "TLS handshake failed: refused by the server",
                Handshake::NotTls => {
                    "TLS handshake failed: the answer is not TLS; a plain-http port behind an https:// URL?"
                }
                Handshake::Incompatible => "TLS handshake failed: no TLS version or cipher suite in common",
                Handshake::Misbehaved => "TLS handshake failed: the server broke the protocol",
                Handshake::Other => "TLS handshake failed",
            },
            Cause::NotHttp => "the answer is not valid HTTP; a TLS port behind an http:// URL?",
            Cause::ClosedEarly => "the connection closed before the answer was complete",
            Cause::Connect(c) => match c {
                Connect::Refused => "connection failed: refused",
                Connect::Reset => "connection failed: reset by the other end",
                Connect::Unreachable => "connection failed: network or host unreachable",
                Connect::Other => "connection failed",
            },
            Cause::Redirect => "redirect refused",
            Cause::Other => "",
        })
    }
}

/// `err` and its sources, outermost first. Unlike [`std::error::Error::source`]
/// alone this looks inside an [`std::io::Error`]: its `source()` skips the
/// error it wraps (`get_ref`), which is where TLS libraries put theirs.
pub(super) fn causes<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    let mut next = Some(err);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
        Some(current)
    })
    // Chains are short; a cycle must not hang a request.
    .take(32)
}

pub(super) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}
