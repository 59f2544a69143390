//! `tokengate key new`: a fresh API key, and the config entry holding only its hash.

use crate::exit;

pub fn key_new(
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
