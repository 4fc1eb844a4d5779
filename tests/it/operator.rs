//! What the person running cofferdam sees: `--site` on either side of the command, a clear
//! word outside a site folder, a summary line while orders flow, and log files without colour
//! codes.

use crate::support::*;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn site_is_taken_before_or_after_the_command() {
    let site = example_site();
    let elsewhere = tempfile::tempdir().unwrap();
    let path = site.path().to_str().unwrap();
    for args in [["--site", path, "build"], ["build", "--site", path]] {
        let out = run(elsewhere.path(), &args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).contains(&format!("into {path}/dist")), "{args:?}: {}", stdout(&out));
    }
}

#[test]
fn outside_a_site_folder_the_error_points_at_init_and_site() {
    let empty = tempfile::tempdir().unwrap();
    for command in ["build", "serve", "stats", "check", "import"] {
        let out = run(empty.path(), &[command]);
        assert_eq!(out.status.code(), Some(1), "{command}");
        let err = stderr(&out);
        assert!(err.contains("no cofferdam.toml in the current folder"), "{command}: {err}");
        assert!(err.contains("cofferdam init DIR") && err.contains("--site DIR"), "{command}: {err}");
        assert!(!err.contains("No such file or directory") && !err.contains("os error"), "{command}: {err}");
    }
    let out = run(empty.path(), &["stats", "--site", "no-such-dir"]);
    assert!(stderr(&out).contains("no cofferdam.toml in no-such-dir"), "{}", stderr(&out));
}

#[test]
fn a_summary_line_while_orders_flow_and_no_colour_in_a_log_file() {
    let site = example_site();
    edit(site.path(), "cofferdam.toml", "production = false", "production = false\nlog_every_secs = 1");
    build(site.path());
    let log = site.path().join("serve.log");
    let port = free_port();
    let mut child = Command::new(bin())
        .args([
            "serve",
            "--no-build",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .current_dir(site.path())
        .env("COFFERDAM_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for i in 0..3 {
            let origin = format!("http://127.0.0.1:{port}");
            let r = client()
                .post(format!("{origin}/submit/order"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("origin", origin)
                .body(order_body(&format!("Logged {i}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 303);
        }
    });
    let read = || {
        let mut text = String::new();
        std::fs::File::open(&log).unwrap().read_to_string(&mut text).unwrap();
        text
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !read().contains("orders: 3 in 1s (order 3) · stock left AURORA 20000, AURORA-EB 4997, BULB-2PK 3000") {
        assert!(Instant::now() < deadline, "no summary line: {}", read());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Idle: no more summary lines.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(read().matches("orders: ").count(), 1, "{}", read());
    let _ = child.kill();
    let _ = child.wait();
    let text = read();
    assert!(!text.contains('\u{1b}'), "colour codes in a log file: {text:?}");
}
