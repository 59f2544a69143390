//! The log writer: lines go into a shared buffer, and a thread of its own
//! writes the buffer out in batches.
//!
//! `serve` writes one line per decision. tracing-appender's non-blocking
//! writer wakes its thread and makes one `write(2)` per line. Under load that
//! per-line wake-up (a futex on another thread) cost more than formatting the
//! line (see BENCHMARKS.md, the #14 profile). Here a request only appends to
//! a buffer. The writer thread is woken when a batch is worth a system call
//! ([`BATCH_BYTES`]), and otherwise every [`FLUSH_EVERY`]. Nothing is lost:
//! past [`MAX_BUFFERED_BYTES`] a request waits for the writer rather than a
//! line being dropped. [`FlushGuard`] writes out the rest when dropped.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// A batch this big is written at once rather than at the next tick.
const BATCH_BYTES: usize = 64 * 1024;
/// The longest a line waits in the buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// Past this, writers wait for the writer thread (a slow disk holds up
/// requests only once 4 MiB of log are waiting).
const MAX_BUFFERED_BYTES: usize = 4 * 1024 * 1024;

#[derive(Default)]
struct State {
    buffer: Vec<u8>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// The writer thread waits here for a batch (or the tick).
    ready: Condvar,
    /// Full-buffer writers wait here for the writer thread.
    drained: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves a buffer still worth writing.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `MakeWriter` handed to tracing-subscriber.
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

/// Writes out what is still buffered, and stops the writer thread, when dropped.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A writer into `out` on a thread named `name`, and the guard that flushes it.
pub fn batched<W: Write + Send + 'static>(out: W, name: &str) -> std::io::Result<(BatchedWriter, FlushGuard)> {
    let shared = Arc::new(Shared::default());
    let worker = shared.clone();
    let thread = std::thread::Builder::new().name(name.to_string()).spawn(move || write_batches(&worker, out))?;
    Ok((BatchedWriter { shared: shared.clone() }, FlushGuard { shared, thread: Some(thread) }))
}

fn write_batches<W: Write>(shared: &Shared, mut out: W) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    loop {
        let closed = {
            let mut state = shared.lock();
            // A small batch waits for the tick (or for the line that makes it a full one).
            if state.buffer.len() < BATCH_BYTES && !state.closed {
                state = shared.ready.wait_timeout(state, FLUSH_EVERY).unwrap_or_else(PoisonError::into_inner).0;
            }
            std::mem::swap(&mut state.buffer, &mut batch);
            state.closed
        };
        shared.drained.notify_all();
        if !batch.is_empty() {
            // Where the log cannot be written there is nowhere to say so; keep serving.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
        }
        if closed && shared.lock().buffer.is_empty() {
            return;
        }
    }
}

impl Write for BatchedWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut state = self.shared.lock();
        while state.buffer.len() >= MAX_BUFFERED_BYTES && !state.closed {
            state = self.shared.drained.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        let before = state.buffer.len();
        state.buffer.extend_from_slice(line);
        // Wake the writer once per batch, not once per line.
        if before < BATCH_BYTES && state.buffer.len() >= BATCH_BYTES {
            self.shared.ready.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedWriter {
    type Writer = BatchedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut sink = self.0.lock().unwrap();
            sink.0.extend_from_slice(buf);
            sink.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_arrives_in_order_in_few_writes() {
        let sink = Sink::default();
        let (writer, guard) = batched(sink.clone(), "test-log").unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut w = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        w.write_all(format!("thread {t} line {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        drop(guard);
        let (bytes, writes) = sink.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text.lines().count(), 80_000, "nothing lost");
        for t in 0..4 {
            let mine: Vec<&str> = text.lines().filter(|l| l.starts_with(&format!("thread {t} "))).collect();
            assert!(mine.iter().enumerate().all(|(i, l)| *l == format!("thread {t} line {i}")), "in order");
        }
        assert!(writes < 1000, "{writes} writes for 80,000 lines: batched");
    }

    #[test]
    fn a_quiet_line_is_written_within_the_tick() {
        let sink = Sink::default();
        let (mut writer, _guard) = batched(sink.clone(), "test-log").unwrap();
        writer.write_all(b"one\n").unwrap();
        std::thread::sleep(FLUSH_EVERY * 10);
        assert_eq!(sink.0.lock().unwrap().0, b"one\n");
    }
}
