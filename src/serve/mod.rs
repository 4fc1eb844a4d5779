//! `cofferdam serve`: `dist/` from memory, form posts to the collector.

use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The site folder (holding cofferdam.toml).
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
    /// Public address (default: `server.listen`).
    #[arg(long)]
    pub listen: Option<String>,
    /// Admin address for /healthz and /metrics (default: `server.admin`).
    #[arg(long)]
    pub admin: Option<String>,
    /// Serve the existing `dist/` as it is.
    #[arg(long)]
    pub no_build: bool,
}

pub fn cli(_args: &ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("serve: not there yet")
}
