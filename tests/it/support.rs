//! Shared test helpers: a scratch copy of the example site, the real binary, free ports.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root, where the example site lives.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `cofferdam` binary cargo built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cofferdam"))
}

/// A fresh copy of the example site (config, content, templates) in a temporary folder, so a
/// test can build, serve and collect without touching the repository or other tests.
pub fn example_site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = repo_root();
    std::fs::copy(root.join("cofferdam.toml"), dir.path().join("cofferdam.toml")).unwrap();
    copy_dir(&root.join("content"), &dir.path().join("content"));
    copy_dir(&root.join("templates"), &dir.path().join("templates"));
    dir
}

pub fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Runs `cofferdam ARGS` in `dir` and returns its output.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin()).args(args).current_dir(dir).env("COFFERDAM_LOG", "warn").output().expect("run cofferdam")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A loopback port for a server a test starts (and may restart on the same port), free a moment
/// ago. Taken below the kernel's ephemeral range (32768 and up here), from a counter: a port
/// the kernel hands out (`bind(0)`, or any outgoing connection's local port) could be taken by
/// another test's client before the server binds it, or between its kill and its restart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static TAKEN: AtomicU32 = AtomicU32::new(0);
    // Start where another run on this machine (another checkout) is unlikely to be.
    let start = std::process::id() % SPAN;
    loop {
        let port = (FIRST + (start + TAKEN.fetch_add(1, Ordering::SeqCst)) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// `cofferdam serve --no-build` of the site built in `dir`, run in this process on port 0: for
/// tests of what a request gets (headers, pages, limits), where the process boundary is not
/// the point. `addr` is where it listens.
pub async fn serve_here(dir: &Path) -> cofferdam::serve::Serving {
    let args = cofferdam::serve::ServeArgs {
        site: dir.to_path_buf(),
        listen: Some("127.0.0.1:0".into()),
        admin: Some("127.0.0.1:0".into()),
        no_build: true,
        ready_file: None,
    };
    cofferdam::serve::start(args).await.expect("serve in process")
}

/// Replaces `from` by `to` in a file of the site (a test's way to break one thing).
pub fn edit(site: &Path, file: &str, from: &str, to: &str) {
    let path = site.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} does not contain {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

/// Builds the site in `dir` with the real binary, panicking with its stderr on failure.
pub fn build(dir: &Path) {
    let out = run(dir, &["build"]);
    assert!(out.status.success(), "build failed: {}", stderr(&out));
}

/// A `cofferdam serve` child process on loopback ports; killed when dropped.
pub struct Server {
    pub child: std::process::Child,
    pub port: u16,
    pub admin: u16,
}

impl Server {
    /// Serves the already built site in `dir` (`--no-build`) and waits until it accepts.
    pub fn start(dir: &Path) -> Server {
        Self::start_with(dir, &[])
    }

    pub fn start_with(dir: &Path, env: &[(&str, &str)]) -> Server {
        Self::start_logged(dir, env, std::process::Stdio::inherit())
    }

    /// Serves the built site in `dir` on port 0 (both addresses), reads the bound addresses
    /// back from the start-up line and returns once it is serving; its log goes to `stderr`.
    pub fn start_logged(dir: &Path, env: &[(&str, &str)], stderr: impl Into<std::process::Stdio>) -> Server {
        use std::io::BufRead;
        let mut child = Command::new(bin())
            .args(["serve", "--no-build", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .current_dir(dir)
            .env("COFFERDAM_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn cofferdam serve");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = match lines.next() {
            Some(Ok(line)) => line,
            _ => {
                let _ = child.kill();
                panic!("cofferdam serve exited before its start-up line: {:?}", child.wait());
            }
        };
        // `… on http://127.0.0.1:PORT  admin http://127.0.0.1:PORT/  collecting into …`
        let port_after = |marker: &str| -> u16 {
            let addr = line.split(marker).nth(1).and_then(|r| r.split(['/', ' ']).next()).unwrap_or("");
            addr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no {marker:?} in {line:?}"))
        };
        let (port, admin) = (port_after(" on http://"), port_after(" admin http://"));
        // Keep reading, so the server never writes to a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Server { child, port, admin }
    }

    /// Serves the built site in `dir` with its error log (stderr) going to the file `log`.
    pub fn start_logging(dir: &Path, env: &[(&str, &str)], log: &Path) -> Server {
        Self::start_logged(dir, env, std::fs::File::create(log).unwrap())
    }

    /// Starts `cofferdam serve --no-build` on free loopback ports without waiting for it.
    pub fn spawn(dir: &Path, env: &[(&str, &str)], stdout: std::process::Stdio) -> Server {
        Self::spawn_with(dir, env, stdout, std::process::Stdio::inherit())
    }

    fn spawn_with(
        dir: &Path,
        env: &[(&str, &str)],
        stdout: std::process::Stdio,
        stderr: std::process::Stdio,
    ) -> Server {
        let port = free_port();
        let admin = free_port();
        let child = Command::new(bin())
            .args([
                "serve",
                "--no-build",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--admin",
                &format!("127.0.0.1:{admin}"),
            ])
            .current_dir(dir)
            .env("COFFERDAM_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn cofferdam serve");
        Server { child, port, admin }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for the process to exit (bounded) and returns its status.
    pub fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "server did not exit within {secs} s");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GET with extra headers, redirects not followed.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// A response header as text, or "" when absent.
pub fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers().get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

/// An HTTP client that does not follow redirects, as a test must see the 303 itself.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap()
}

/// Every file below `dir` with its bytes, for byte-for-byte comparisons.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().strip_prefix(dir).unwrap().display().to_string(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// A valid order post for the example site.
pub fn order_body(name: &str) -> String {
    format!(
        "name={}&email=buyer%40example.org&street=Hauptstr.+1&postcode=10115&city=Berlin&country=DE&sku=AURORA-EB&quantity=1",
        name.replace(' ', "+")
    )
}

/// The `name` field of every record under the site's `collected/`, in file order.
pub fn recorded_names(site: &Path) -> Vec<String> {
    records(&site.join("collected")).iter().map(|r| r.fields["name"].clone()).collect()
}

/// All records (good ones) under `collected`, in file order.
pub fn records(collected: &Path) -> Vec<cofferdam::record::Record> {
    let mut out = Vec::new();
    for seg in cofferdam::record::list_segments(collected).unwrap() {
        if seg.name.format != cofferdam::config::StoreFormat::Jsonl {
            continue;
        }
        for r in cofferdam::record::read_segment(&seg.path).unwrap() {
            out.push(r.expect("no bad lines").1);
        }
    }
    out
}

/// A fresh, empty database `cd_{name}` on the server behind `admin_url` (a PostgreSQL or MySQL URL
/// naming any database the user may connect to), dropped first if a crashed run left it; returns its URL.
pub async fn scratch_database(admin_url: &str, name: &str) -> String {
    use sqlx::any::AnyPoolOptions;
    sqlx::any::install_default_drivers();
    let db = format!("cd_{name}");
    let admin = AnyPoolOptions::new().max_connections(1).connect(admin_url).await.unwrap();
    let force = if admin_url.starts_with("postgres") { " WITH (FORCE)" } else { "" };
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {db}{force}")).execute(&admin).await.unwrap();
    sqlx::raw_sql(&format!("CREATE DATABASE {db}")).execute(&admin).await.unwrap();
    admin.close().await;
    format!("{}/{db}", admin_url.rsplit_once('/').unwrap().0)
}

/// Runs an SQL file statement by statement on one connection, as `mysql < file` or `psql -f file`
/// would: `--` comment lines are skipped and a statement ends with a line ending in `;` (the shop
/// fixtures keep every value holding a `;` off line ends). A failing statement panics with the file,
/// its line and the database's message.
pub async fn load_sql_file(conn: &mut sqlx::AnyConnection, file: &Path) {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let (mut stmt, mut first_line) = (String::new(), 0);
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("--") || (stmt.is_empty() && line.trim().is_empty()) {
            continue;
        }
        if stmt.is_empty() {
            first_line = n + 1;
        }
        stmt.push_str(line);
        stmt.push('\n');
        if line.trim_end().ends_with(';') {
            sqlx::raw_sql(&stmt)
                .execute(&mut *conn)
                .await
                .unwrap_or_else(|e| panic!("{}:{first_line}: {e}\n{stmt}", file.display()));
            stmt.clear();
        }
    }
    assert!(stmt.trim().is_empty(), "{}: no ';' after the statement at line {first_line}", file.display());
}

/// An `LD_PRELOAD` library that makes `fsync`/`fdatasync` fail, for real, in the process it is
/// loaded into: on files whose path contains `$FAULT_SYNC_MATCH`, while the file named by
/// `$FAULT_SYNC_WHEN` exists, with errno `$FAULT_SYNC_ERRNO` (default EIO). Compiled once
/// with `cc`.
pub fn sync_fault_shim() -> PathBuf {
    static SHIM: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    SHIM.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("cofferdam-shim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("sync_fault.c");
        std::fs::write(&src, SYNC_FAULT_C).unwrap();
        let lib = dir.join("sync_fault.so");
        let out = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&lib)
            .arg(&src)
            .arg("-ldl")
            .output()
            .expect("cc is needed for the fault-injection tests");
        assert!(out.status.success(), "cc: {}", String::from_utf8_lossy(&out.stderr));
        lib
    })
    .clone()
}

const SYNC_FAULT_C: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int injected_errno(int fd) {
    const char *match = getenv("FAULT_SYNC_MATCH");
    const char *when = getenv("FAULT_SYNC_WHEN");
    if (!match || !when || access(when, F_OK) != 0) return 0;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return 0;
    path[n] = 0;
    if (!strstr(path, match)) return 0;
    const char *e = getenv("FAULT_SYNC_ERRNO");
    return e ? atoi(e) : EIO;
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    int e = injected_errno(fd);
    if (e) { errno = e; return -1; }
    return real(fd);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    int e = injected_errno(fd);
    if (e) { errno = e; return -1; }
    return real(fd);
}
"#;
