//! The journal: one JSON line per termination, appended and flushed per record, so a crash
//! loses at most the record being written.

use std::{
    fs::{File, OpenOptions},
    io::Write as _,
    path::{Path, PathBuf},
};

use crate::record::Record;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
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
}

pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let err = |source| JournalError::Open { path: path.display().to_string(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(err)?;
        Ok(Self { path: path.to_path_buf(), file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One `write(2)` of the whole line (O_APPEND), so lines never interleave.
    pub fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(record).expect("a Record always serializes");
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.flush())
            .map_err(|source| JournalError::Write { path: self.path.display().to_string(), source })
    }
}
