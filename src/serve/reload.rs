//! SIGHUP: one reload for the whole launch. It reads today's `cofferdam.toml`, refuses a change
//! that the running process cannot take (addresses, limits, the collected folder, the signing
//! key…), rebuilds, loads the new static files and forms, hands the new form definitions and
//! stock caps to the writer, then swaps the one [`Launch`] every request pins. Anything that
//! fails leaves the running launch as it was, and says why in the log.

use super::site::StaticSite;
use super::{load_site, App, Launch, ServeArgs};
use crate::collect::Forms;
use crate::config::{Config, Site};
use crate::manifest::Manifest;
use std::sync::Arc;

/// The parts of `cofferdam.toml` a running server was started with and cannot change: its
/// sockets, limits and security headers (`server`), its logs, writer and signing key
/// (`collect`), its payment hook (`payments`), and where the build is (`build.output_dir`).
/// `site`, `forms`, `catalog` (prices, stock caps), the rest of `build`, `import` and `check`
/// apply live.
const FIXED: [&str; 3] = ["server", "collect", "payments"];

pub async fn reload(app: &Arc<App>, args: &ServeArgs) {
    let running = app.launch.load_full();
    let next = match prepare(running.source.clone(), args.clone()).await {
        Ok(next) => next,
        Err(why) => {
            tracing::error!("reload refused, still serving the previous launch: {why}");
            return;
        }
    };
    if let Err(e) = app.collector.reload(&next.source.config, &next.manifest).await {
        tracing::error!("reload refused, still serving the previous launch: {e}");
        return;
    }
    tracing::info!(
        "reloaded: {} files, {} bytes in memory, {} streamed from disk, {} forms, {} products",
        next.site.files,
        next.site.bytes,
        next.site.streamed,
        next.manifest.forms.len(),
        next.manifest.catalog.len()
    );
    app.launch.store(Arc::new(Launch { site: next.site, forms: next.forms, source: next.source }));
}

/// A launch built and loaded, not yet serving.
struct Next {
    site: StaticSite,
    forms: Arc<Forms>,
    manifest: Manifest,
    source: Site,
}

/// Reads, checks, builds and loads the next launch, off the async threads.
async fn prepare(running: Site, args: ServeArgs) -> Result<Next, String> {
    let task = tokio::task::spawn_blocking(move || -> Result<Next, String> {
        let site = load_site(&args).map_err(|e| format!("{e:#}"))?;
        let fixed = fixed_changes(&running.config, &site.config);
        if !fixed.is_empty() {
            return Err(format!(
                "{} changed in {}, which only a restart applies; undo the change or restart",
                fixed.join(", "),
                site.config_path.display()
            ));
        }
        let dist = site.output_dir();
        if !args.no_build {
            crate::build::build_site(&site, None).map_err(|e| format!("{e:#}"))?;
        }
        let manifest = Manifest::load(&dist).map_err(|e| format!("{e:#}"))?;
        let static_site = StaticSite::load(&dist, &manifest, &site.config.server).map_err(|e| format!("{e:#}"))?;
        let forms = Arc::new(Forms::new(&site.config, &manifest, &dist));
        Ok(Next { site: static_site, forms, manifest, source: site })
    });
    task.await.map_err(|e| format!("the reload stopped: {e}"))?
}

/// The keys of the [`FIXED`] sections (and `build.output_dir`) that differ: `server.listen`.
fn fixed_changes(old: &Config, new: &Config) -> Vec<String> {
    let as_json = |c: &Config| serde_json::to_value(c).unwrap_or_default();
    let (old, new) = (as_json(old), as_json(new));
    let mut changed = Vec::new();
    for section in FIXED {
        let (a, b) = (&old[section], &new[section]);
        match (a.as_object(), b.as_object()) {
            (Some(a), Some(b)) => {
                let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                changed.extend(keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).map(|k| format!("{section}.{k}")));
            }
            _ if a != b => changed.push(section.to_string()),
            _ => {}
        }
    }
    if old["build"]["output_dir"] != new["build"]["output_dir"] {
        changed.push("build.output_dir".into());
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text, std::path::Path::new("cofferdam.toml")).unwrap()
    }

    #[test]
    fn a_new_listen_address_or_collected_folder_is_named_and_a_price_is_not() {
        let old = config("[server]\nlisten = \"127.0.0.1:8080\"\n");
        let new = config("[server]\nlisten = \"0.0.0.0:80\"\n[collect]\ndir = \"elsewhere\"\n");
        assert_eq!(fixed_changes(&old, &new), ["server.listen", "collect.dir"]);
        let priced = config("[[catalog]]\nsku = \"A\"\nname = \"A\"\nprice_cents = 100\ncurrency = \"EUR\"\n");
        let repriced = config("[[catalog]]\nsku = \"A\"\nname = \"A\"\nprice_cents = 250\ncurrency = \"EUR\"\n");
        assert!(fixed_changes(&priced, &repriced).is_empty());
    }
}
