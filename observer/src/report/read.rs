//! Reading a journal and its rotated files, oldest first, line by line; lines that are not
//! records are counted, never fatal.

use std::{
    fs::File,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
};

use crate::record::entry::Entry;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("no journal at {0} (nor rotated files {0}.1, ...): see --journal")]
    Missing(String),
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// `FILE.N` .. `FILE.1`, then `FILE`: logrotate's names, oldest first. Other names beside
/// it (`FILE.1.gz`, `FILE.tmp`) are not journal files of ours.
pub fn journal_files(path: &Path) -> Result<Vec<PathBuf>, ReadError> {
    let io = |source| ReadError::Io { path: path.display().to_string(), source };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut rotated: Vec<(u64, PathBuf)> = Vec::new();
    match std::fs::read_dir(&dir) {
        Ok(entries) => {
            for e in entries.flatten() {
                let file = e.file_name();
                let file = file.to_string_lossy();
                let n = file
                    .strip_prefix(name.as_str())
                    .and_then(|rest| rest.strip_prefix('.'))
                    .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|n| n.parse::<u64>().ok());
                if let Some(n) = n.filter(|n| *n > 0) {
                    rotated.push((n, e.path()));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    if path.exists() {
        files.push(path.to_path_buf());
    }
    if files.is_empty() {
        return Err(ReadError::Missing(path.display().to_string()));
    }
    Ok(files)
}

/// Lines that were not records: how many, and where the first ones were.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub count: u64,
    pub first: Vec<String>,
}

impl Skipped {
    const SHOWN: usize = 3;

    fn add(&mut self, file: &Path, line_no: u64) {
        self.count += 1;
        if self.first.len() < Self::SHOWN {
            self.first.push(format!("{}:{line_no}", file.display()));
        }
    }

    /// The closing warning, when anything was skipped.
    pub fn warning(&self) -> Option<String> {
        (self.count > 0).then(|| {
            format!(
                "warning: skipped {} corrupt or truncated journal line{} (first at {})",
                self.count,
                if self.count == 1 { "" } else { "s" },
                self.first.join(", ")
            )
        })
    }
}

/// Calls `f(entry, raw line)` for every record of `files` in order; blank lines are not
/// records and not errors; anything else that does not parse is counted in the result.
pub fn for_each_record(
    files: &[PathBuf],
    mut f: impl FnMut(&Entry<'_>, &[u8]),
) -> Result<Skipped, ReadError> {
    let mut skipped = Skipped::default();
    let mut buf = Vec::with_capacity(4096);
    for path in files {
        let io = |source| ReadError::Io { path: path.display().to_string(), source };
        let file = match File::open(path) {
            Ok(f) => f,
            // Rotated away between listing and opening: its records are in the next name.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(e)),
        };
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut line_no = 0;
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf).map_err(io)? == 0 {
                break;
            }
            line_no += 1;
            let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match Entry::parse(line) {
                Ok(e) => f(&e, line),
                Err(_) => skipped.add(path, line_no),
            }
        }
    }
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("observer-read-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn line(sec: u32, pod: &str) -> String {
        let r = Record::example().at(&format!("2026-08-01T02:00:{sec:02}Z")).pod(pod).build();
        format!("{}\n", serde_json::to_string(&r).unwrap())
    }

    #[test]
    fn rotated_files_oldest_first_and_others_ignored() {
        let d = tmpdir("order");
        let j = d.join("t.jsonl");
        for (name, body) in [
            ("t.jsonl", line(3, "c")),
            ("t.jsonl.1", line(2, "b")),
            ("t.jsonl.2", line(1, "a")),
            ("t.jsonl.10", line(0, "z")),
            ("t.jsonl.1.gz", "binary".into()),
            ("t.jsonl.tmp", "x".into()),
            ("t.jsonl.0", "x".into()),
            ("other.jsonl.1", "x".into()),
        ] {
            std::fs::write(d.join(name), body).unwrap();
        }
        let files = journal_files(&j).unwrap();
        let names: Vec<_> =
            files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["t.jsonl.10", "t.jsonl.2", "t.jsonl.1", "t.jsonl"]);
        let mut pods = String::new();
        let skipped = for_each_record(&files, |e, _| pods += e.pod.as_deref().unwrap()).unwrap();
        assert_eq!(pods, "zabc");
        assert_eq!(skipped.count, 0);
        // Only rotated files left (the current one not yet created): still readable.
        std::fs::remove_file(&j).unwrap();
        assert_eq!(journal_files(&j).unwrap().len(), 3);
        std::fs::remove_dir_all(&d).unwrap();
        assert!(journal_files(&j).unwrap_err().to_string().contains("no journal"));
    }

    #[test]
    fn torn_and_corrupt_lines_are_counted_with_their_place() {
        let d = tmpdir("torn");
        let j = d.join("t.jsonl");
        let torn = &line(9, "torn")[..20];
        let body = format!(
            "{}\n{}not json\n\u{0}\u{0}\u{0}\n{}{torn}",
            line(1, "a"),
            line(2, "b"),
            line(3, "c")
        );
        std::fs::write(&j, body).unwrap();
        let mut raw = Vec::new();
        let skipped =
            for_each_record(std::slice::from_ref(&j), |_, l| raw.push(l.to_vec())).unwrap();
        assert_eq!(raw.len(), 3);
        assert_eq!(raw[0], line(1, "a").trim_end().as_bytes(), "the line, unchanged");
        assert_eq!(skipped.count, 3);
        let w = skipped.warning().unwrap();
        assert!(w.contains("skipped 3 corrupt or truncated journal lines"), "{w}");
        assert!(w.contains("t.jsonl:4") && w.contains("t.jsonl:5"), "{w}");
        // A whole record without its final newline is still a record.
        std::fs::write(&j, line(1, "a").trim_end()).unwrap();
        let skipped = for_each_record(std::slice::from_ref(&j), |_, _| ()).unwrap();
        assert_eq!(skipped, Skipped::default());
        assert_eq!(skipped.warning(), None);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
