//! Large media: files over `server.stream_threshold_bytes` stream from disk with `Range` support.

use crate::support::*;
use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

/// 3 MB, three times the default threshold; not a multiple of the 64 KiB read chunk.
const VIDEO_LEN: usize = 3_000_001;

/// Deterministic bytes that no compressor or off-by-one could pass off as right.
fn video_bytes() -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..VIDEO_LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// The example site with `content/launch-video.mp4`, built; returns the video's URL path.
fn site_with_video() -> (tempfile::TempDir, String) {
    let site = example_site();
    std::fs::write(site.path().join("content/launch-video.mp4"), video_bytes()).unwrap();
    build(site.path());
    let m = cofferdam::manifest::Manifest::load(&site.path().join("dist")).unwrap();
    let path = format!("/{}", m.assets["launch-video.mp4"]);
    (site, path)
}

/// Starts `cofferdam serve` like [`Server::start`] but keeps its start-up line.
fn start_and_read_startup_line(dir: &Path) -> (Server, String) {
    let mut server = Server::spawn(dir, &[], std::process::Stdio::piped());
    let stdout = server.child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(20)).expect("no start-up line within 20 s");
    (server, line)
}

#[tokio::test]
async fn large_video_is_served_whole_with_accept_ranges() {
    let (site, path) = site_with_video();
    let s = Server::start(site.path());
    let r = get(&s.url(&path), &[("accept-encoding", "br, gzip")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "accept-ranges"), "bytes");
    assert_eq!(header(&r, "content-type"), "video/mp4");
    assert_eq!(header(&r, "content-length"), VIDEO_LEN.to_string());
    assert_eq!(header(&r, "cache-control"), "public, max-age=31536000, immutable");
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    assert!(header(&r, "etag").starts_with('"'), "strong ETag: {}", header(&r, "etag"));
    assert!(r.headers().get("content-encoding").is_none(), "media has no compressed twin");
    assert!(r.headers().get("vary").is_none());
    assert!(r.headers().get("content-range").is_none());
    assert!(r.bytes().await.unwrap().as_ref() == video_bytes().as_slice(), "body differs from the file");
}

#[tokio::test]
async fn video_ranges_give_206_with_exactly_those_bytes() {
    let (site, path) = site_with_video();
    let s = Server::start(site.path());
    let video = video_bytes();
    let total = VIDEO_LEN;
    let cases = [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-", 1000, total - 1),
        ("bytes=-500", total - 500, total - 1),
        ("bytes=65530-65545", 65530, 65545),
        ("bytes=2999990-99999999", 2999990, total - 1),
    ];
    for (range, first, last) in cases {
        let r = get(&s.url(&path), &[("range", range)]).await;
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(header(&r, "content-range"), format!("bytes {first}-{last}/{total}"), "{range}");
        assert_eq!(header(&r, "content-length"), (last - first + 1).to_string(), "{range}");
        assert_eq!(header(&r, "content-type"), "video/mp4", "{range}");
        assert_eq!(header(&r, "accept-ranges"), "bytes", "{range}");
        assert!(!header(&r, "etag").is_empty(), "{range}");
        let body = r.bytes().await.unwrap();
        assert!(body.as_ref() == &video[first..=last], "{range}: wrong bytes ({} of them)", body.len());
    }
}

#[tokio::test]
async fn unsatisfiable_range_gets_416_and_odd_ranges_get_the_whole_file() {
    let (site, path) = site_with_video();
    let s = Server::start(site.path());
    let r = get(&s.url(&path), &[("range", "bytes=99999999-")]).await;
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "content-range"), format!("bytes */{VIDEO_LEN}"));
    assert!(r.bytes().await.unwrap().is_empty());
    for range in ["bytes=0-1,5-9", "bytes=9-5", "bytes=abc", "lines=1-2"] {
        let r = get(&s.url(&path), &[("range", range)]).await;
        assert_eq!(r.status(), 200, "{range} is ignored");
        assert_eq!(header(&r, "content-length"), VIDEO_LEN.to_string(), "{range}");
        assert_eq!(r.bytes().await.unwrap().len(), VIDEO_LEN, "{range}");
    }
}

#[tokio::test]
async fn if_range_and_if_none_match_use_the_videos_etag() {
    let (site, path) = site_with_video();
    let s = Server::start(site.path());
    let etag = header(&get(&s.url(&path), &[("range", "bytes=0-0")]).await, "etag").to_string();
    let r = get(&s.url(&path), &[("range", "bytes=10-19"), ("if-range", &etag)]).await;
    assert_eq!(r.status(), 206);
    assert!(r.bytes().await.unwrap().as_ref() == &video_bytes()[10..20]);
    let r = get(&s.url(&path), &[("range", "bytes=10-19"), ("if-range", "\"an-old-version\"")]).await;
    assert_eq!(r.status(), 200, "a changed file is sent whole");
    assert_eq!(r.bytes().await.unwrap().len(), VIDEO_LEN);
    let r = get(&s.url(&path), &[("if-none-match", &etag)]).await;
    assert_eq!(r.status(), 304);
    assert!(r.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn head_of_the_video_has_its_length_and_no_body() {
    let (site, path) = site_with_video();
    let s = Server::start(site.path());
    for headers in [vec![], vec![("range", "bytes=0-99")]] {
        let r = client().head(s.url(&path)).headers(to_map(&headers)).send().await.unwrap();
        assert_eq!(r.status(), 200, "HEAD ignores Range: {headers:?}");
        assert_eq!(header(&r, "content-length"), VIDEO_LEN.to_string());
        assert_eq!(header(&r, "accept-ranges"), "bytes");
        assert!(r.bytes().await.unwrap().is_empty());
    }
}

fn to_map(headers: &[(&str, &str)]) -> reqwest::header::HeaderMap {
    headers.iter().map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap())).collect()
}

#[tokio::test]
async fn video_gone_from_disk_gets_the_sites_404_page_without_a_path() {
    let (site, path) = site_with_video();
    let s = Server::start(site.path());
    let file = site.path().join("dist").join(&path[1..]);
    std::fs::remove_file(&file).unwrap();
    let r = get(&s.url(&path), &[]).await;
    assert_eq!(r.status(), 404);
    let body = r.text().await.unwrap();
    assert_eq!(body, std::fs::read_to_string(site.path().join("dist/404.html")).unwrap());
    // Replaced by another file under the same name: its bytes would not match our ETag.
    std::fs::write(&file, b"not the video").unwrap();
    let r = get(&s.url(&path), &[("range", "bytes=0-3")]).await;
    assert_eq!(r.status(), 500);
    let body = r.text().await.unwrap();
    assert!(!body.contains(site.path().to_str().unwrap()) && !body.contains("launch-video"), "{body}");
}

#[tokio::test]
async fn startup_line_counts_memory_and_streamed_files_truthfully() {
    let (site, path) = site_with_video();
    let m = cofferdam::manifest::Manifest::load(&site.path().join("dist")).unwrap();
    let small: u64 = m.files.iter().filter(|f| f.size <= 1024 * 1024).map(|f| f.size).sum();
    let (_s, line) = start_and_read_startup_line(site.path());
    let expected = format!("({} files, {small} bytes in memory, 1 streamed from disk)", m.files.len());
    assert!(line.contains(&expected), "{expected} not in: {line}");

    // Raised threshold: the video lives in memory, and its ranges come from the same code.
    edit(
        site.path(),
        "cofferdam.toml",
        "max_connections = 20000",
        "max_connections = 20000\nstream_threshold_bytes = 4000000",
    );
    let (s, line) = start_and_read_startup_line(site.path());
    let all = small + VIDEO_LEN as u64;
    let expected = format!("({} files, {all} bytes in memory, 0 streamed from disk)", m.files.len());
    assert!(line.contains(&expected), "{expected} not in: {line}");
    let r = get(&s.url(&path), &[("range", "bytes=-500")]).await;
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "content-range"), format!("bytes {}-{}/{VIDEO_LEN}", VIDEO_LEN - 500, VIDEO_LEN - 1));
    assert!(r.bytes().await.unwrap().as_ref() == &video_bytes()[VIDEO_LEN - 500..]);
}
