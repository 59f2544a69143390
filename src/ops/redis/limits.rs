//! Usage limits shared by every replica: each decision is one Lua script,
//! run atomically by Redis, that reads every bucket the request is charged
//! to, and writes them all only when every one has room — no read-then-write
//! race between replicas, and a refused request charges nothing.
//!
//! Keys: `{prefix}limit:{rule}:{component}:{digest}`, where `component` is
//! `rate`, `day:N` or `month:N` (days, or months, since 1970-01 UTC) and
//! `digest` is the first 16 bytes, hex, of the SHA-256 of what is counted
//! (`principal|alice`): no principal, key id or address appears in a key.
//! A rate's bucket holds its theoretical arrival time (microseconds, Redis's
//! clock, so replicas' clocks do not matter) and expires when full again; a
//! quota's holds its count and expires an hour after its period ends.
//!
//! The keys of one decision must live on one Redis node: a single Redis, or
//! a primary with replicas (not Redis Cluster).

use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};

use super::RedisStore;
use crate::pipeline::limits::{Charge, ChargeResult, Commit, Limit, SharedLimitStore};

/// ARGV: this replica's time (µs), `1` to charge or `0` to peek (write
/// nothing: `tokengate check` and `explain`), then four per charge: `r`
/// (rate) or `q` (quota), the cost, and (rate) the interval in µs and the
/// burst, or (quota) the limit and the period's end in µs on this replica's
/// clock. Answers `allowed` then, per charge, `allowed, remaining, reset_us, retry_us`.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local local_now = tonumber(ARGV[1])
local commit = ARGV[2] == '1'
local out = {}
local writes = {}
local allowed = 1
for i = 1, #KEYS do
  local base = 2 + (i - 1) * 4
  local kind = ARGV[base + 1]
  local cost = tonumber(ARGV[base + 2])
  local a = tonumber(ARGV[base + 3])
  local b = tonumber(ARGV[base + 4])
  local stored = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  if kind == 'r' then
    local tolerance = a * b
    local tat = stored
    if tat < now then tat = now end
    local new_tat = tat + a * cost
    local allow_at = new_tat - tolerance
    if now < allow_at then
      allowed = 0
      out[i] = {0, math.floor((now + tolerance - tat) / a), tat - now, allow_at - now}
    else
      out[i] = {1, math.floor((now + tolerance - new_tat) / a), new_tat - now, 0}
      writes[i] = {new_tat, math.max(1, math.ceil((new_tat - now) / 1000))}
    end
  else
    local reset = b - local_now
    if reset < 0 then reset = 0 end
    if stored + cost > a then
      allowed = 0
      local left = a - stored
      if left < 0 then left = 0 end
      out[i] = {0, left, reset, reset}
    else
      out[i] = {1, a - stored - cost, reset, 0}
      writes[i] = {stored + cost, math.ceil(reset / 1000) + 3600000}
    end
  end
end
if allowed == 1 and commit then
  for i = 1, #KEYS do
    redis.call('SET', KEYS[i], string.format('%.0f', writes[i][1]), 'PX', string.format('%.0f', writes[i][2]))
  end
end
local flat = {allowed}
for i = 1, #KEYS do
  for j = 1, 4 do flat[#flat + 1] = out[i][j] end
end
return flat
"#;

/// The script's SHA-1, as Redis names it (`EVALSHA`), once Redis has said.
static SCRIPT_SHA: Mutex<Option<String>> = Mutex::new(None);

/// The limits store of every replica, on a [`RedisStore`]'s connection.
pub struct RedisLimits {
    store: Arc<RedisStore>,
}

impl RedisLimits {
    /// Limits decided in `store`.
    pub fn new(store: Arc<RedisStore>) -> Self {
        RedisLimits { store }
    }

    /// The Redis key of a charge's bucket.
    pub fn key_of(&self, charge: &Charge<'_>) -> String {
        let digest =
            Sha256::new().chain_update(charge.by).chain_update("|").chain_update(charge.value.as_bytes()).finalize();
        format!("{}limit:{}:{}:{}", self.store.prefix(), charge.rule, charge.component, hex::encode(&digest[..16]))
    }
}

#[async_trait::async_trait]
impl SharedLimitStore for RedisLimits {
    async fn charge(&self, charges: &[Charge<'_>], now_us: u64, commit: Commit) -> Result<Vec<ChargeResult>, String> {
        let mut keys_and_args = redis::Cmd::new();
        keys_and_args.arg(charges.len());
        for charge in charges {
            keys_and_args.arg(self.key_of(charge));
        }
        keys_and_args.arg(now_us).arg(if commit == Commit::Charge { "1" } else { "0" });
        for charge in charges {
            match charge.limit {
                Limit::Rate { interval_us, burst } => {
                    keys_and_args.arg("r").arg(charge.cost).arg(interval_us).arg(burst)
                }
                Limit::Quota { limit, end_us } => keys_and_args.arg("q").arg(charge.cost).arg(limit).arg(end_us),
            };
        }
        let known = SCRIPT_SHA.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let answer: Vec<i64> = self
            .store
            .run("limits", |mut conn| async move {
                // EVALSHA when Redis has the script; else (first use, or a Redis
                // restarted since) load it, then run it by its SHA-1.
                if let Some(sha) = &known {
                    let mut cmd = redis::cmd("EVALSHA");
                    cmd.arg(sha.as_str());
                    for arg in keys_and_args.args_iter() {
                        if let redis::Arg::Simple(bytes) = arg {
                            cmd.arg(bytes);
                        }
                    }
                    match cmd.query_async::<Vec<i64>>(&mut conn).await {
                        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {}
                        other => return other,
                    }
                }
                let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(SCRIPT).query_async(&mut conn).await?;
                *SCRIPT_SHA.lock().unwrap_or_else(|p| p.into_inner()) = Some(sha.clone());
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(sha);
                for arg in keys_and_args.args_iter() {
                    if let redis::Arg::Simple(bytes) = arg {
                        cmd.arg(bytes);
                    }
                }
                cmd.query_async::<Vec<i64>>(&mut conn).await
            })
            .await?;
        if answer.len() != 1 + 4 * charges.len() {
            return Err(format!("the limits script answered {} values for {} limits", answer.len(), charges.len()));
        }
        let unsigned = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(answer[1..]
            .chunks_exact(4)
            .map(|c| ChargeResult {
                allowed: c[0] == 1,
                remaining: unsigned(c[1]),
                reset_us: unsigned(c[2]),
                retry_us: unsigned(c[3]),
            })
            .collect())
    }
}
