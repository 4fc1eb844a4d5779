//! The server under test: the real `cofferdam serve` process, on loopback ports the OS picks,
//! serving the site's `dist/` but collecting into a scratch folder that is removed afterwards.

use crate::config::Site;
use crate::serve::Listening;
use anyhow::{bail, Context};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct ScratchServer {
    child: Child,
    pub addr: SocketAddr,
    /// The scratch collected folder (inside `dir`).
    pub collected: PathBuf,
    stderr: Arc<Mutex<String>>,
    dir: tempfile::TempDir,
}

/// A stock cap no rehearsal reaches: the cap logic still runs, the site never sells out.
const REHEARSAL_STOCK: i64 = 1_000_000_000;

impl ScratchServer {
    /// Starts `exe serve --no-build` on the built site of `site`, waiting at most `timeout`.
    pub fn start(exe: &Path, site: &Site, timeout: Duration) -> anyhow::Result<ScratchServer> {
        let dir =
            tempfile::Builder::new().prefix("cofferdam-rehearse-").tempdir().context("creating a scratch folder")?;
        let collected = dir.path().join("collected");
        let dist = scratch_dist(site, &dir.path().join("dist"))?;
        let config = scratch_config(site, &dist, &collected)?;
        std::fs::write(dir.path().join(crate::config::CONFIG_FILE), config).context("writing the scratch config")?;
        // `serve` writes where it listens here, as a `Listening` value.
        let ready = dir.path().join("listening.json");
        let mut child = Command::new(exe)
            .args(["serve", "--no-build", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--site"])
            .arg(dir.path())
            .arg("--ready-file")
            .arg(&ready)
            .env("COFFERDAM_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} serve", exe.display()))?;

        // Keep the pipes drained so the server never blocks on a full pipe.
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("piped");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
                if s.len() > 16 * 1024 {
                    let cut = s.len() - 8 * 1024;
                    let cut = (cut..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(s.len());
                    s.drain(..cut);
                }
            }
        });
        let started = Instant::now();
        let mut server = ScratchServer { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)), collected, stderr, dir };
        loop {
            if let Some(listening) = Listening::read(&ready) {
                server.addr = listening.public;
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("the server exited ({status}) before serving: {}", server.stderr_tail());
            }
            if started.elapsed() >= timeout {
                bail!("the server did not start within {} s: {}", timeout.as_secs(), server.stderr_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr_tail(&self) -> String {
        let s = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        let t = s.trim();
        if t.is_empty() {
            "(no output)".into()
        } else {
            t.to_string()
        }
    }

    pub fn scratch_dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGTERM (the server flushes, fsyncs and seals its segments), then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) -> bool {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for ScratchServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A view of the site's `dist/` in `to`: every entry a symlink to the real one, except the
/// manifest, whose stock caps the server reads (the collector takes them from the manifest)
/// are raised to [`REHEARSAL_STOCK`], so that the rehearsal never sells the site out.
fn scratch_dist(site: &Site, to: &Path) -> anyhow::Result<PathBuf> {
    let real = std::fs::canonicalize(site.output_dir()).with_context(|| format!("{}", site.output_dir().display()))?;
    let mut manifest = crate::manifest::Manifest::load(&real)?;
    for p in manifest.catalog.iter_mut().filter(|p| p.stock.is_some()) {
        p.stock = Some(REHEARSAL_STOCK as u64);
    }
    let manifest_dir = Path::new(crate::manifest::MANIFEST_PATH).parent().expect("the manifest is in a folder");
    std::fs::create_dir_all(to.join(manifest_dir)).with_context(|| format!("{}", to.display()))?;
    for entry in std::fs::read_dir(&real).with_context(|| format!("{}", real.display()))? {
        let entry = entry?;
        if Path::new(&entry.file_name()) != manifest_dir {
            std::os::unix::fs::symlink(entry.path(), to.join(entry.file_name()))
                .with_context(|| format!("linking {}", entry.path().display()))?;
        }
    }
    std::fs::write(to.join(crate::manifest::MANIFEST_PATH), manifest.to_json())
        .context("writing the scratch manifest")?;
    Ok(to.to_path_buf())
}

/// The site's config, pointed at its built `dist/` and a scratch collected folder, with what
/// would distort a rehearsal from one loopback address turned off: per-IP rate limits, a
/// client-IP header, stock caps that would sell out mid-run, production-mode key checks.
fn scratch_config(site: &Site, dist: &Path, collected: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(&site.config_path)
        .with_context(|| format!("reading {}", site.config_path.display()))?;
    let mut doc: toml::Table = text.parse().with_context(|| format!("parsing {}", site.config_path.display()))?;
    let table = |doc: &mut toml::Table, name: &str| -> toml::Table {
        match doc.remove(name) {
            Some(toml::Value::Table(t)) => t,
            _ => toml::Table::new(),
        }
    };
    let mut build = table(&mut doc, "build");
    build.insert("output_dir".into(), dist.display().to_string().into());
    doc.insert("build".into(), build.into());

    let mut collect = table(&mut doc, "collect");
    collect.insert("dir".into(), collected.display().to_string().into());
    collect.insert("production".into(), false.into());
    let mut key = [0u8; 16];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness for the scratch signing key: {e}"))?;
    collect.insert("signing_key".into(), key.iter().map(|b| format!("{b:02x}")).collect::<String>().into());
    collect.insert("signing_key_env".into(), "COFFERDAM_REHEARSAL_UNSET".into());
    collect.insert("stock_share".into(), 1.0.into());
    doc.insert("collect".into(), collect.into());

    let mut server = table(&mut doc, "server");
    server.remove("rate_limit_per_ip");
    server.remove("client_ip_header");
    doc.insert("server".into(), server.into());

    if let Some(toml::Value::Array(catalog)) = doc.get_mut("catalog") {
        for p in catalog.iter_mut().filter_map(|p| p.as_table_mut()) {
            if p.contains_key("stock") {
                p.insert("stock".into(), REHEARSAL_STOCK.into());
            }
        }
    }
    Ok(toml::to_string(&doc)?)
}
