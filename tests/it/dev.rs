//! The `tokengate` binary: `serve --dev`, `token`, and `serve --config`.

use crate::fixtures::*;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Kills the child when dropped, also when a test panics.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `tokengate <args>` with INFO text logs, its stdout and stderr piped.
fn start(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tokengate"))
        .args(args)
        .env("TOKENGATE_LOG", "info")
        .env_remove("TOKENGATE_LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tokengate")
}

/// Starts `tokengate <args>` and collects stdout lines until `done` says enough.
fn spawn(args: &[&str], done: impl Fn(&[String]) -> bool) -> (Guard, Vec<String>) {
    let mut child = start(args);
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let guard = Guard(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (etx, erx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = etx.send(text);
    });
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done(&lines) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => {
                drop(guard);
                let stderr = erx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
                panic!("tokengate {args:?} did not print what was expected.\nstdout: {lines:#?}\nstderr: {stderr}");
            }
        }
    }
    (guard, lines)
}

fn field<'a>(lines: &'a [String], prefix: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| l.strip_prefix(prefix)).map(str::trim)
}

fn dev_server() -> (Guard, String, String) {
    let (guard, lines) = spawn(&["serve", "--dev", "--listen", "127.0.0.1:0"], |l| field(l, "try:").is_some());
    let base = field(&lines, "tokengate dev server listening on").expect("address line").to_string();
    let token = field(&lines, "token:").expect("token line").to_string();
    let curl = field(&lines, "try:").unwrap();
    assert!(curl.starts_with("curl -i -H \"Authorization: Bearer "), "{curl}");
    assert!(curl.contains(&token) && curl.contains(&base), "{curl}");
    assert!(!base.ends_with(":0"), "the actual port is printed: {base}");
    (guard, base, token)
}

#[tokio::test]
async fn dev_mode_end_to_end() {
    let (_guard, base, token) = dev_server();
    let c = client();

    let res = c.get(format!("{base}/anything")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-auth-principal").unwrap(), "dev-user");
    assert_eq!(header(&res, "x-auth-attr-groups").unwrap(), "developers");
    assert_eq!(header(&res, "x-auth-attr-scopes").unwrap(), "read,write");

    let res = c.get(format!("{base}/anything")).bearer_auth(tamper(&token)).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(header(&res, "www-authenticate").unwrap().starts_with(&invalid_token_challenge("tokengate")));

    let res = c.get(format!("{base}/anything")).send().await.unwrap();
    assert_eq!(header(&res, "www-authenticate").unwrap(), r#"Bearer realm="tokengate""#);

    // The issuer's routes are not decisions.
    let res = c.get(format!("{base}/.well-known/openid-configuration")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["issuer"], base.as_str());
    let jwks = json(c.get(format!("{base}/.well-known/jwks.json")).send().await.unwrap()).await;
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    assert!(jwks["keys"][0].get("d").is_none(), "the private key never leaves");
    assert_eq!(c.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);

    // More tokens over the loopback endpoint.
    let minted = json(
        c.post(format!("{base}/dev/token"))
            .json(&serde_json::json!({"sub": "alice", "claims": {"groups": ["admins"]}, "ttl": "5m"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(minted["expires_in"], 300);
    let alice = minted["access_token"].as_str().unwrap();
    let res = c.get(format!("{base}/x")).bearer_auth(alice).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-auth-principal").unwrap(), "alice");
    assert_eq!(header(&res, "x-auth-attr-groups").unwrap(), "admins");

    // An expired token minted on purpose.
    let expired = json(
        c.post(format!("{base}/dev/token"))
            .json(&serde_json::json!({"claims": {"exp": 1000000000}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let res = c.get(format!("{base}/x")).bearer_auth(expired["access_token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(res.status(), 401);

    // Refusals of the dev endpoint.
    let res = c.post(format!("{base}/dev/token")).body("{}").send().await.unwrap();
    assert_eq!(res.status(), 415, "JSON only: a cross-site form post gets nothing");
    let res = c
        .post(format!("{base}/dev/token"))
        .header("host", "evil.example")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "DNS rebinding");
    let res = c.post(format!("{base}/dev/token")).json(&serde_json::json!({"ttl": "400d"})).send().await.unwrap();
    assert_eq!(res.status(), 400);

    // The `token` subcommand prints only a token, which works.
    let out = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            Command::new(env!("CARGO_BIN_EXE_tokengate"))
                .args(["token", "--url", &base, "--sub", "bob", "--claim", "groups=[\"ops\"]", "--ttl", "10m"])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let res = c.get(format!("{base}/x")).bearer_auth(stdout.trim()).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-auth-principal").unwrap(), "bob");
    assert_eq!(header(&res, "x-auth-attr-groups").unwrap(), "ops");

    let metrics = c.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tokengate_decisions_total{"), "{metrics}");
}

#[test]
fn dev_mode_says_it_is_for_development() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokengate"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _guard = Guard(child);
    let mut reader = BufReader::new(stderr);
    let mut seen = String::new();
    while !seen.contains("NOT FOR PRODUCTION") {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
    }
    assert!(seen.contains("DEVELOPMENT MODE"), "{seen}");
}

#[test]
fn token_subcommand_without_a_server_fails_cleanly() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_tokengate")).args(["token", "--url", "http://127.0.0.1:9"]).output().unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("serve --dev"));
}

#[test]
fn serve_needs_a_config_or_dev() {
    let out = Command::new(env!("CARGO_BIN_EXE_tokengate")).args(["serve"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out =
        Command::new(env!("CARGO_BIN_EXE_tokengate")).args(["serve", "--dev", "--config", "x.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Writes `config` to a file and starts `tokengate serve --config FILE <extra>`
/// until it has printed a line starting with `until`. The file lives as long
/// as the returned directory.
async fn serve_config(
    config: serde_json::Value,
    extra: &'static [&'static str],
    until: &'static str,
) -> (Guard, Vec<String>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokengate.yaml");
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let path = path.to_str().unwrap().to_string();
    let (guard, lines) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = ["serve", "--config", &path].into_iter().chain(extra.iter().copied()).collect();
        spawn(&args, |l| field(l, until).is_some())
    })
    .await
    .unwrap();
    (guard, lines, dir)
}

#[tokio::test]
async fn serve_with_a_config_file() {
    let idp = Idp::start().await;
    let config =
        serde_json::json!({"provider_config": idp.provider_config(), "realm": "files", "listen": "127.0.0.1:0"});
    let (_guard, lines, _dir) = serve_config(config, &[], "tokengate listening on").await;
    let base = field(&lines, "tokengate listening on").unwrap().to_string();
    let c = client();
    let res = c.get(format!("{base}/x")).bearer_auth(idp.token("dana")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-auth-principal").unwrap(), "dana");
    let res = c.get(format!("{base}/x")).send().await.unwrap();
    assert_eq!(header(&res, "www-authenticate").unwrap(), r#"Bearer realm="files""#);
}

#[tokio::test]
async fn serve_with_admin_listen_flag() {
    let idp = Idp::start().await;
    let config = serde_json::json!({"provider_config": idp.provider_config(), "listen": "127.0.0.1:0"});
    const ADMIN: &str = "tokengate admin (/healthz /readyz /metrics) on";
    let (_guard, lines, _dir) = serve_config(config, &["--admin-listen", "127.0.0.1:0"], ADMIN).await;
    let base = field(&lines, "tokengate listening on").unwrap().to_string();
    let admin = field(&lines, ADMIN).unwrap().to_string();
    let c = client();
    assert_eq!(c.get(format!("{base}/healthz")).send().await.unwrap().status(), 401, "a decision on the main port");
    let res = c.get(format!("{base}/healthz")).bearer_auth(idp.token("erin")).send().await.unwrap();
    assert_eq!(header(&res, "x-auth-principal").unwrap(), "erin");
    let res = c.get(format!("{admin}/readyz")).send().await.unwrap();
    assert_eq!((res.status().as_u16(), res.text().await.unwrap()), (200, "ready\n".to_string()));
    assert_eq!(c.get(format!("{admin}/metrics")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn client_data_in_the_decision_log_cannot_forge_lines() {
    use base64::Engine;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokengate"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .env("TOKENGATE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut guard = Guard(child);
    let base = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("tokengate dev server listening on").map(|b| b.trim().to_string()))
        .expect("address line");
    let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let forged = "x\nFORGED INFO tokengate::decision: allowed principal=root";
    let token = format!(
        "{}.{}.{}",
        b64(serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": forged})),
        b64(serde_json::json!({"sub": "mallory", "exp": 4_000_000_000u64})),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 64])
    );
    let res = client().get(format!("{base}/v1/models")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 401);
    // The log writer writes a quiet server's lines within 20 ms; a kill loses what is still buffered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = guard.0.kill();
    let _ = guard.0.wait();
    let log = errors.join().unwrap();
    assert!(log.contains("FORGED"), "the refusal names the kid: {log}");
    for line in log.lines().filter(|l| l.contains("FORGED")) {
        assert!(!line.starts_with("FORGED"), "forged line: {line}");
        assert!(line.contains("denied") && line.contains("\\n"), "escaped on the denial's own line: {line}");
    }
}

/// The decision log is written off the request path (its own thread), but
/// never at the price of a line: after a burst of concurrent decisions and a
/// SIGTERM, there is exactly one line per decision.
#[tokio::test]
async fn every_decision_of_a_burst_is_one_log_line() {
    use futures_util::StreamExt;
    const DECISIONS: usize = 2_000;
    let mut child = start(&["serve", "--dev", "--listen", "127.0.0.1:0"]);
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let pid = child.id().to_string();
    let mut guard = Guard(child);
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut lines = BufReader::new(stdout).lines();
    let (mut url, mut token) = (None, None);
    while url.is_none() || token.is_none() {
        let line = lines.next().expect("serve --dev printed its instructions").unwrap();
        let line = line.trim().to_string();
        if let Some(t) = line.strip_prefix("token:") {
            token = Some(t.trim().to_string());
        }
        if let Some(u) = line.strip_prefix("tokengate dev server listening on") {
            url = Some(u.trim().to_string());
        }
    }
    let (url, token) = (url.unwrap(), token.unwrap());
    let c = client();
    let statuses: Vec<u16> = futures_util::stream::iter(0..DECISIONS)
        .map(|i| {
            let (c, url, token) = (c.clone(), url.clone(), token.clone());
            async move {
                let bearer = if i % 2 == 0 { token } else { format!("{token}x") };
                c.get(format!("{url}/burst/{i}")).bearer_auth(bearer).send().await.map(|r| r.status().as_u16())
            }
        })
        .buffer_unordered(32)
        .map(|r| r.expect("every request is answered"))
        .collect()
        .await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), DECISIONS / 2);
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), DECISIONS / 2);
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let exited = guard.0.wait().unwrap();
    assert!(exited.success(), "a graceful stop: {exited:?}");
    let text = log.join().unwrap();
    let decisions = text.lines().filter(|l| l.contains("tokengate::decision") && l.contains("/burst/")).count();
    assert_eq!(decisions, DECISIONS, "one line per decision, none lost");
    assert!(!text.contains(&token), "no token in the log");
}

/// #20: every host a mint request names must be loopback. An unreadable
/// `Host`, or a second one, used to be passed over for the URI's or the
/// first one's `localhost`.
#[tokio::test]
async fn minting_needs_every_host_the_request_names_to_be_loopback() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_guard, base, _token) = dev_server();
    let addr = base.strip_prefix("http://").unwrap().to_string();
    let heads: [&[u8]; 3] = [
        b"POST http://localhost/dev/token HTTP/1.1\r\nHost: evil\xe9.example\r\n",
        b"POST http://localhost/dev/token HTTP/1.1\r\nHost: rebind.example\r\n",
        b"POST /dev/token HTTP/1.1\r\nHost: localhost\r\nHost: rebind.example\r\n",
    ];
    for head in heads {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let mut request = head.to_vec();
        request
            .extend_from_slice(b"Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
        stream.write_all(&request).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let response = String::from_utf8_lossy(&response);
        assert!(!response.starts_with("HTTP/1.1 200"), "{}: {response}", String::from_utf8_lossy(head));
        assert!(response.starts_with("HTTP/1.1 4"), "{}: {response}", String::from_utf8_lossy(head));
    }
}

/// `tokengate serve --config` under `prlimit --nofile=<limits>`.
fn serve_under_prlimit(prlimit: &std::path::Path, limits: &str, config: &std::path::Path) -> ServeProcess {
    let mut launcher = Command::new(prlimit);
    launcher.arg(format!("--nofile={limits}"));
    ServeProcess::start_through(launcher, config)
}

/// #20: the default max_connections (4096) is above the usual soft limit of
/// 1024 descriptors, so descriptors ran out (accept failing, key fetches
/// failing) before the cap refused anything. Under a hard limit of 256, the
/// cap is lowered to what the limit holds (a quarter kept for the rest) and
/// the WARN says so; connections past it are closed at once, while the
/// descriptors the server needs are still there. With room under the hard
/// limit, the soft limit is raised instead.
#[tokio::test]
async fn serve_fits_max_connections_to_the_open_file_limit() {
    let Some(prlimit) = require_service("prlimit") else { return };
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({"provider_config": idp.provider_config(), "listen": "127.0.0.1:0"});
    let path = dir.path().join("tokengate.yaml");
    std::fs::write(&path, config.to_string()).unwrap();
    let token = idp.token("fran");

    let (prlimit_for_cap, path_for_cap) = (prlimit.clone(), path.clone());
    let mut serve =
        tokio::task::spawn_blocking(move || serve_under_prlimit(&prlimit_for_cap, "256:256", &path_for_cap))
            .await
            .unwrap();
    // Hold every connection the cap allows, then more than the descriptors left would hold.
    let held = tokio::task::spawn_blocking({
        let base = serve.addr().to_string();
        move || {
            let mut held = Vec::new();
            for _ in 0..192 {
                held.push(std::net::TcpStream::connect(&base).unwrap());
            }
            std::thread::sleep(Duration::from_millis(300));
            let mut closed = 0;
            for _ in 0..70 {
                let Ok(mut extra) = std::net::TcpStream::connect(&base) else { continue };
                extra.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
                let mut byte = [0u8; 1];
                match extra.read(&mut byte) {
                    Ok(0) => closed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
                    _ => {}
                }
            }
            (held, closed)
        }
    })
    .await
    .unwrap();
    assert_eq!(held.1, 70, "every connection past the cap is closed at once");
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    let res = client().get(format!("{}/x", serve.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 200, "the key fetch and the decision still had descriptors");
    let log = tokio::task::spawn_blocking(move || serve.stop()).await.unwrap();
    let warn = log.lines().find(|l| l.contains("max_connections lowered")).unwrap_or_else(|| panic!("{log}"));
    assert!(warn.contains("WARN"), "{warn}");
    for field in ["from=256", "soft=256", "hard=256", "wanted=4096", "max_connections=192"] {
        assert!(warn.contains(field), "{field} in {warn}");
    }
    assert!(log.contains("connection limit reached"), "the cap, not the descriptors, refused: {log}");
    assert!(!log.contains("Too many open files"), "{log}");

    let mut serve =
        tokio::task::spawn_blocking(move || serve_under_prlimit(&prlimit, "256:8192", &path)).await.unwrap();
    let res = client().get(format!("{}/x", serve.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let log = tokio::task::spawn_blocking(move || serve.stop()).await.unwrap();
    let warn = log.lines().find(|l| l.contains("raised the soft open-file limit")).unwrap_or_else(|| panic!("{log}"));
    for field in ["WARN", "from=256", "to=4352", "max_connections=4096"] {
        assert!(warn.contains(field), "{field} in {warn}");
    }
    assert!(!log.contains("max_connections lowered"), "{log}");
}
