//! The journal: one JSON line per termination, bounded on disk.
//!
//! - One `write(2)` per record (O_APPEND, no userspace buffer), so a daemon killed at any
//!   moment leaves whole lines; [`Journal::sync`] (once per pipeline tick) makes them durable
//!   against a machine crash.
//! - A torn last line (a crash mid-write, or a write cut short by a full disk) is repaired
//!   when the journal is opened: a complete record gets its newline, a fragment is cut off.
//! - A failed write is cut back to the last whole line, so a full disk leaves no fragment.
//! - Size-based rotation, named as logrotate does: `FILE` is current, `FILE.1` the one
//!   before, up to `FILE.N`. The record that triggers a rotation is written to the new file,
//!   so rotation never drops a record; the oldest file is what the size bound gives up.

use std::{
    fs::{File, OpenOptions},
    io::{Read as _, Seek as _, SeekFrom, Write as _},
    path::{Path, PathBuf},
};

use crate::record::Record;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "journal {path} is being written by another observer (it holds {path}.lock): one writer \
         per journal"
    )]
    Locked { path: String },
    #[error("opening journal {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing journal {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("rotating journal {path}: {source}")]
    Rotate {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("syncing journal {path}: {source}")]
    Sync {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Bounds on disk: at most `(files + 1) * max_bytes` (plus one record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalOptions {
    pub max_bytes: u64,
    /// Rotated files kept besides the current one.
    pub files: u32,
}

impl Default for JournalOptions {
    /// 10 MiB x (1 + 5): small enough for a node's /var, about 60,000 records.
    fn default() -> Self {
        Self { max_bytes: 10 << 20, files: 5 }
    }
}

/// What opening found at the end of an existing journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// A complete record without its newline: the newline was added.
    Terminated,
    /// An incomplete record: these bytes were cut off (the record was lost).
    Truncated { bytes: u64 },
}

pub struct Journal {
    path: PathBuf,
    file: File,
    /// Bytes in the current file, as we wrote them.
    size: u64,
    options: JournalOptions,
    /// Written since the last sync.
    dirty: bool,
    /// Found and repaired at open.
    pub repair: Option<Repair>,
    /// `FILE.lock`, flock'ed for the journal's life (the journal itself is renamed at
    /// rotation, a lock on it would move with it).
    _lock: File,
}

/// Takes `FILE.lock` exclusively, or says that another writer has it.
fn lock(path: &Path) -> Result<File, JournalError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let err = |source| JournalError::Open { path: lock_path.display().to_string(), source };
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(err)?;
    // SAFETY: a valid descriptor; LOCK_NB never blocks.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX | libc::LOCK_NB) }
        != 0
    {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(JournalError::Locked { path: path.display().to_string() });
        }
        return Err(err(e));
    }
    Ok(f)
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).read(true).open(path)
}

/// Offset just past the last b'\n' in the first `len` bytes of `file` (0 when none).
fn after_last_newline(file: &mut File, len: u64) -> std::io::Result<u64> {
    let mut end = len;
    let mut buf = vec![0u8; 64 << 10];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

impl Journal {
    pub fn open(path: &Path, options: JournalOptions) -> Result<Self, JournalError> {
        let err = |source| JournalError::Open { path: path.display().to_string(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let lock = lock(path)?;
        let mut file = open_append(path).map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        let mut repair = None;
        let mut size = len;
        if len > 0 {
            let start = after_last_newline(&mut file, len).map_err(err)?;
            if start < len {
                let mut tail = vec![0u8; (len - start) as usize];
                file.seek(SeekFrom::Start(start)).map_err(err)?;
                file.read_exact(&mut tail).map_err(err)?;
                let whole =
                    serde_json::from_slice::<serde_json::Value>(&tail).is_ok_and(|v| v.is_object());
                if whole {
                    file.write_all(b"\n").map_err(err)?;
                    size += 1;
                    repair = Some(Repair::Terminated);
                } else {
                    file.set_len(start).map_err(err)?;
                    size = start;
                    repair = Some(Repair::Truncated { bytes: len - start });
                }
            }
        }
        match repair {
            Some(Repair::Terminated) => {
                log::warn!("journal {}: last record had no newline; added", path.display())
            }
            Some(Repair::Truncated { bytes }) => log::warn!(
                "journal {}: cut a torn last line of {bytes} bytes (a record lost when the \
                 daemon or the node stopped mid-write)",
                path.display()
            ),
            None => {}
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
            options,
            dirty: false,
            repair,
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `FILE.n`.
    pub fn rotated(&self, n: u32) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    /// Appends one record as one line. When the record would take the file past
    /// `max_bytes`, rotates first; a failed rotation is returned after the record was still
    /// written (to the current file), so the caller counts an error but no record is lost.
    pub fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(record).expect("a Record always serializes");
        line.push(b'\n');
        let rotation = if self.size > 0 && self.size + line.len() as u64 > self.options.max_bytes {
            self.rotate()
        } else {
            Ok(())
        };
        self.write_line(&line)?;
        rotation
    }

    fn write_line(&mut self, line: &[u8]) -> Result<(), JournalError> {
        let err =
            |path: &Path, source| JournalError::Write { path: path.display().to_string(), source };
        match self.file.write_all(line) {
            Ok(()) => {
                self.size += line.len() as u64;
                self.dirty = true;
                Ok(())
            }
            Err(e) => {
                // A short write (ENOSPC after part of the line) would leave a fragment that
                // the next record continues: cut back to the last whole line.
                if let Err(t) = self.file.set_len(self.size) {
                    log::error!("journal {}: cannot cut a partial line: {t}", self.path.display());
                }
                Err(err(&self.path, e))
            }
        }
    }

    /// FILE.(N-1) -> FILE.N, ..., FILE -> FILE.1, then a fresh FILE.
    fn rotate(&mut self) -> Result<(), JournalError> {
        // The file being retired is durable before it is renamed.
        self.sync().ok();
        let path = self.path.display().to_string();
        let err = |source| JournalError::Rotate { path: path.clone(), source };
        for n in (1..self.options.files).rev() {
            match std::fs::rename(self.rotated(n), self.rotated(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
                _ => {}
            }
        }
        std::fs::rename(&self.path, self.rotated(1)).map_err(err)?;
        // Renamed: from here on a failure must not leave us writing to FILE.1.
        self.file = open_append(&self.path).map_err(err)?;
        self.size = 0;
        self.dirty = false;
        Ok(())
    }

    /// fdatasync when anything was written since the last call.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        if !self.dirty {
            return Ok(());
        }
        self.dirty = false;
        self.file
            .sync_data()
            .map_err(|source| JournalError::Sync { path: self.path.display().to_string(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{record::Record, report::read};

    fn tmp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("observer-journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d.join("t.jsonl")
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect()
    }

    fn numbered(i: u32) -> Record {
        let mut r = Record::example().build();
        r.pid = i;
        r
    }

    #[test]
    fn rotation_keeps_every_record_in_order_within_the_bound() {
        let path = tmp("rotate");
        let len = serde_json::to_vec(&Record::example().build()).unwrap().len() as u64 + 1;
        let options = JournalOptions { max_bytes: 3 * len, files: 3 };
        let mut j = Journal::open(&path, options).unwrap();
        for i in 0..10 {
            j.append(&numbered(i)).unwrap();
        }
        // 3 per file: FILE.3 [0 1 2] was dropped when the 4th file filled...
        // 10 records: [0 1 2] [3 4 5] [6 7 8] [9] -> FILE.3 FILE.2 FILE.1 FILE
        let files = read::journal_files(&path).unwrap();
        assert_eq!(files.len(), 4);
        let mut pids = Vec::new();
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() <= options.max_bytes);
            pids.extend(lines(f).iter().map(|r| r["pid"].as_u64().unwrap()));
        }
        assert_eq!(pids, (0..10).collect::<Vec<_>>());
        // Two more: FILE.3 [0 1 2] is the one the bound gives up.
        for i in 10..13 {
            j.append(&numbered(i)).unwrap();
        }
        assert!(!j.rotated(4).exists());
        let pids: Vec<u64> = read::journal_files(&path)
            .unwrap()
            .iter()
            .flat_map(|f| lines(f))
            .map(|r| r["pid"].as_u64().unwrap())
            .collect();
        assert_eq!(pids, (3..13).collect::<Vec<_>>());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_record_larger_than_the_bound_is_still_written() {
        let path = tmp("big");
        let mut j = Journal::open(&path, JournalOptions { max_bytes: 10, files: 1 }).unwrap();
        j.append(&numbered(1)).unwrap();
        j.append(&numbered(2)).unwrap();
        assert_eq!(lines(&path)[0]["pid"], 2);
        assert_eq!(lines(&j.rotated(1))[0]["pid"], 1);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_cut_at_open() {
        let path = tmp("torn");
        let whole = serde_json::to_string(&Record::example().build()).unwrap();
        std::fs::write(&path, format!("{whole}\n{whole}\n{}", &whole[..40])).unwrap();
        let mut j = Journal::open(&path, JournalOptions::default()).unwrap();
        assert_eq!(j.repair, Some(Repair::Truncated { bytes: 40 }));
        j.append(&numbered(9)).unwrap();
        let l = lines(&path);
        assert_eq!(l.len(), 3);
        assert_eq!(l[2]["pid"], 9);
        // A complete record missing its newline keeps the record.
        drop(j);
        std::fs::write(&path, &whole).unwrap();
        let mut j = Journal::open(&path, JournalOptions::default()).unwrap();
        assert_eq!(j.repair, Some(Repair::Terminated));
        j.append(&numbered(9)).unwrap();
        assert_eq!(lines(&path).len(), 2);
        // A file that is all fragment (no newline at all) becomes empty.
        drop(j);
        std::fs::write(&path, "{\"ts\":").unwrap();
        let j = Journal::open(&path, JournalOptions::default()).unwrap();
        assert_eq!(j.repair, Some(Repair::Truncated { bytes: 6 }));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        // A clean journal is left alone.
        drop(j);
        std::fs::write(&path, format!("{whole}\n")).unwrap();
        let mut j = Journal::open(&path, JournalOptions::default()).unwrap();
        assert_eq!(j.repair, None);
        j.sync().unwrap();
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn one_writer_per_journal() {
        let path = tmp("lock");
        let j = Journal::open(&path, JournalOptions::default()).unwrap();
        let e = Journal::open(&path, JournalOptions::default()).err().expect("a second writer");
        assert!(matches!(e, JournalError::Locked { .. }), "{e}");
        assert!(e.to_string().contains("another observer"), "{e}");
        drop(j);
        Journal::open(&path, JournalOptions::default()).expect("free again");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_torn_line_longer_than_the_scan_chunk_is_found() {
        let path = tmp("long");
        let whole = serde_json::to_string(&Record::example().build()).unwrap();
        let junk = "x".repeat(200_000);
        std::fs::write(&path, format!("{whole}\n{junk}")).unwrap();
        let j = Journal::open(&path, JournalOptions::default()).unwrap();
        assert_eq!(j.repair, Some(Repair::Truncated { bytes: 200_000 }));
        assert_eq!(lines(&path).len(), 1);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn opening_where_no_journal_can_be_is_an_error() {
        let e = Journal::open(Path::new("/proc/observer-test/j.jsonl"), JournalOptions::default())
            .err()
            .unwrap();
        assert!(e.to_string().contains("opening journal /proc/observer-test/j.jsonl"), "{e}");
    }
}
