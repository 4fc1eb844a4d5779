//! The output folder: written off to the side, swapped into place, and the previous one kept
//! for the next build to write over.
//!
//! On a real disk, creating files and folders is most of a build (bench/README.md: on ext4
//! here `openat` took ~160 µs and `mkdir` ~300 µs a call, more than rendering the page). So the
//! output a build replaces is not deleted: it is kept next to it as
//! `.cofferdam-previous-<name>` (`.cofferdam-previous-dist`), and the next build writes into
//! that folder. A file whose bytes are already there is left alone, any other file is
//! replaced, files the build no longer makes are deleted, then the folder is swapped into
//! place with two renames, as a fresh one would be.
//!
//! What was left there is checked, never trusted:
//! - a file is never written through: a changed file is deleted and created anew, so a hard
//!   link to it elsewhere, or a process that has it open, keeps the old bytes;
//! - symlinks (and sockets, FIFOs…) are deleted before anything is written, and a file with
//!   more than one link is replaced even when its bytes are right;
//! - whatever else holds the kept folder's place (a file, a symlink, a folder this process
//!   cannot move or read) is set aside, and the build starts from an empty folder.
//!
//! The folder being written lives inside a `.cofferdam-build-*` folder that is deleted when the
//! build fails, so a half-written folder is never kept, and `dist/` is left as it was.

use super::{relative, BuildError};
use crate::manifest::{Manifest, MANIFEST_PATH};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The folder a build writes into, until [`Output::swap_into_place`].
pub struct Output {
    /// `.cofferdam-build-*` next to the output: holds the folder being written, and whatever is
    /// set aside; deleted with its contents when dropped (a failed build).
    holder: tempfile::TempDir,
    /// The folder being written, inside `holder`.
    dir: PathBuf,
    /// What the previous output left in `dir`, when it is being written over.
    kept: Option<Kept>,
}

/// The previous output, as found before the build wrote anything.
struct Kept {
    /// Every folder and regular file in it, by `/`-separated path.
    found: HashMap<String, Found>,
    /// Its manifest, when it had a readable one of this version.
    manifest: Option<Manifest>,
}

#[derive(Debug, Clone, Copy)]
enum Found {
    Dir,
    /// `linked`: more than one name points at it, so its bytes are not the build's to keep.
    File {
        size: u64,
        linked: bool,
    },
}

impl Found {
    /// Deletes what the previous output had at `path`.
    fn remove(&self, path: &Path) -> Result<(), BuildError> {
        match self {
            Found::Dir => remove_dir_all(path),
            Found::File { .. } => remove_file(path),
        }
    }
}

/// Where the output `dist` keeps its previous self: `.cofferdam-previous-dist` beside it.
pub fn previous_path(output: &Path) -> Option<PathBuf> {
    let name = output.file_name()?.to_str()?;
    Some(parent_of(output).join(format!(".cofferdam-previous-{name}")))
}

/// The folder `output` is in (`.` for a bare name).
pub fn parent_of(output: &Path) -> PathBuf {
    match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl Output {
    /// A folder to build `output` into: the previous output when one was kept and is usable,
    /// an empty folder otherwise.
    pub fn prepare(output: &Path) -> Result<Output, BuildError> {
        let parent = parent_of(output);
        std::fs::create_dir_all(&parent).map_err(BuildError::io(&parent))?;
        let holder = tempfile::Builder::new()
            .prefix(".cofferdam-build-")
            .tempdir_in(&parent)
            .map_err(BuildError::io(&parent))?;
        let claimed = holder.path().join("previous");
        if let Some(kept) = previous_path(output).and_then(|previous| claim(&previous, &claimed)) {
            return Ok(Output { holder, dir: claimed, kept: Some(kept) });
        }
        // Nothing usable was kept: if something was claimed but could not be read, it stays
        // in `holder` (deleted with it) and the build starts afresh beside it.
        let dir = holder.path().join("fresh");
        std::fs::create_dir(&dir).map_err(BuildError::io(&dir))?;
        Ok(Output { holder, dir, kept: None })
    }

    /// The folder being written.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest of the previous output being written over, if any.
    pub fn previous(&self) -> Option<&Manifest> {
        self.kept.as_ref()?.manifest.as_ref()
    }

    /// The size of the file `rel` as the previous output left it, when it is a regular file
    /// with one link (asked about twins, before the build decides whether to keep them).
    pub fn kept_size(&self, rel: &str) -> Option<u64> {
        match self.kept.as_ref()?.found.get(rel) {
            Some(Found::File { size, linked: false }) => Some(*size),
            _ => None,
        }
    }

    /// Makes `rel` hold `bytes`: left alone when it already does (a file of the previous
    /// output with one link), created anew otherwise. Safe to call from several threads for
    /// different files.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> Result<(), BuildError> {
        let path = self.dir.join(rel);
        match self.kept.as_ref().and_then(|k| k.found.get(rel)) {
            Some(Found::File { size, linked: false }) if *size == bytes.len() as u64 && holds(&path, bytes) => {
                return Ok(());
            }
            Some(found) => found.remove(&path)?,
            None => {}
        }
        self.create(rel, &path, bytes)
    }

    /// Creates `rel` anew even when the previous output has the same bytes, so its mtime is
    /// this build's (the manifest: `check` and `serve` compare sources against it).
    pub fn write_anew(&self, rel: &str, bytes: &[u8]) -> Result<(), BuildError> {
        let path = self.dir.join(rel);
        if let Some(found) = self.kept.as_ref().and_then(|k| k.found.get(rel)) {
            found.remove(&path)?;
        }
        self.create(rel, &path, bytes)
    }

    /// Creates the file (never opening an existing one) and the folders it needs.
    fn create(&self, rel: &str, path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
        self.make_folder_for(rel, path)?;
        let attempt = || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
            file.write_all(bytes)
        };
        match attempt() {
            // The same name written twice in one build (a page over an asset of that name):
            // the last one wins, as it always did.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                remove_file(path)?;
                attempt()
            }
            other => other,
        }
        .map_err(BuildError::io(path))
    }

    fn make_folder_for(&self, rel: &str, path: &Path) -> Result<(), BuildError> {
        let (Some((folder, _)), Some(parent)) = (rel.rsplit_once('/'), path.parent()) else {
            return Ok(());
        };
        let Some(kept) = &self.kept else {
            return std::fs::create_dir_all(parent).map_err(BuildError::io(parent));
        };
        if matches!(kept.found.get(folder), Some(Found::Dir)) {
            return Ok(());
        }
        if std::fs::create_dir_all(parent).is_ok() {
            return Ok(());
        }
        // A file of the previous output where this build wants a folder: delete it (symlinks
        // were deleted before the build started, so nothing here leads elsewhere).
        let mut at = self.dir.clone();
        for part in folder.split('/') {
            at.push(part);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if !m.is_dir() => remove_file(&at)?,
                _ => {}
            }
        }
        std::fs::create_dir_all(parent).map_err(BuildError::io(parent))
    }

    /// Deletes what the previous output had and this build did not make: every file and
    /// folder that is neither in `made` nor a folder of something in it.
    pub fn finish(&self, made: &HashSet<String>) -> Result<(), BuildError> {
        let Some(kept) = &self.kept else {
            return Ok(());
        };
        let folders: HashSet<&str> = made.iter().flat_map(|p| folders_of(p)).collect();
        let stale: HashSet<&str> = kept
            .found
            .keys()
            .map(String::as_str)
            .filter(|rel| !made.contains(*rel) && !folders.contains(rel))
            .collect();
        // Deleting a folder deletes what is in it: only the outermost stale names are deleted,
        // and none inside a folder that this build replaced by a file (deleted already).
        let outermost: Vec<&str> = stale
            .iter()
            .copied()
            .filter(|rel| !folders_of(rel).any(|f| stale.contains(f) || made.contains(f)))
            .collect();
        outermost.par_iter().try_for_each(|rel| kept.found[*rel].remove(&self.dir.join(rel)))
    }

    /// Replaces `output` by the finished folder with two renames, so a failed build never
    /// touches the old one, and keeps the old one as [`previous_path`] for the next build
    /// (deletes it when that place cannot be cleared).
    pub fn swap_into_place(self, output: &Path) -> Result<(), BuildError> {
        let aside = self.holder.path().join("old");
        let keep_at = previous_path(output).filter(|p| self.clear(p));
        let old = match std::fs::symlink_metadata(output) {
            Err(_) => None,
            Ok(_) => {
                let kept = keep_at.filter(|to| std::fs::rename(output, to).is_ok());
                match kept {
                    Some(to) => Some(to),
                    None => {
                        std::fs::rename(output, &aside).map_err(BuildError::io(output))?;
                        Some(aside)
                    }
                }
            }
        };
        if let Err(e) = std::fs::rename(&self.dir, output) {
            // Put the old site back rather than leave none.
            if let Some(old) = &old {
                let _ = std::fs::rename(old, output);
            }
            return Err(BuildError::Io { path: output.to_path_buf(), source: e });
        }
        // Deletes `holder`, with the old output when it was not kept.
        drop(self.holder);
        Ok(())
    }

    /// Empties the place `path` of whatever holds it (moved into `holder`, deleted with it):
    /// whether it is free now.
    fn clear(&self, path: &Path) -> bool {
        match std::fs::symlink_metadata(path) {
            Err(e) => e.kind() == ErrorKind::NotFound,
            Ok(m) if m.is_dir() => std::fs::rename(path, self.holder.path().join("in-the-way")).is_ok(),
            Ok(_) => std::fs::remove_file(path).is_ok(),
        }
    }
}

/// Moves the kept folder `previous` to `to` (so no other build takes it too) and surveys it;
/// `None` when there is none, it is not a folder, or it cannot be moved or read.
fn claim(previous: &Path, to: &Path) -> Option<Kept> {
    if !std::fs::symlink_metadata(previous).ok()?.is_dir() {
        return None;
    }
    std::fs::rename(previous, to).ok()?;
    survey(to).ok()
}

/// Lists what `dir` holds, deleting on the way what a build never makes and must not follow:
/// symlinks, other special files, names that are not UTF-8.
fn survey(dir: &Path) -> std::io::Result<Kept> {
    let mut found = HashMap::new();
    writable(dir)?;
    let mut walk = walkdir::WalkDir::new(dir).min_depth(1).into_iter();
    while let Some(entry) = walk.next() {
        let entry = entry?;
        let kind = entry.file_type();
        if entry.file_name().to_str().is_none() {
            if kind.is_dir() {
                walk.skip_current_dir();
                std::fs::remove_dir_all(entry.path())?;
            } else {
                std::fs::remove_file(entry.path())?;
            }
            continue;
        }
        let rel = relative(dir, entry.path());
        if kind.is_dir() {
            writable(entry.path())?;
            found.insert(rel, Found::Dir);
        } else if kind.is_file() {
            let meta = entry.metadata()?;
            found.insert(rel, Found::File { size: meta.len(), linked: meta.nlink() > 1 });
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    let manifest = match found.get(MANIFEST_PATH) {
        Some(Found::File { linked: false, .. }) => Manifest::load(dir).ok(),
        _ => None,
    };
    Ok(Kept { found, manifest })
}

/// An error unless this process may create and delete names in the folder `dir`: a folder
/// it may not change makes the kept output unusable before the build starts, not halfway.
fn writable(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: `name` is a valid C string that outlives the call.
    match unsafe { libc::access(name.as_ptr(), libc::W_OK | libc::X_OK) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// The folders `rel` is in, outermost first: `a/b/c` → `a`, `a/b`.
fn folders_of(rel: &str) -> impl Iterator<Item = &str> {
    rel.match_indices('/').map(move |(i, _)| &rel[..i])
}

/// Whether the file at `path` (not a symlink) holds exactly `bytes`.
fn holds(path: &Path, bytes: &[u8]) -> bool {
    let Ok(mut file) = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path) else {
        return false;
    };
    let mut there = Vec::with_capacity(bytes.len() + 1);
    // One byte more than expected, to see a file that grew since it was surveyed.
    match (&mut file).take(bytes.len() as u64 + 1).read_to_end(&mut there) {
        Ok(_) => there == bytes,
        Err(_) => false,
    }
}

fn remove_file(path: &Path) -> Result<(), BuildError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(BuildError::Io { path: path.to_path_buf(), source: e }),
        _ => Ok(()),
    }
}

fn remove_dir_all(path: &Path) -> Result<(), BuildError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(BuildError::Io { path: path.to_path_buf(), source: e }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn a_file_where_a_folder_goes_and_a_folder_where_a_file_goes_are_replaced() {
        let parent = tempfile::tempdir().unwrap();
        let output = parent.path().join("dist");
        let kept = parent.path().join(".cofferdam-previous-dist");
        std::fs::create_dir_all(kept.join("b/deep")).unwrap();
        std::fs::write(kept.join("a"), "a file").unwrap();
        std::fs::write(kept.join("b/deep/c.txt"), "in a folder").unwrap();
        std::fs::write(kept.join("same.txt"), "same").unwrap();
        std::fs::write(kept.join("changed.txt"), "old").unwrap();
        std::fs::create_dir_all(kept.join("gone/away")).unwrap();
        std::fs::write(kept.join("gone/away/x.txt"), "gone").unwrap();
        std::fs::write(kept.join("gone.txt"), "gone").unwrap();
        let same = std::fs::metadata(kept.join("same.txt")).unwrap().ino();

        let out = Output::prepare(&output).unwrap();
        assert!(out.kept.is_some(), "the kept folder was not reused");
        let made = [("a/index.html", "page"), ("b", "now a file"), ("same.txt", "same"), ("changed.txt", "new")];
        for (rel, bytes) in made {
            out.write(rel, bytes.as_bytes()).unwrap();
        }
        out.finish(&made.iter().map(|(rel, _)| rel.to_string()).collect()).unwrap();
        out.swap_into_place(&output).unwrap();

        let mut found: Vec<String> = walkdir::WalkDir::new(&output)
            .min_depth(1)
            .into_iter()
            .map(|e| relative(&output, e.unwrap().path()))
            .collect();
        found.sort();
        assert_eq!(found, ["a", "a/index.html", "b", "changed.txt", "same.txt"]);
        assert_eq!(read(&output.join("a/index.html")), "page");
        assert_eq!(read(&output.join("b")), "now a file");
        assert_eq!(read(&output.join("changed.txt")), "new");
        assert_eq!(std::fs::metadata(output.join("same.txt")).unwrap().ino(), same, "an unchanged file was rewritten");
        // The output replaced (none here) leaves nothing behind but the two folders.
        let names: Vec<String> =
            std::fs::read_dir(parent.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names, ["dist"]);
    }
}
