//! `.br` and `.gz` twins of every text file, so serving never compresses.

use super::output::Output;
use super::BuildError;
use crate::config::BuildConfig;
use crate::manifest::{FileEntry, Twins};
use rayon::prelude::*;
use std::io::Write;

/// Files below this size are not worth a twin: the headers outweigh the saving.
const MIN_SIZE: u64 = 256;

pub fn is_text(content_type: &str) -> bool {
    content_type.starts_with("text/")
        || content_type.starts_with("application/javascript")
        || content_type.starts_with("application/json")
        || content_type.starts_with("application/xml")
        || content_type.starts_with("image/svg+xml")
        || content_type.starts_with("application/manifest+json")
}

/// The settings the twins are made with, as the manifest records them (`None`: no twins).
pub fn settings(config: &BuildConfig) -> Option<Twins> {
    config.precompress.then_some(Twins { brotli_quality: config.brotli_quality, gzip_level: config.gzip_level })
}

/// Writes `path.br` and `path.gz` for each text file of `out` (in parallel), or keeps those
/// of the previous output, and records their sizes.
pub fn twins(out: &Output, files: Vec<FileEntry>, config: &BuildConfig) -> Result<Vec<FileEntry>, BuildError> {
    if !config.precompress {
        return Ok(files);
    }
    files
        .into_par_iter()
        .map(|entry| {
            if !wants_twins(&entry) {
                return Ok(entry);
            }
            if let Some(kept) = kept_twins(out, &entry, config) {
                return Ok(kept);
            }
            let path = out.dir().join(&entry.path);
            let bytes = std::fs::read(&path).map_err(BuildError::io(&path))?;
            make_twins(out, entry, &bytes, config)
        })
        .collect()
}

fn wants_twins(entry: &FileEntry) -> bool {
    is_text(&entry.content_type) && entry.size >= MIN_SIZE
}

/// Writes the twins of the file `entry` describes, whose bytes are `bytes`, when it is worth
/// it and the site wants them (or keeps the previous output's); returns the entry with their
/// sizes.
pub fn write_twins(
    out: &Output,
    entry: FileEntry,
    bytes: &[u8],
    config: &BuildConfig,
) -> Result<FileEntry, BuildError> {
    if !config.precompress || !wants_twins(&entry) {
        return Ok(entry);
    }
    if let Some(kept) = kept_twins(out, &entry, config) {
        return Ok(kept);
    }
    make_twins(out, entry, bytes, config)
}

/// The entry with the sizes of the twins the previous output left, when they can stay: the
/// previous manifest describes a file of the same size and hash with twins, made with the same
/// settings, and both twins are still there at the sizes it recorded (each a regular file
/// with one link, so nobody else can have changed them through another name).
fn kept_twins(out: &Output, entry: &FileEntry, config: &BuildConfig) -> Option<FileEntry> {
    let previous = out.previous()?;
    if previous.twins != settings(config) {
        return None;
    }
    let before = previous.file(&entry.path)?;
    if before.size != entry.size || before.hash != entry.hash {
        return None;
    }
    let (br, gz) = (before.br_size?, before.gz_size?);
    if out.kept_size(&format!("{}.br", entry.path)) != Some(br)
        || out.kept_size(&format!("{}.gz", entry.path)) != Some(gz)
    {
        return None;
    }
    Some(FileEntry { br_size: Some(br), gz_size: Some(gz), ..entry.clone() })
}

fn make_twins(out: &Output, mut entry: FileEntry, bytes: &[u8], config: &BuildConfig) -> Result<FileEntry, BuildError> {
    let br = brotli_bytes(bytes, config.brotli_quality);
    let gz = gzip_bytes(bytes, config.gzip_level);
    out.write(&format!("{}.br", entry.path), &br)?;
    out.write(&format!("{}.gz", entry.path), &gz)?;
    entry.br_size = Some(br.len() as u64);
    entry.gz_size = Some(gz.len() as u64);
    Ok(entry)
}

/// Brotli at the configured quality (default 5).
///
/// Why 5: the `brotli` crate gives quality 9 its H9 hasher whatever the input size, and H9's
/// tables are 32 MiB, freshly allocated and page-faulted for every file; qualities 7 and 8
/// allocate 16 MiB. For a site of small HTML pages that allocation, not the compression,
/// is the build (kernel time in page faults). Measured on 10,000 generated pages (29.6 MB of
/// HTML, 2 cores, bench/build.sh): q9 24 s for 10.92 MB of .br, q8 6.1 s / 10.91 MB,
/// q7 2.4 s / 10.91 MB, q6 1.1 s / 10.94 MB, q5 0.9 s / 10.94 MB, q4 0.9 s / 11.59 MB.
/// So 5 costs 0.2% in bytes against 9, and 4 would cost 6%; 10 and 11 save 6-9% more
/// at 12-55 s, for a site that ships few, large files.
pub fn brotli_bytes(input: &[u8], quality: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 3);
    let params = brotli::enc::BrotliEncoderParams { quality: quality as i32, lgwin: 22, ..Default::default() };
    brotli::BrotliCompress(&mut &input[..], &mut out, &params).expect("compressing in memory cannot fail");
    out
}

/// Gzip with no file name and mtime 0 in the header, so builds are byte-identical.
pub fn gzip_bytes(input: &[u8], level: u32) -> Vec<u8> {
    let mut enc =
        flate2::GzBuilder::new().mtime(0).write(Vec::with_capacity(input.len() / 3), flate2::Compression::new(level));
    enc.write_all(input).expect("compressing in memory cannot fail");
    enc.finish().expect("compressing in memory cannot fail")
}
