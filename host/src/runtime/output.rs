//! What a plugin says during one call — the `log` import, stdout and
//! stderr — bounded per call in bytes and lines. Past the budget output is
//! dropped and one marker says how much; a flood never fails the task and
//! never floods the host's log.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Lines and bytes a call may still send to the host's log.
pub(super) struct LogBudget {
    bytes_left: usize,
    lines_left: usize,
    dropped_lines: usize,
    dropped_bytes: usize,
}

impl LogBudget {
    pub(super) fn new(bytes: usize, lines: usize) -> Self {
        LogBudget {
            bytes_left: bytes,
            lines_left: lines,
            dropped_lines: 0,
            dropped_bytes: 0,
        }
    }

    /// The part of `line` that may still be logged (cut at the budget),
    /// or `None` once it is spent.
    pub(super) fn admit<'a>(&mut self, line: &'a str) -> Option<&'a str> {
        if self.lines_left == 0 || self.bytes_left == 0 {
            self.dropped_lines += 1;
            self.dropped_bytes += line.len();
            return None;
        }
        let kept = floor_char_boundary(line, self.bytes_left);
        self.lines_left -= 1;
        self.bytes_left -= kept.len();
        self.dropped_bytes += line.len() - kept.len();
        Some(kept)
    }

    /// Say once, at the end of the call, what was dropped.
    pub(super) fn report(&self, plugin: &str, call: &str) {
        if self.dropped_bytes > 0 {
            tracing::warn!(
                plugin,
                call,
                dropped_lines = self.dropped_lines,
                dropped_bytes = self.dropped_bytes,
                "plugin output truncated: over the per-call log limit"
            );
        }
    }
}

fn floor_char_boundary(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The end of a stream is kept too: a Rust panic message is printed last.
const TAIL_BYTES: usize = 4 << 10;

/// A stdout or stderr that accepts every write and keeps the first
/// `capacity` bytes and the last [`TAIL_BYTES`].
#[derive(Clone)]
pub(super) struct CapturedOutput {
    inner: Arc<Mutex<Captured>>,
}

struct Captured {
    capacity: usize,
    head: Vec<u8>,
    tail: Vec<u8>,
    dropped: usize,
}

impl CapturedOutput {
    pub(super) fn new(capacity: usize) -> Self {
        CapturedOutput {
            inner: Arc::new(Mutex::new(Captured {
                capacity,
                head: Vec::new(),
                tail: Vec::new(),
                dropped: 0,
            })),
        }
    }

    fn append(&self, mut bytes: &[u8]) {
        let mut out = self.inner.lock().unwrap();
        let room = out.capacity.saturating_sub(out.head.len());
        let (head, rest) = bytes.split_at(room.min(bytes.len()));
        out.head.extend_from_slice(head);
        bytes = rest;
        if bytes.is_empty() {
            return;
        }
        if bytes.len() >= TAIL_BYTES {
            out.dropped += out.tail.len() + bytes.len() - TAIL_BYTES;
            out.tail.clear();
            bytes = &bytes[bytes.len() - TAIL_BYTES..];
        }
        out.tail.extend_from_slice(bytes);
        let over = out.tail.len().saturating_sub(TAIL_BYTES);
        out.tail.drain(..over);
        out.dropped += over;
    }

    /// What was printed, with a marker where bytes were dropped.
    pub(super) fn text(&self) -> String {
        let out = self.inner.lock().unwrap();
        let mut text = String::from_utf8_lossy(&out.head).into_owned();
        if out.dropped > 0 {
            text.push_str(&format!("\n[... {} bytes dropped ...]\n", out.dropped));
        }
        text.push_str(&String::from_utf8_lossy(&out.tail));
        text
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// Writes never block or fail: the guest cannot stall on its own output.
const WRITE_PERMIT: usize = 64 << 10;

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_cuts_lines_and_bytes_and_counts_the_rest() {
        let mut budget = LogBudget::new(10, 2);
        assert_eq!(budget.admit("hello"), Some("hello"));
        assert_eq!(budget.admit("wörld!!"), Some("wörl"));
        assert_eq!(budget.admit("more"), None);
        assert_eq!((budget.dropped_lines, budget.dropped_bytes), (1, 3 + 4));
    }

    #[test]
    fn captured_output_keeps_head_and_tail_and_marks_the_gap() {
        let out = CapturedOutput::new(8);
        out.append(b"start...");
        for _ in 0..10_000 {
            out.append(b"flood");
        }
        out.append(b"panicked at the end");
        let text = out.text();
        assert!(text.starts_with("start..."), "{text}");
        assert!(text.ends_with("panicked at the end"), "{text}");
        assert!(text.contains("bytes dropped"), "{text}");
        assert!(text.len() < 8 + TAIL_BYTES + 64);
    }
}
