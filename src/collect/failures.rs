//! Write failures, summed up for the operator's log. A full disk fails every batch: a line per
//! batch would be tens of thousands of lines a minute (onto the disk that is already full),
//! hiding the one line that says what is wrong. So the first failure is logged in full, then
//! a count every few seconds while it lasts, and a last line when writing works again.

use crate::logthrottle::{LogThrottle, Say};
use std::fmt::Display;
use std::time::{Duration, Instant};

/// How often a lasting failure is summed up.
const EVERY: Duration = Duration::from_secs(5);

pub struct FailureLog {
    /// Failed batches: when the log says them.
    batches: LogThrottle,
    /// Posts answered 503 in this streak of failures.
    posts: u64,
    /// Of those, the posts failed since the last line.
    unsaid: u64,
}

impl Default for FailureLog {
    fn default() -> FailureLog {
        FailureLog { batches: LogThrottle::new(EVERY), posts: 0, unsaid: 0 }
    }
}

impl FailureLog {
    /// A batch of `posts` was answered 503 because of `error`.
    pub fn failed(&mut self, posts: usize, error: &dyn Display) {
        let posts = posts as u64;
        self.posts += posts;
        self.unsaid += posts;
        match self.batches.failed(Instant::now()) {
            None => return,
            Some(Say::First) => tracing::error!(
                "collector: WRITE FAILED, {posts} posts answered 503 and not recorded: {error} (while this lasts, a count every {} s)",
                EVERY.as_secs()
            ),
            Some(Say::Again { since }) => tracing::error!(
                "collector: still failing: {} more posts answered 503 in {since} batches, {} in all; last error: {error}",
                self.unsaid,
                self.posts
            ),
        }
        self.unsaid = 0;
    }

    /// A batch was written: ends a streak of failures, if any.
    pub fn recovered(&mut self) {
        if let Some(batches) = self.batches.recovered() {
            tracing::warn!(
                "collector: writing works again, after {} posts answered 503 in {batches} failed batches",
                self.posts
            );
        }
        self.posts = 0;
        self.unsaid = 0;
    }
}
