//! The progress bar and the run's diagnostics on stderr. The bar shows only when stderr is a
//! terminal and the run is not `--quiet`; diagnostics are printed above it.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use super::{Outcome, Record};

/// Progress of a batch run: images done, failures, and the summary line at the end.
pub struct Progress {
    bar: ProgressBar,
    quiet: bool,
    started: Instant,
    /// What the summary says of an image done: `classified`, `embedded`.
    verb: &'static str,
    done: usize,
    failed: usize,
}

impl Progress {
    /// A progress report over `total` images, each done one counted as `verb` (`classified`).
    pub fn new(total: usize, quiet: bool, verb: &'static str) -> Progress {
        let target =
            if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
        let bar = ProgressBar::with_draw_target(Some(total as u64), target);
        let template = "{pos}/{len} images [{bar:30}] {rate} ETA {eta}";
        if let Ok(style) = ProgressStyle::with_template(template) {
            let rate = |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                let _ = write!(out, "{:.1} images/s", state.per_sec());
            };
            bar.set_style(style.with_key("rate", rate).progress_chars("=> "));
        }
        Progress { bar, quiet, started: Instant::now(), verb, done: 0, failed: 0 }
    }

    /// Counts `record`, done or failed (a failure is printed with its reason, on one line),
    /// and hands it to `write` with the bar cleared, so that results written to the same
    /// terminal do not mix with it.
    pub fn sink<R>(&mut self, record: Record, write: impl FnOnce(Record) -> R) -> R {
        match &record.outcome {
            Outcome::Error(reason) => {
                self.failed += 1;
                let line = format!("{}: {reason}", record.path);
                self.bar.suspend(|| super::diagnostic(&line));
            }
            Outcome::Predictions(_) | Outcome::Embedding(_) => self.done += 1,
        }
        self.bar.inc(1);
        self.bar.suspend(|| write(record))
    }

    /// Prints a diagnostic above the bar.
    pub fn warn(&self, message: &str) {
        self.bar.suspend(|| super::diagnostic(message));
    }

    /// How many images failed so far.
    pub fn failures(&self) -> usize {
        self.failed
    }

    /// Clears the bar and, unless quiet, prints the one-line summary; `written` says whether
    /// every result reached the output.
    pub fn finish(self, written: bool) {
        self.bar.finish_and_clear();
        if !self.quiet {
            let line = summary(self.verb, self.done, self.failed, self.started.elapsed());
            let lost = if written { "" } else { ", but the results were not all written" };
            super::diagnostic(&format!("{line}{lost}"));
        }
    }
}

/// The counts and the time, with the rate of images done when there were any.
fn summary(verb: &str, done: usize, failed: usize, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    let counts = format!("{done} {verb}, {failed} failed in {seconds:.2} s");
    if done == 0 {
        return counts;
    }
    format!("{counts} ({:.1} images/s)", done as f64 / seconds.max(1e-9))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_and_rates() {
        assert_eq!(
            summary("classified", 98, 2, Duration::from_secs(5)),
            "98 classified, 2 failed in 5.00 s (19.6 images/s)"
        );
        let none = summary("embedded", 0, 1, Duration::from_millis(1));
        assert_eq!(none, "0 embedded, 1 failed in 0.00 s");
    }
}
