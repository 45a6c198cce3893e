//! The journal: one JSON line per termination, bounded on disk.
//!
//! - One `write(2)` per record (O_APPEND, no userspace buffer); [`Journal::sync`] (after each
//!   batch the writer thread takes, `sinks::writer`) makes them durable against a machine
//!   crash. A daemon killed between records leaves whole lines. A daemon killed *during* a
//!   `write(2)` can leave part of one: a regular-file write copies page by page
//!   (`generic_perform_write()`, mm/filemap.c) and a fatal signal is checked between pages
//!   (`fatal_signal_pending()` there), so a line crossing a page boundary can be cut at it; a
//!   machine crash can leave any prefix that reached the disk.
//! - Such a torn last line is repaired when the journal is opened: a complete record gets its
//!   newline, a fragment is cut off (and counted in `observer_journal_errors_total`); the
//!   termination behind it is offered again by the kernel (`daemon::ended`) when the kernel
//!   still keeps it.
//! - Created `0600` (records name pods, images and hook commands) with `O_NOFOLLOW` (a symlink
//!   planted at the journal's path is refused, not followed); an existing journal with wider
//!   permissions is narrowed to `0600`.
//! - One writer: `FILE.lock` is flock'ed exclusively for the journal's life; a second
//!   `observer run` on the same journal stops at start with [`JournalError::Locked`].
//! - A failed write is cut back to the last whole line, so a full disk leaves no fragment.
//! - Size-based rotation, named as logrotate does: `FILE` is current, `FILE.1` the one
//!   before, up to `FILE.N`. The record that triggers a rotation is written to the new file,
//!   so rotation never drops a record; the oldest file is what the size bound gives up.
//! - Idempotent: the journal knows the `record_id`s of its last [`RECORDED_IDS`] records (its
//!   tail, read at open, and what it appended since), and [`Journal::holds`] says whether a
//!   record is among them. A daemon killed after journaling a record but before the kernel
//!   forgot its termination (`ENDED`) has it offered again to the next daemon, which writes it
//!   once.

use std::{
    collections::{HashSet, VecDeque},
    fs::{File, OpenOptions},
    hash::{Hash as _, Hasher as _},
    io::{Read as _, Seek as _, SeekFrom, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
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

/// What the journal holds, one per line: container records ([`Record`]) and pod records
/// ([`crate::pod::PodRecord`]), each with its `record_id`.
pub trait Line: serde::Serialize {
    fn record_id(&self) -> &str;
}

impl Line for Record {
    fn record_id(&self) -> &str {
        &self.record_id
    }
}

impl Line for crate::pod::PodRecord {
    fn record_id(&self) -> &str {
        &self.record_id
    }
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

/// How many of the latest records' ids the journal keeps (8 bytes each, twice): far more than a
/// restarted daemon can be offered again (the kernel keeps at most `ENDED_MAX` terminations).
pub const RECORDED_IDS: usize = 65_536;
/// How much of the journal's end is read at open for the ids (about 40,000 records).
const TAIL_BYTES: u64 = 16 << 20;

/// The ids of the latest records, hashed (SipHash with fixed keys: only this process compares
/// them, the journal holds the ids themselves), oldest first.
#[derive(Default)]
pub struct Recorded {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl Recorded {
    fn hash(id: &str) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        id.hash(&mut h);
        h.finish()
    }

    /// Notes `id` as written; the oldest past [`RECORDED_IDS`] is forgotten.
    pub fn insert(&mut self, id: &str) {
        let h = Self::hash(id);
        if self.set.insert(h) {
            self.order.push_back(h);
            while self.order.len() > RECORDED_IDS {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    /// Whether `id` is among the latest written.
    pub fn contains(&self, id: &str) -> bool {
        self.set.contains(&Self::hash(id))
    }

    /// The ids in whole lines of `bytes` (a file's end: a first line cut by the read is
    /// skipped when `cut`), in order.
    fn read(&mut self, bytes: &[u8], cut: bool) {
        #[derive(serde::Deserialize)]
        struct Id<'a> {
            #[serde(borrow, default)]
            record_id: Option<std::borrow::Cow<'a, str>>,
        }
        let mut lines = bytes.split(|&b| b == b'\n');
        if cut {
            lines.next();
        }
        for line in lines.filter(|l| !l.is_empty()) {
            if let Ok(Id { record_id: Some(id) }) = serde_json::from_slice::<Id>(line) {
                self.insert(&id);
            }
        }
    }
}

/// The last `max` bytes of `path` (all of it when shorter) and whether they start mid-file.
fn tail(path: &Path, max: u64) -> std::io::Result<(Vec<u8>, bool)> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(max);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity((len - start) as usize);
    f.read_to_end(&mut buf)?;
    Ok((buf, start > 0))
}

/// A record as its journal line: its JSON and a newline.
pub fn line_of(record: &impl Line) -> Vec<u8> {
    let mut line = serde_json::to_vec(record).expect("a journal line always serializes");
    line.push(b'\n');
    line
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
    /// The latest records' ids, until [`Journal::take_recorded`] hands them to whoever decides
    /// what to write (the daemon's sink, on the pipeline's thread).
    recorded: Option<Recorded>,
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
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
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

/// The journal's file for appending: made `0600`, never through a symlink (`O_NOFOLLOW`: ELOOP),
/// and narrowed to `0600` when an older one is wider.
fn open_append(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        // A FIFO or a device at the journal's path: not a journal.
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        log::warn!("journal {}: permissions narrowed to 0600", path.display());
    }
    Ok(file)
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
                "journal {}: cut a torn last line of {bytes} bytes (the daemon or the node \
                 stopped mid-write; a termination the kernel still keeps is written again)",
                path.display()
            ),
            None => {}
        }
        let mut journal = Self {
            path: path.to_path_buf(),
            file,
            size,
            options,
            dirty: false,
            repair,
            recorded: Some(Recorded::default()),
            _lock: lock,
        };
        journal.read_recorded();
        Ok(journal)
    }

    /// The ids of the journal's last records: the end of `FILE.1` when `FILE` alone is short
    /// of [`TAIL_BYTES`] (a rotation just before the restart), then `FILE`. A file that cannot
    /// be read gives no ids (logged): its records could then be written twice.
    fn read_recorded(&mut self) {
        let mut budget = TAIL_BYTES;
        let mut files = vec![self.path.clone()];
        if self.size < TAIL_BYTES {
            files.insert(0, self.rotated(1));
            budget -= self.size;
        }
        for (i, file) in files.iter().enumerate() {
            let max = if i + 1 == files.len() { TAIL_BYTES } else { budget };
            match tail(file, max) {
                Ok((bytes, cut)) => self.recorded.get_or_insert_default().read(&bytes, cut),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::warn!(
                    "journal {}: cannot read its record ids ({e}): a record offered again \
                     could be written twice",
                    file.display()
                ),
            }
        }
    }

    /// Whether a record with this `record_id` is among the journal's latest
    /// ([`RECORDED_IDS`]): written by this daemon or found at open.
    pub fn holds(&self, record_id: &str) -> bool {
        self.recorded.as_ref().is_some_and(|r| r.contains(record_id))
    }

    /// The latest records' ids, for the caller to keep from here on: the journal stops keeping
    /// them ([`Journal::holds`] is false after).
    pub fn take_recorded(&mut self) -> Recorded {
        self.recorded.take().unwrap_or_default()
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
    pub fn append(&mut self, record: &impl Line) -> Result<(), JournalError> {
        self.append_line(&line_of(record), record.record_id())
    }

    /// [`Journal::append`] of a line already made ([`line_of`]).
    pub fn append_line(&mut self, line: &[u8], record_id: &str) -> Result<(), JournalError> {
        let rotation = if self.size > 0 && self.size + line.len() as u64 > self.options.max_bytes {
            self.rotate()
        } else {
            Ok(())
        };
        self.write_line(line)?;
        if let Some(r) = &mut self.recorded {
            r.insert(record_id);
        }
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
        r.record_id = crate::record::record_id(i, 77);
        r
    }

    #[test]
    fn the_journal_knows_the_records_it_holds_across_a_reopen_and_a_rotation() {
        let path = tmp("ids");
        let len = serde_json::to_vec(&numbered(0)).unwrap().len() as u64 + 1;
        let options = JournalOptions { max_bytes: 4 * len, files: 2 };
        {
            let mut j = Journal::open(&path, options).unwrap();
            for i in 0..5 {
                j.append(&numbered(i)).unwrap();
            }
            assert!(j.holds(&numbered(4).record_id));
            assert!(!j.holds(&numbered(5).record_id));
        }
        // [0 1 2 3] in FILE.1, [4] in FILE: a reopen reads both ends.
        assert_eq!(lines(&path).len(), 1);
        let j = Journal::open(&path, options).unwrap();
        for i in 0..5 {
            assert!(j.holds(&numbered(i).record_id), "record {i}");
        }
        assert!(!j.holds(&numbered(5).record_id));
        // A torn line is no record.
        drop(j);
        let mut torn = serde_json::to_vec(&numbered(9)).unwrap();
        torn.truncate(torn.len() / 2);
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&torn).unwrap();
        let j = Journal::open(&path, options).unwrap();
        assert!(!j.holds(&numbered(9).record_id));
        assert!(j.holds(&numbered(4).record_id));
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn ids_are_read_from_whole_lines_only() {
        let mut r = Recorded::default();
        let a = serde_json::to_vec(&numbered(1)).unwrap();
        let b = serde_json::to_vec(&numbered(2)).unwrap();
        let mut bytes = a[a.len() / 2..].to_vec();
        bytes.push(b'\n');
        bytes.extend_from_slice(&b);
        bytes.extend_from_slice(b"\nnot json\n{\"record_id\": 5}\n");
        r.read(&bytes, true);
        assert!(r.contains(&numbered(2).record_id));
        assert_eq!(r.order.len(), 1);
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
    fn the_journal_is_private_and_never_followed_through_a_symlink() {
        use std::os::unix::fs::PermissionsExt as _;
        let path = tmp("mode");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let mut j = Journal::open(&path, JournalOptions { max_bytes: 4096, files: 2 }).unwrap();
        let big = Record::example().build();
        for _ in 0..8 {
            j.append(&big).unwrap();
        }
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&j.rotated(1)), 0o600, "rotated files keep it");
        let mut lock = path.as_os_str().to_owned();
        lock.push(".lock");
        assert_eq!(mode(Path::new(&lock)), 0o600);
        drop(j);
        // An older journal readable by all is narrowed.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(Journal::open(&path, JournalOptions::default()).unwrap());
        assert_eq!(mode(&path), 0o600);
        // A symlink planted at the journal's path (to a file the daemon must not append to).
        let victim = path.with_file_name("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let planted = path.with_file_name("planted.jsonl");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let e = Journal::open(&planted, JournalOptions::default()).err().expect("refused");
        let JournalError::Open { source, .. } = &e else { panic!("{e}") };
        assert_eq!(source.raw_os_error(), Some(libc::ELOOP), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn the_ids_can_be_taken_for_the_caller_to_keep() {
        let path = tmp("take");
        let mut j = Journal::open(&path, JournalOptions::default()).unwrap();
        j.append(&numbered(1)).unwrap();
        drop(j);
        let mut j = Journal::open(&path, JournalOptions::default()).unwrap();
        let ids = j.take_recorded();
        assert!(ids.contains(&numbered(1).record_id));
        assert!(!j.holds(&numbered(1).record_id), "the journal keeps them no more");
        j.append(&numbered(2)).unwrap();
        assert!(!j.holds(&numbered(2).record_id));
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
