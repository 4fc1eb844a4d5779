//! Write failures, summed up for the operator's log. A full disk fails every batch: a line per
//! batch would be tens of thousands of lines a minute (onto the disk that is already full),
//! hiding the one line that says what is wrong. So the first failure is logged in full, then
//! a count every few seconds while it lasts, and a last line when writing works again.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// How often a lasting failure is summed up.
const EVERY: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct FailureLog {
    streak: Option<Streak>,
}

struct Streak {
    posts: u64,
    batches: u64,
    /// Posts and batches failed since the last line.
    unlogged: (u64, u64),
    logged_at: Instant,
}

impl FailureLog {
    /// A batch of `posts` was answered 503 because of `error`.
    pub fn failed(&mut self, posts: usize, error: &dyn Display) {
        let posts = posts as u64;
        let Some(s) = &mut self.streak else {
            tracing::error!(
                "collector: WRITE FAILED, {posts} posts answered 503 and not recorded: {error} (while this lasts, a count every {} s)",
                EVERY.as_secs()
            );
            self.streak = Some(Streak { posts, batches: 1, unlogged: (0, 0), logged_at: Instant::now() });
            return;
        };
        s.posts += posts;
        s.batches += 1;
        s.unlogged.0 += posts;
        s.unlogged.1 += 1;
        if s.logged_at.elapsed() >= EVERY {
            let (p, b) = std::mem::take(&mut s.unlogged);
            tracing::error!(
                "collector: still failing: {p} more posts answered 503 in {b} batches, {} in all; last error: {error}",
                s.posts
            );
            s.logged_at = Instant::now();
        }
    }

    /// A batch was written: ends a streak of failures, if any.
    pub fn recovered(&mut self) {
        if let Some(s) = self.streak.take() {
            tracing::warn!(
                "collector: writing works again, after {} posts answered 503 in {} failed batches",
                s.posts,
                s.batches
            );
        }
    }
}
