//! `cofferdam check`: a launch-readiness report on the built site.

use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// The site folder (holding cofferdam.toml).
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

pub fn cli(_args: &CheckArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("check: not there yet")
}
