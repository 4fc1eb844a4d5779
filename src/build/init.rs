//! `cofferdam init DIR`: a fresh copy of the example site, which builds and serves as it is.

use super::InitArgs;
use anyhow::{bail, Context};
use std::process::ExitCode;

include!(concat!(env!("OUT_DIR"), "/example_site.rs"));

pub fn init_cli(args: &InitArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.dir;
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!("{}: not empty; init writes a new site only into an empty or new folder", dir.display());
    }
    for (path, bytes) in EXAMPLE_SITE {
        let target = dir.join(path);
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p).with_context(|| format!("{}: cannot create", p.display()))?;
        }
        std::fs::write(&target, bytes).with_context(|| format!("{}: cannot write", target.display()))?;
    }
    std::fs::create_dir_all(dir.join("collected"))?;
    println!(
        "wrote a new site into {} ({} files); next: cd {} && cofferdam serve",
        dir.display(),
        EXAMPLE_SITE.len(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
