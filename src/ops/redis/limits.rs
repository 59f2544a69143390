//! Usage limits shared by every replica. Each decision is applied by a Lua
//! script, run atomically by Redis, that reads every bucket the request is
//! charged to and writes them all only when every one has room: no
//! read-then-write race between replicas, and a refused request charges
//! nothing.
//!
//! Decisions are sent in batches: one script call carries every decision
//! that arrived while the previous call was on the wire (up to
//! [`MAX_BATCH`]; a backlog goes out in full batches side by side), and
//! applies them one after another, each all-or-none, inside the same
//! atomic run. A replica under load thus makes a few hundred Redis calls
//! a second instead of one per request, and a lone request still goes out
//! at once (nothing waits for a batch to fill).
//!
//! Keys: `{prefix}limit:{rule}:{component}:{digest}`, where `component` is
//! `rate`, `day:N` or `month:N` (days, or months, since 1970-01 UTC) and
//! `digest` is the first 16 bytes, hex, of the SHA-256 of what is counted
//! (`principal|alice`): no principal, key id or address appears in a key.
//! A rate's bucket holds its theoretical arrival time (microseconds, Redis's
//! clock, so replicas' clocks do not matter) and expires when full again; a
//! quota's holds its count and expires an hour after its period ends.
//!
//! The keys of one batch must live on one Redis node: a single Redis, or
//! a primary with replicas (not Redis Cluster).

use futures_util::stream::{FuturesUnordered, StreamExt as _};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

use super::RedisStore;
use crate::pipeline::limits::{Charge, ChargeResult, Commit, Limit, SharedLimitStore};

/// The most decisions one script call carries. Redis runs a script alone,
/// so a batch holds every other client for its length: 128 decisions of a
/// few buckets each run in well under a millisecond.
pub const MAX_BATCH: usize = 128;

/// ARGV: the number of decisions, then per decision: `1` to charge or `0`
/// to peek (write nothing: `tokengate check` and `explain`), this replica's
/// time (µs), the number of charges, then four numbers per charge: `0`
/// (rate) or `1` (quota), the cost, and (rate) the interval in µs and the
/// burst, or (quota) the limit and the period's end in µs on this replica's
/// clock. KEYS: every decision's buckets, in order. Answers, per decision,
/// `allowed` (`-1`: a bucket could not be read, see [`UNREADABLE`]) then,
/// per charge, `allowed, remaining, reset_us, retry_us`. A decision sees
/// the writes of the ones before it in the batch.
///
/// A bucket is read with `pcall`: an error raised inside a script stops it
/// but keeps what it wrote, so one unreadable bucket (a key of another type
/// under the prefix) would fail every decision of the batch while those
/// before it stayed charged. It fails its own decision only, which writes
/// nothing. A write cannot fail half way: Redis refuses a script's writes
/// (out of memory, a read-only replica) at its first write only.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local flat = {}
local arg = 2
local key = 0
for d = 1, tonumber(ARGV[1]) do
  local commit = ARGV[arg] == '1'
  local local_now = tonumber(ARGV[arg + 1])
  local n = tonumber(ARGV[arg + 2])
  arg = arg + 3
  local out = {}
  local writes = {}
  local allowed = 1
  local unreadable = false
  for i = 1, n do
    local quota = ARGV[arg] == '1'
    local cost = tonumber(ARGV[arg + 1])
    local a = tonumber(ARGV[arg + 2])
    local b = tonumber(ARGV[arg + 3])
    arg = arg + 4
    local value = redis.pcall('GET', KEYS[key + i])
    if type(value) == 'table' then
      unreadable = true
      value = false
    end
    local stored = tonumber(value or '0') or 0
    if not quota then
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
  if unreadable then allowed = -1 end
  if allowed == 1 and commit then
    for i = 1, n do
      redis.call('SET', KEYS[key + i], string.format('%.0f', writes[i][1]), 'PX', string.format('%.0f', writes[i][2]))
    end
  end
  flat[#flat + 1] = allowed
  for i = 1, n do
    for j = 1, 4 do flat[#flat + 1] = out[i][j] end
  end
  key = key + n
end
return flat
"#;

/// The script's `allowed` for a decision one of whose buckets Redis could
/// not read: nothing written, and the decision fails (`on_store_error`).
const UNREADABLE: i64 = -1;

/// The script's SHA-1, as Redis names it (`EVALSHA`), once Redis has said.
static SCRIPT_SHA: Mutex<Option<String>> = Mutex::new(None);

type Answer = Result<Vec<ChargeResult>, String>;

/// One decision waiting for its batch: its buckets, its numbers (ARGV, as
/// the script reads them), and where its answer goes.
struct Pending {
    keys: Vec<String>,
    args: Vec<u64>,
    charges: usize,
    reply: oneshot::Sender<Answer>,
}

/// The limits store of every replica, on a [`RedisStore`]'s connection.
pub struct RedisLimits {
    store: Arc<RedisStore>,
    /// The batching task's queue, made on first use inside a runtime (and
    /// again if the runtime it ran on has gone).
    queue: Mutex<Option<mpsc::UnboundedSender<Pending>>>,
}

impl RedisLimits {
    /// Limits decided in `store`.
    pub fn new(store: Arc<RedisStore>) -> Self {
        RedisLimits { store, queue: Mutex::new(None) }
    }

    /// The Redis key of a charge's bucket.
    pub fn key_of(&self, charge: &Charge<'_>) -> String {
        let digest =
            Sha256::new().chain_update(charge.by).chain_update("|").chain_update(charge.value.as_bytes()).finalize();
        format!("{}limit:{}:{}:{}", self.store.prefix(), charge.rule, charge.component, hex::encode(&digest[..16]))
    }

    fn pending(&self, charges: &[Charge<'_>], now_us: u64, commit: Commit) -> (Pending, oneshot::Receiver<Answer>) {
        let mut args = Vec::with_capacity(3 + 4 * charges.len());
        args.extend([u64::from(commit == Commit::Charge), now_us, charges.len() as u64]);
        for charge in charges {
            match charge.limit {
                Limit::Rate { interval_us, burst } => args.extend([0, charge.cost, interval_us, burst]),
                Limit::Quota { limit, end_us } => args.extend([1, charge.cost, limit, end_us]),
            }
        }
        let (reply, answer) = oneshot::channel();
        let keys = charges.iter().map(|c| self.key_of(c)).collect();
        (Pending { keys, args, charges: charges.len(), reply }, answer)
    }

    /// Queues `pending` for the batching task, starting one when none runs
    /// (first use, or its runtime is gone). Gives it back when there is no
    /// runtime to start one on.
    ///
    /// Only a multi-thread runtime gets the task: its workers run it for as
    /// long as the runtime lives. A current-thread runtime runs its tasks
    /// only inside its `block_on`; one left alive but idle after a decision
    /// (a warm-up, a one-off `block_on`) would hold every later decision,
    /// on any runtime, unanswered for good. There a decision runs alone.
    fn enqueue(&self, pending: Pending) -> Result<(), Pending> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let pending = match queue.as_ref() {
            Some(sender) => match sender.send(pending) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(pending)) => pending,
            },
            None => pending,
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return Err(pending) };
        if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return Err(pending);
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        runtime.spawn(send_batches(self.store.clone(), receiver));
        let sent = sender.send(pending).map_err(|mpsc::error::SendError(p)| p);
        *queue = Some(sender);
        sent
    }
}

#[async_trait::async_trait]
impl SharedLimitStore for RedisLimits {
    async fn charge(&self, charges: &[Charge<'_>], now_us: u64, commit: Commit) -> Answer {
        let (pending, answer) = self.pending(charges, now_us, commit);
        // No batching task to queue for (no multi-thread runtime): this decision goes alone.
        if let Err(pending) = self.enqueue(pending) {
            run_batch(self.store.clone(), vec![pending]).await;
        }
        answer.await.unwrap_or_else(|_| Err("the limits batch was dropped unanswered".to_string()))
    }
}

/// The batching task: sends every decision queued while no call is on the
/// wire as one script call, and a full batch ([`MAX_BATCH`]) at once even
/// while others are. A backlog thus goes out in full batches side by side
/// on the one connection, rather than one batch per round trip behind each
/// other: a decision waits for at most the calls on the wire when it came
/// and its own, each bounded by `command_timeout`, however slow Redis is or
/// however many decisions come at once. It ends with the [`RedisLimits`]
/// that feeds it, once the calls on the wire are answered.
async fn send_batches(store: Arc<RedisStore>, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let mut on_the_wire = FuturesUnordered::new();
    let mut waiting: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    let mut open = true;
    loop {
        while waiting.len() >= MAX_BATCH || (!waiting.is_empty() && on_the_wire.is_empty()) {
            let rest = waiting.split_off(waiting.len().min(MAX_BATCH));
            let batch = std::mem::replace(&mut waiting, rest);
            on_the_wire.push(run_batch(store.clone(), batch));
        }
        if !open && on_the_wire.is_empty() {
            return;
        }
        tokio::select! {
            taken = queue.recv_many(&mut waiting, MAX_BATCH), if open => open = taken > 0,
            Some(()) = on_the_wire.next(), if !on_the_wire.is_empty() => {}
        }
    }
}

/// Runs `batch` as one script call and answers (and empties) it. A failed
/// call fails every decision in it, and each falls back on its own.
async fn run_batch(store: Arc<RedisStore>, mut batch: Vec<Pending>) {
    // A decision whose caller has gone (cancelled) is not charged.
    batch.retain(|p| !p.reply.is_closed());
    if batch.is_empty() {
        return;
    }
    let keys: usize = batch.iter().map(|p| p.keys.len()).sum();
    let mut call = Vec::with_capacity(2 + keys + batch.iter().map(|p| p.args.len()).sum::<usize>());
    call.push(keys.to_string().into_bytes());
    for pending in batch.iter() {
        call.extend(pending.keys.iter().map(|k| k.clone().into_bytes()));
    }
    call.push(batch.len().to_string().into_bytes());
    for pending in batch.iter() {
        call.extend(pending.args.iter().map(|n| n.to_string().into_bytes()));
    }
    let answer = evalsha(&store, call).await;
    let mut values = match answer {
        Ok(values) => values.into_iter(),
        Err(e) => {
            for pending in batch.drain(..) {
                let _ = pending.reply.send(Err(e.clone()));
            }
            return;
        }
    };
    let expected: usize = batch.iter().map(|p| 1 + 4 * p.charges).sum();
    let count = values.len();
    for pending in batch.drain(..) {
        let reply = if count != expected {
            Err(format!("the limits script answered {count} values for {expected}"))
        } else {
            let allowed = values.next();
            let unsigned = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
            let results = (0..pending.charges)
                .map(|_| ChargeResult {
                    allowed: values.next() == Some(1),
                    remaining: unsigned(values.next()),
                    reset_us: unsigned(values.next()),
                    retry_us: unsigned(values.next()),
                })
                .collect();
            match allowed {
                Some(UNREADABLE) => Err("Redis could not read a limit bucket of this decision (a key of \
                                         another type under key_prefix?); nothing was charged"
                    .to_string()),
                _ => Ok(results),
            }
        };
        let _ = pending.reply.send(reply);
    }
}

/// `EVALSHA` when Redis has the script; else (first use, or a Redis
/// restarted since) loads it, then runs it by its SHA-1.
async fn evalsha(store: &RedisStore, call: Vec<Vec<u8>>) -> Result<Vec<i64>, String> {
    let known = SCRIPT_SHA.lock().unwrap_or_else(|p| p.into_inner()).clone();
    store
        .run("limits", |mut conn| async move {
            let command = |sha: &str| {
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(sha);
                for arg in &call {
                    cmd.arg(arg.as_slice());
                }
                cmd
            };
            if let Some(sha) = &known {
                match command(sha).query_async::<Vec<i64>>(&mut conn).await {
                    Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {}
                    other => return other,
                }
            }
            let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(SCRIPT).query_async(&mut conn).await?;
            *SCRIPT_SHA.lock().unwrap_or_else(|p| p.into_inner()) = Some(sha.clone());
            command(&sha).query_async::<Vec<i64>>(&mut conn).await
        })
        .await
}
