//! `cofferdam init DIR`: a fresh copy of the example site, which builds and serves as it is;
//! with `--shop`, its `[import]` is that shop's recipe.

use super::InitArgs;
use anyhow::{bail, Context};
use std::borrow::Cow;
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
        let bytes = match args.shop {
            Some(shop) if *path == crate::config::CONFIG_FILE => {
                let example = std::str::from_utf8(bytes).expect("the example config is UTF-8");
                Cow::Owned(shop.apply(example).expect("the example config has an [import] section").into_bytes())
            }
            _ => Cow::Borrowed(*bytes),
        };
        std::fs::write(&target, bytes).with_context(|| format!("{}: cannot write", target.display()))?;
    }
    std::fs::create_dir_all(dir.join("collected"))?;
    println!(
        "wrote a new site into {} ({} files); next: cd {} && cofferdam serve",
        dir.display(),
        EXAMPLE_SITE.len(),
        dir.display()
    );
    if let Some(shop) = args.shop {
        println!(
            "its [import] is the {} recipe: set import.to to the shop's database and check the values in \
             [import.let] (README, \"Recipes\"), then: cofferdam import --dry-run",
            shop.name()
        );
    }
    Ok(ExitCode::SUCCESS)
}
