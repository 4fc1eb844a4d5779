//! `cofferdam build`: `content/` + `templates/` → `dist/` + manifest.

use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct BuildArgs {
    /// The site folder (holding cofferdam.toml).
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
    /// Output folder (default: `build.output_dir`, i.e. `dist/`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// Folder to create the new site in.
    pub dir: PathBuf,
}

pub fn cli(_args: &BuildArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("build: not there yet")
}

pub fn init_cli(_args: &InitArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("init: not there yet")
}
