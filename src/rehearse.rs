//! `cofferdam rehearse`: a bounded spike rehearsal on loopback that finds this machine's capacity.

use crate::check::Format;
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct RehearseArgs {
    /// The site folder (holding cofferdam.toml).
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
    /// Seconds the whole rehearsal may take.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Most concurrent visitors.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Highest landing-path visits per second to try (unbounded ramp when unset).
    #[arg(long)]
    pub rate: Option<u64>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

pub fn cli(_args: &RehearseArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("rehearse: not there yet")
}
