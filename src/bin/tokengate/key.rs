//! `tokengate key new | list | rotate | suspend | resume | revoke`: API keys
//! and their key file.
//!
//! Without `--file` or `--config`, `new` prints a key and the entry to paste
//! (as it always did). With one, every command works on the key file itself:
//! it reads the list, changes it, checks the result as the provider would
//! load it, and replaces the file atomically (a temporary file renamed over
//! it), so a running provider reloads either the old list or the new one,
//! never half of one. The file is written back as YAML (or JSON, by a `.json`
//! name) from its entries: YAML comments are not kept. Two commands run on
//! one file at the same moment can lose one's change: run them one at a time.
//!
//! With `--config` naming an api_key provider with `keys_from: redis`,
//! every command works on the config's Redis instead: it reads the entries
//! there, checks the whole list as the provider would, and writes each entry
//! it changed together with its change-log record, so every replica has the
//! change within `redis.sync_interval`. The same caveat holds: two commands
//! changing one key at the same moment can lose one's change.
//!
//! `list` never prints a key or a hash.

use crate::{exit, print_error, print_json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokengate::ops::redis::api_keys::{list_keys, put_key, read_usage};
use tokengate::ops::redis::RedisStore;
use tokengate_api_key::usage::{default_usage_path, read_usage_file, write_atomically, UsageFile};
use tokengate_api_key::{check_entries, config_line, generate_key, generate_key_id, KeyEntry, KeyStatus};

/// Where the key file is: `--file`, or the api_key provider's `keys_file` in `--config`.
#[derive(clap::Args, Default)]
pub struct KeyFileArgs {
    /// The key file (a YAML list of entries; JSON by a `.json` name).
    #[arg(long, conflicts_with = "config")]
    pub file: Option<PathBuf>,
    /// A tokengate config whose api_key provider names the key file (`keys_file`).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// What `key new` writes into the entry.
#[derive(clap::Args)]
pub struct NewKeyArgs {
    /// Every key starts with this; match the provider's `prefix`.
    #[arg(long, default_value = "tg_")]
    pub prefix: String,
    /// Whom the key authenticates as (default: `api-key-` and the first 8 hex digits of its hash).
    #[arg(long)]
    pub principal: Option<String>,
    /// The key's id, unique in the file (default: `key_` and 12 random characters).
    #[arg(long)]
    pub id: Option<String>,
    /// Who is responsible for the key.
    #[arg(long)]
    pub owner: Option<String>,
    /// A short human name for the key.
    #[arg(long)]
    pub name: Option<String>,
    /// What the key is for.
    #[arg(long)]
    pub description: Option<String>,
    /// An attribute value, NAME=VALUE; repeat for more (`--attr roles=admin --attr roles=dev`).
    #[arg(long = "attr", value_name = "NAME=VALUE")]
    pub attrs: Vec<String>,
    /// Free-form metadata, NAME=VALUE (kept as text); repeat for more.
    #[arg(long = "meta", value_name = "NAME=VALUE")]
    pub meta: Vec<String>,
    /// When the key stops working: an RFC 3339 time (2027-01-01T00:00:00Z) or a lifetime (90d).
    #[arg(long)]
    pub expires: Option<String>,
    /// Per-key rate for the `limits:` stage (`100/min`).
    #[arg(long)]
    pub rate_limit: Option<String>,
    /// Per-key requests per UTC day.
    #[arg(long)]
    pub daily_quota: Option<u64>,
    /// Per-key requests per UTC month.
    #[arg(long)]
    pub monthly_quota: Option<u64>,
    /// A client address or CIDR the key may be used from; repeat for more.
    #[arg(long = "allow-cidr")]
    pub allowed_cidrs: Vec<String>,
    /// A path (or `/prefix/*`) the key may be used on; repeat for more.
    #[arg(long = "allow-path")]
    pub allowed_paths: Vec<String>,
    /// An HTTP method the key may be used with; repeat for more.
    #[arg(long = "allow-method")]
    pub allowed_methods: Vec<String>,
}

fn fail(command: &str, message: impl std::fmt::Display) -> u8 {
    print_error(format_args!("tokengate key {command}: {message}"));
    exit::USAGE
}

fn pairs(flag: &str, args: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for arg in args {
        let Some((name, value)) = arg.split_once('=') else {
            return Err(format!("{flag} {arg:?}: write NAME=VALUE"));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() || value.is_empty() {
            return Err(format!("{flag} {arg:?}: both NAME and VALUE must be non-empty"));
        }
        out.push((name.to_string(), value.to_string()));
    }
    Ok(out)
}

fn now_rfc3339(now: SystemTime) -> String {
    humantime::format_rfc3339_seconds(now).to_string()
}

/// A fresh key and its entry, from the command line's fields.
fn new_entry(args: &NewKeyArgs, now: SystemTime) -> Result<(String, String, KeyEntry), String> {
    let mut attributes = tokengate::Attributes::new();
    for (name, value) in pairs("--attr", &args.attrs)? {
        let values = attributes.entry(name).or_default();
        if !values.contains(&value) {
            values.push(value);
        }
    }
    let (key, hash) = generate_key(&args.prefix).map_err(|e| e.to_string())?;
    let principal = args.principal.clone().unwrap_or_else(|| format!("api-key-{}", &hash[..8]));
    let id = match &args.id {
        Some(id) => id.clone(),
        None => generate_key_id().map_err(|e| e.to_string())?,
    };
    let mut entry = KeyEntry::new(format!("sha256:{hash}"), principal).with_attributes(attributes).with_id(id);
    entry.owner = args.owner.clone();
    entry.name = args.name.clone();
    entry.description = args.description.clone();
    entry.created_at = Some(now_rfc3339(now));
    for (name, value) in pairs("--meta", &args.meta)? {
        entry.metadata.insert(name, serde_json::Value::String(value));
    }
    entry.rate_limit = args.rate_limit.clone();
    entry.daily_quota = args.daily_quota;
    entry.monthly_quota = args.monthly_quota;
    entry.allowed_cidrs = args.allowed_cidrs.clone();
    entry.allowed_paths = args.allowed_paths.clone();
    entry.allowed_methods = args.allowed_methods.clone();
    if let Some(text) = &args.expires {
        // A lifetime (`90d`) is turned into the time it ends; anything else must be RFC 3339.
        entry = match humantime::parse_duration(text.trim()) {
            Ok(d) => entry.expiring_at(now + d),
            Err(_) => {
                entry.expires_at = Some(text.trim().to_string());
                entry
            }
        };
    }
    Ok((key, hash, entry))
}

/// Where the keys are, and where their usage is added up.
enum Place {
    File { path: PathBuf, usage: Usage },
    Redis { store: Arc<RedisStore>, timeout: Duration },
}

enum Usage {
    File(PathBuf),
    Redis { store: Arc<RedisStore>, timeout: Duration },
}

/// A command's failure: its exit code and what to say.
struct Failed(u8, String);

impl From<String> for Failed {
    fn from(message: String) -> Self {
        Failed(exit::USAGE, message)
    }
}

/// Redis did not answer: exit 3, as `tokengate revoke` does.
fn unavailable(message: String) -> Failed {
    Failed(exit::UNAVAILABLE, message)
}

/// One api_key section of a config: where its keys and usage are.
struct Section {
    keys_file: Option<String>,
    from_redis: bool,
    usage_redis: bool,
}

fn find_sections(value: &serde_json::Value, found: &mut Vec<Section>) {
    match value {
        serde_json::Value::Object(map) => {
            let is_api_key = matches!(map.get("type").and_then(|t| t.as_str()), Some("api_key" | "local_api_key"));
            let keys_file = map.get("keys_file").and_then(|f| f.as_str()).map(str::to_string);
            let from_redis = map.get("keys_from").and_then(|f| f.as_str()) == Some("redis");
            let usage_redis = match map.get("usage_store").and_then(|f| f.as_str()) {
                Some(store) => store == "redis",
                None => from_redis,
            };
            if is_api_key && (keys_file.is_some() || from_redis) {
                found.push(Section { keys_file, from_redis, usage_redis });
            }
            map.values().for_each(|v| find_sections(v, found));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| find_sections(v, found)),
        _ => {}
    }
}

/// The config's Redis, and how long a command may wait for it.
fn redis_of(config_path: &Path) -> Result<(Arc<RedisStore>, Duration), Failed> {
    let config = tokengate::Config::load(config_path).map_err(|e| Failed(exit::USAGE, format!("config error: {e}")))?;
    let store = match config.redis_store() {
        Ok(Some(store)) => store,
        Ok(None) => {
            return Err(Failed(
                exit::USAGE,
                format!("{} has an api_key provider with Redis, and no `redis` section", config_path.display()),
            ))
        }
        Err(e) => return Err(Failed(exit::USAGE, format!("config error: {e}"))),
    };
    // An operator can wait longer than a request: the connect timeout plus a few seconds.
    let timeout = config.settings.redis.as_ref().map_or(Duration::ZERO, |r| r.connect_timeout) + Duration::from_secs(5);
    Ok((store, timeout))
}

/// Where `args` say the keys are, if anywhere.
fn place(args: &KeyFileArgs) -> Result<Option<Place>, Failed> {
    if let Some(file) = &args.file {
        return Ok(Some(Place::File { path: file.clone(), usage: Usage::File(default_usage_path(file)) }));
    }
    let Some(config) = &args.config else { return Ok(None) };
    let text = std::fs::read_to_string(config).map_err(|e| format!("cannot read {}: {e}", config.display()))?;
    let doc: serde_json::Value =
        yaml_serde::from_str(&text).map_err(|e| format!("{} is not YAML or JSON: {e}", config.display()))?;
    let mut found = Vec::new();
    find_sections(&doc, &mut found);
    let base = config.parent().unwrap_or(Path::new("."));
    let section = match found.as_slice() {
        [one] => one,
        [] => {
            return Err(Failed::from(format!(
                "{} has no api_key (or local_api_key) provider with a `keys_file` or `keys_from: redis`; name the \
                 file with --file",
                config.display()
            )))
        }
        _ => {
            return Err(Failed::from(format!(
                "{} has several api_key providers with a `keys_file` or `keys_from: redis`; name a file with --file",
                config.display()
            )))
        }
    };
    let redis = if section.from_redis || section.usage_redis { Some(redis_of(config)?) } else { None };
    let usage = match (&redis, section.usage_redis, &section.keys_file) {
        (Some((store, timeout)), true, _) => Usage::Redis { store: store.clone(), timeout: *timeout },
        (_, _, Some(file)) => Usage::File(default_usage_path(&base.join(file))),
        // Keys in Redis, usage in a file: `usage_store: file` with no file means none is recorded.
        (_, _, None) => Usage::File(PathBuf::new()),
    };
    Ok(Some(match (section.from_redis, redis, &section.keys_file) {
        (true, Some((store, timeout)), _) => Place::Redis { store, timeout },
        (_, _, Some(file)) => Place::File { path: base.join(file), usage },
        _ => return Err(Failed::from(format!("{}: the api_key provider names no key file", config.display()))),
    }))
}

impl Place {
    fn shown(&self) -> String {
        match self {
            Place::File { path, .. } => path.display().to_string(),
            Place::Redis { store, .. } => format!("Redis at {}", store.url()),
        }
    }

    /// Every entry; a key file that does not exist yet is an empty list only when `may_be_new`.
    async fn read(&self, may_be_new: bool) -> Result<Vec<KeyEntry>, Failed> {
        match self {
            Place::File { path, .. } if may_be_new => Ok(read_entries(path)?),
            Place::File { path, .. } => Ok(tokengate_api_key::read_keys_file(path)?),
            Place::Redis { store, timeout } => {
                let (entries, unreadable) = list_keys(store, *timeout).await.map_err(unavailable)?;
                if !unreadable.is_empty() {
                    // Replicas leave these out too; say so rather than hide them (not by name: a name is a hash).
                    print_error(format_args!(
                        "tokengate key: note: {} Redis key(s) under api-key: hold no readable entry, or one \
                         stored under another key's hash, and are left out (as every replica leaves them out)",
                        unreadable.len()
                    ));
                }
                Ok(entries)
            }
        }
    }

    /// Checks `all` as the provider would load it, then writes it: the whole
    /// file, or in Redis the `changed` entries (each with its log record), in order.
    async fn write(&self, all: &[KeyEntry], changed: &[&KeyEntry]) -> Result<(), Failed> {
        match self {
            Place::File { path, .. } => Ok(write_entries(path, all)?),
            Place::Redis { store, timeout } => {
                check_entries(all).map_err(|e| format!("the keys would not load: `{}`: {}", e.field, e.message))?;
                for entry in changed {
                    put_key(store, entry, *timeout).await.map_err(unavailable)?;
                }
                Ok(())
            }
        }
    }

    /// The usage of `entries`, as a report: what cannot be read shows none, with a note.
    async fn usage(&self, entries: &[KeyEntry]) -> UsageFile {
        let usage = match self {
            Place::File { usage, .. } => usage,
            Place::Redis { store, timeout } => &Usage::Redis { store: store.clone(), timeout: *timeout },
        };
        let read = match usage {
            Usage::File(path) if path.as_os_str().is_empty() => Ok(UsageFile::default()),
            Usage::File(path) => read_usage_file(path),
            Usage::Redis { store, timeout } => {
                let ids: Vec<String> = entries.iter().map(id_of).collect();
                read_usage(store, &ids, *timeout).await
            }
        };
        read.unwrap_or_else(|e| {
            print_error(format_args!("tokengate key list: usage not shown: {e}"));
            UsageFile::default()
        })
    }
}

fn is_json(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

/// The entries of `path`; a file that does not exist yet is an empty list.
fn read_entries(path: &Path) -> Result<Vec<KeyEntry>, String> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    tokengate_api_key::read_keys_file(path)
}

/// Checks `entries` as the provider would load them and replaces `path` with them.
fn write_entries(path: &Path, entries: &[KeyEntry]) -> Result<(), String> {
    check_entries(entries).map_err(|e| format!("the key file would not load: `{}`: {}", e.field, e.message))?;
    let text = if is_json(path) {
        serde_json::to_string_pretty(entries).map_err(|e| e.to_string())? + "\n"
    } else {
        yaml_serde::to_string(entries).map_err(|e| e.to_string())?
    };
    let had_comments = !is_json(path)
        && std::fs::read_to_string(path).is_ok_and(|old| old.lines().any(|l| l.trim_start().starts_with('#')));
    write_atomically(path, text.as_bytes())?;
    if had_comments {
        print_error(format_args!(
            "tokengate key: note: {} is rewritten from its entries; its comments are gone",
            path.display()
        ));
    }
    Ok(())
}

fn failed(command: &str, Failed(code, message): Failed) -> u8 {
    print_error(format_args!("tokengate key {command}: {message}"));
    code
}

/// `tokengate key new`.
pub async fn key_new(args: NewKeyArgs, file: KeyFileArgs, json: bool) -> u8 {
    let now = SystemTime::now();
    let (key, hash, entry) = match new_entry(&args, now) {
        Ok(made) => made,
        Err(e) => return fail("new", e),
    };
    let place = match place(&file) {
        Ok(place) => place,
        Err(e) => return failed("new", e),
    };
    let line = match config_line(&entry) {
        Ok(l) => l,
        Err(e) => return fail("new", e.to_string().replace("`expires_at`", "--expires")),
    };
    let id = entry.id.clone().unwrap_or_default();
    if let Some(place) = &place {
        let written = match place.read(true).await {
            Ok(mut entries) => {
                entries.push(entry.clone());
                place.write(&entries, &[&entry]).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            return failed("new", e);
        }
    }
    if json {
        let mut out = serde_json::json!({"id": id, "key": key, "hash": format!("sha256:{hash}"), "config_entry": line});
        match &place {
            Some(Place::File { path, .. }) => out["file"] = serde_json::json!(path.display().to_string()),
            Some(redis @ Place::Redis { .. }) => out["store"] = serde_json::json!(redis.shown()),
            None => {}
        }
        print_json(&out, false);
        return exit::OK;
    }
    println!("{key}");
    println!();
    println!("# The key above is shown only now: give it to its owner. tokengate stores only its hash.");
    match &place {
        Some(place) => println!("# Added to {} as id {id}.", place.shown()),
        None => {
            println!("# Paste this into the keys_file, or (indented) under `keys:` of the api_key provider:");
            print!("{line}");
        }
    }
    exit::OK
}

/// What `list` shows of one key: never its hash.
#[derive(serde::Serialize)]
struct Listed {
    id: String,
    principal: String,
    owner: Option<String>,
    name: Option<String>,
    /// `active`, `suspended`, `revoked`, `expired`, or `rotated` (past its grace).
    status: &'static str,
    reason: Option<String>,
    created_at: Option<String>,
    expires_at: Option<String>,
    rotated_to: Option<String>,
    last_used_at: Option<String>,
    requests_today: u64,
    requests: u64,
}

/// The id an entry is known by, as the provider names it.
fn id_of(entry: &KeyEntry) -> String {
    entry.id.clone().unwrap_or_else(|| {
        let hex = entry.hash.trim_start_matches("sha256:").to_ascii_lowercase();
        format!("h-{}", hex.get(..8).unwrap_or(""))
    })
}

fn listed(entry: &KeyEntry, usage: &UsageFile, now: SystemTime) -> Listed {
    let id = id_of(entry);
    let expired = entry.expires_at.as_deref().and_then(parse_offset_time).is_some_and(|at| now >= at);
    let status = match entry.effective_status() {
        KeyStatus::Active if expired && entry.rotated_to.is_some() => "rotated",
        KeyStatus::Active if expired => "expired",
        status => status.as_str(),
    };
    let used = usage.keys.get(&id);
    let today = &now_rfc3339(now)[..10];
    Listed {
        principal: entry.principal.clone(),
        owner: entry.owner.clone(),
        name: entry.name.clone(),
        status,
        reason: entry.reason.clone(),
        created_at: entry.created_at.clone(),
        expires_at: entry.expires_at.clone(),
        rotated_to: entry.rotated_to.clone(),
        last_used_at: used.and_then(|u| u.last_used_at.clone()),
        requests_today: used.and_then(|u| u.requests_per_day.get(today).copied()).unwrap_or(0),
        requests: used.map(|u| u.total()).unwrap_or(0),
        id,
    }
}

/// RFC 3339 with an offset (`+02:00`), which humantime does not read.
fn parse_offset_time(text: &str) -> Option<SystemTime> {
    tokengate_api_key::parse_entry_time(text).ok()
}

/// `tokengate key list`.
pub async fn key_list(file: KeyFileArgs, json: bool) -> u8 {
    let place = match place(&file) {
        Ok(Some(place)) => place,
        Ok(None) => return fail("list", "name the key file with --file or --config"),
        Err(e) => return failed("list", e),
    };
    let entries = match place.read(false).await {
        Ok(entries) => entries,
        Err(e) => return failed("list", e),
    };
    // Usage is a report: a missing or unreadable file shows no usage, with a note.
    let usage = place.usage(&entries).await;
    let now = SystemTime::now();
    let rows: Vec<Listed> = entries.iter().map(|e| listed(e, &usage, now)).collect();
    if json {
        print_json(&rows, true);
        return exit::OK;
    }
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let table: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            let status = match (&r.rotated_to, r.status) {
                (Some(next), "active") => format!("active (rotated to {next})"),
                (_, status) => status.to_string(),
            };
            [
                r.id.clone(),
                dash(&r.owner),
                status,
                dash(&r.created_at),
                dash(&r.expires_at),
                dash(&r.last_used_at),
                r.requests_today.to_string(),
                r.requests.to_string(),
            ]
        })
        .collect();
    let header = ["ID", "OWNER", "STATUS", "CREATED", "EXPIRES", "LAST USED", "TODAY", "REQUESTS"].map(String::from);
    let mut widths = [0usize; 8];
    for row in std::iter::once(&header).chain(table.iter()) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(table.iter()) {
        let line: Vec<String> = row.iter().zip(widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        // Values come from the file: escaped as the log escapes them.
        println!("{}", tokengate::ops::audit::escape_controls(line.join("  ").trim_end()));
    }
    exit::OK
}

/// What `change` does to the entry it finds.
pub enum Change {
    Suspend(String),
    Resume,
    Revoke(Option<String>),
}

async fn open_for_change(command: &str, file: &KeyFileArgs) -> Result<(Place, Vec<KeyEntry>), u8> {
    let place = match place(file) {
        Ok(Some(place)) => place,
        Ok(None) => return Err(fail(command, "name the key file with --file or --config")),
        Err(e) => return Err(failed(command, e)),
    };
    match place.read(false).await {
        Ok(entries) => Ok((place, entries)),
        Err(e) => Err(failed(command, e)),
    }
}

fn position(entries: &[KeyEntry], id: &str) -> Option<usize> {
    entries.iter().position(|e| e.id.as_deref() == Some(id))
}

/// `tokengate key suspend | resume | revoke`.
pub async fn key_change(command: &str, id: String, change: Change, file: KeyFileArgs) -> u8 {
    let (place, mut entries) = match open_for_change(command, &file).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let Some(i) = position(&entries, &id) else {
        return fail(command, format!("no key with id `{id}` in {}", place.shown()));
    };
    let entry = &mut entries[i];
    match change {
        Change::Suspend(reason) => {
            if entry.effective_status() == KeyStatus::Revoked {
                return fail(command, format!("key `{id}` is revoked; a revoked key stays revoked"));
            }
            entry.status = KeyStatus::Suspended;
            entry.reason = Some(reason);
        }
        Change::Resume => {
            if entry.effective_status() == KeyStatus::Revoked {
                return fail(command, format!("key `{id}` is revoked; a revoked key cannot be resumed"));
            }
            entry.status = KeyStatus::Active;
            entry.disabled = false;
            entry.reason = None;
        }
        Change::Revoke(reason) => {
            entry.status = KeyStatus::Revoked;
            entry.disabled = false;
            entry.reason = reason;
        }
    }
    let status = entry.effective_status().as_str();
    if let Err(e) = place.write(&entries, &[&entries[i]]).await {
        return failed(command, e);
    }
    println!("key {id}: {status}");
    exit::OK
}

/// `tokengate key rotate ID --grace D`: a new key with the old one's identity
/// and limits, working at once; the old one works until the grace ends.
pub async fn key_rotate(id: String, grace: Duration, prefix: String, file: KeyFileArgs, json: bool) -> u8 {
    let (place, mut entries) = match open_for_change("rotate", &file).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let Some(i) = position(&entries, &id) else {
        return fail("rotate", format!("no key with id `{id}` in {}", place.shown()));
    };
    let old = &entries[i];
    if old.effective_status() != KeyStatus::Active {
        return fail(
            "rotate",
            format!("key `{id}` is {}; only an active key is rotated", old.effective_status().as_str()),
        );
    }
    if let Some(next) = &old.rotated_to {
        return fail("rotate", format!("key `{id}` was already rotated to `{next}`; rotate that one"));
    }
    let now = SystemTime::now();
    let (key, hash) = match generate_key(&prefix) {
        Ok(k) => k,
        Err(e) => return fail("rotate", e),
    };
    let new_id = match generate_key_id() {
        Ok(id) => id,
        Err(e) => return fail("rotate", e),
    };
    // Everything that says who the key is and what it may do carries over; the lifecycle starts afresh.
    let mut new = old.clone();
    new.id = Some(new_id.clone());
    new.hash = format!("sha256:{hash}");
    new.created_at = Some(now_rfc3339(now));
    new.reason = None;
    new.rotated_to = None;
    // A key made with a lifetime gets the same lifetime from now; one without keeps none.
    let created = old.created_at.as_deref().and_then(parse_offset_time);
    let lifetime = match (created, old.expires_at.as_deref().and_then(parse_offset_time)) {
        (Some(created), Some(expires)) => expires.duration_since(created).ok(),
        _ => None,
    };
    new.expires_at = None;
    if let Some(lifetime) = lifetime {
        new = new.expiring_at(now + lifetime);
    }
    let grace_end = now + grace;
    // The old key's own expiry wins when it comes sooner.
    let old_expiry = old.expires_at.as_deref().and_then(parse_offset_time);
    let old = &mut entries[i];
    if old_expiry.is_none_or(|at| at > grace_end) {
        *old = old.clone().expiring_at(grace_end);
    }
    old.rotated_to = Some(new_id.clone());
    let grace_ends = old.expires_at.clone().unwrap_or_default();
    entries.insert(i + 1, new);
    // The new key first, so it works before the old one's grace is set.
    if let Err(e) = place.write(&entries, &[&entries[i + 1], &entries[i]]).await {
        return failed("rotate", e);
    }
    if json {
        print_json(
            &serde_json::json!({"id": new_id, "key": key, "replaces": id, "old_key_works_until": grace_ends}),
            false,
        );
        return exit::OK;
    }
    println!("{key}");
    println!();
    println!("# The key above is shown only now: give it to its owner. It works now, as id {new_id}.");
    println!("# The key it replaces ({id}) works until {grace_ends}.");
    exit::OK
}
