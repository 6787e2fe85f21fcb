//! Import progress: an indicatif bar on stderr when it is a terminal, nothing otherwise.

use std::io::{IsTerminal, Read};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A byte-progress bar that is hidden unless stderr is a terminal (or `enabled` is false).
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar for `total` bytes, shown only when `enabled` and stderr is a terminal.
    pub fn new(enabled: bool, total: u64, message: String) -> Self {
        let bar = if enabled && std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:20!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            bar.set_message(message);
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress { bar }
    }

    /// Wraps a reader so reads advance the bar.
    pub fn wrap<'a, R: Read + Send + 'a>(&self, reader: R) -> Box<dyn Read + Send + 'a> {
        Box::new(self.bar.wrap_read(reader))
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
