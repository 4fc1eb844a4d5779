//! One open segment file: appended to by the writer, fsynced per batch, sealed by renaming
//! away its `.open` suffix. A sealed segment is never written again.

use crate::config::{Form, StoreFormat};
use crate::record::{CsvCodec, SegmentName};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct Segment {
    pub path: PathBuf,
    file: File,
    /// Bytes known to be written and synced: where a failed batch is cut back to.
    pub len: u64,
    /// Bytes appended, synced or not: what `len` becomes at the next sync, counted here rather
    /// than asked of the file system (a `statx` a batch).
    appended: u64,
    pub opened: Instant,
    /// The CSV header, for CSV segments.
    pub header: Option<Vec<String>>,
}

impl Segment {
    /// Creates `dir/{node}-{first_seq}.{ext}.open` (a CSV one starts with its header row).
    pub fn create(
        dir: &Path,
        node: &str,
        first_seq: u64,
        format: StoreFormat,
        form: &Form,
    ) -> std::io::Result<Segment> {
        let header = (format == StoreFormat::Csv).then(|| (CsvCodec::header(form), CsvCodec::header_line(form)));
        Segment::create_with(dir, node, first_seq, format, header)
    }

    /// Creates a segment, written with `header` (cells and line) first when it has one.
    pub fn create_with(
        dir: &Path,
        node: &str,
        first_seq: u64,
        format: StoreFormat,
        header: Option<(Vec<String>, Vec<u8>)>,
    ) -> std::io::Result<Segment> {
        std::fs::create_dir_all(dir)?;
        let name = SegmentName { node: node.to_string(), first_seq, format, sealed: false };
        let path = dir.join(name.file_name());
        let mut file = OpenOptions::new().create_new(true).append(true).open(&path)?;
        let mut len = 0;
        let header = match header {
            Some((cells, line)) => {
                file.write_all(&line)?;
                len = line.len() as u64;
                Some(cells)
            }
            None => None,
        };
        file.sync_data()?;
        sync_dir(dir)?;
        Ok(Segment { path, file, len, appended: len, opened: Instant::now(), header })
    }

    pub fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)?;
        self.appended += bytes.len() as u64;
        Ok(())
    }

    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()?;
        self.len = self.appended;
        Ok(())
    }

    /// Cuts a refused batch back out, synced or not (a sync failed elsewhere in the batch, or
    /// the stream refused it): the file ends at `len` again, so nothing unacknowledged stays
    /// behind to be imported later.
    pub fn cut_to(&mut self, len: u64) -> std::io::Result<()> {
        self.file.set_len(len)?;
        self.file.sync_data()?;
        self.len = len;
        self.appended = len;
        Ok(())
    }

    /// fsync, rename to the sealed name, fsync the folder.
    pub fn seal(self) -> std::io::Result<PathBuf> {
        self.file.sync_data()?;
        seal_path(&self.path)
    }
}

/// Renames `x.jsonl.open` to `x.jsonl` durably.
pub fn seal_path(path: &Path) -> std::io::Result<PathBuf> {
    let sealed = PathBuf::from(path.to_string_lossy().trim_end_matches(crate::record::OPEN_SUFFIX).to_string());
    std::fs::rename(path, &sealed)?;
    if let Some(dir) = sealed.parent() {
        sync_dir(dir)?;
    }
    Ok(sealed)
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
