//! What the functions log, captured: a thread-local tracing subscriber that prints into a buffer.
//! A test that captures logs runs in a test binary of its own: tests running concurrently in the
//! same process can race with it over tracing's per-callsite interest cache, so a capture could
//! miss lines.

use std::sync::{Arc, Mutex};

use tracing::subscriber::DefaultGuard;

/// The buffer the subscriber writes to.
#[derive(Debug, Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Log lines of this thread at `level` and above, as plain text (no ANSI colours), from
/// [`LogCapture::start`] until [`LogCapture::stop`] or the drop.
#[derive(Debug)]
pub struct LogCapture {
    buffer: Buffer,
    _guard: DefaultGuard,
}

impl LogCapture {
    /// Installs the subscriber on this thread.
    pub fn start(level: tracing::Level) -> Self {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        Self {
            buffer,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.buffer.0.lock().unwrap().clone()).expect("UTF-8 log lines")
    }

    /// Removes the subscriber and returns what was logged.
    pub fn stop(self) -> String {
        self.text()
    }
}
