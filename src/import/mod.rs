//! `cofferdam import`: `collected/` → the shop's database, with reserved ID ranges, exactly once.

use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// The site folder (holding cofferdam.toml).
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
    /// Target database URL (default: `import.to`).
    #[arg(long)]
    pub to: Option<String>,
    /// Print the plan and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Collected folders to merge, one per node (default: `collect.dir`).
    #[arg(long)]
    pub from: Vec<PathBuf>,
    /// Import the good records even when some are bad (the bad ones are reported).
    #[arg(long)]
    pub skip_bad: bool,
}

pub fn cli(_args: &ImportArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("import: not there yet")
}
