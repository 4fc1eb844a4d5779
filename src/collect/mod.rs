//! Form posts → durable, rotated logs in `collected/` (group commit), stock caps, recovery.
//!
//! The server hands `POST /submit/{form}` to [`Collector::router`]; nothing else is dynamic.

use crate::config::Site;
use crate::manifest::Manifest;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The running collector: one writer per form log.
pub struct Collector {}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("{0}")]
    Other(String),
}

impl Collector {
    /// Recovers the logs under `site`'s collected folder and starts one writer per form.
    /// `dist` is the built site (for the busy, sold-out and invalid pages).
    pub async fn start(
        _site: &Site,
        _manifest: &Manifest,
        _dist: &Path,
    ) -> Result<Arc<Collector>, CollectError> {
        Ok(Arc::new(Collector {}))
    }

    /// `POST /submit/{form}`, as routes the server adds its own state and fallback to.
    pub fn router<S: Clone + Send + Sync + 'static>(self: &Arc<Self>) -> axum::Router<S> {
        axum::Router::new()
    }

    /// Whether the writers can write (false after a write error until one succeeds again).
    pub fn healthy(&self) -> bool {
        true
    }

    /// Whether a GET of `route` must answer with the sold-out page instead (the landing page
    /// and the pages of order forms, once every SKU they sell is gone).
    pub fn shows_sold_out(&self, _route: &str) -> bool {
        false
    }

    /// Stops taking posts, flushes, fsyncs and seals every open segment.
    pub async fn shutdown(&self) {}
}

#[derive(Debug, Clone, clap::Args)]
pub struct StatsArgs {
    /// The site folder (holding cofferdam.toml).
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
}

pub fn stats_cli(_args: &StatsArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("stats: not there yet")
}
