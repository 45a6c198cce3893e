//! tracefs: where it is mounted, mounting it when it is not, and tracepoint record formats.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    #[error("tracefs is not mounted and mounting it at {path} failed: {source}")]
    Mount {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tracepoint {0} does not exist on this kernel")]
    NoTracepoint(String),
}

/// The standard mount point (Documentation/trace/ftrace.rst).
pub const DEFAULT_MOUNT: &str = "/sys/kernel/tracing";
const DEBUGFS_MOUNT: &str = "/sys/kernel/debug/tracing";

/// Finds a mounted tracefs from /proc/self/mountinfo; `None` when there is none.
pub fn find_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    find_mount_in(&info).or_else(|| {
        // debugfs exposes tracefs under tracing/ on older setups.
        Path::new(DEBUGFS_MOUNT).join("events").is_dir().then(|| PathBuf::from(DEBUGFS_MOUNT))
    })
}

fn find_mount_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // "<id> <parent> <maj:min> <root> <mount point> <opts> [optional...] - <fstype> <src> <opts>"
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        let mount_point = left.split_whitespace().nth(4)?;
        (fstype == "tracefs").then(|| PathBuf::from(mount_point.replace("\\040", " ")))
    })
}

/// Finds tracefs, mounting it at [`DEFAULT_MOUNT`] when absent (needs CAP_SYS_ADMIN).
/// Returns the path and whether this call mounted it.
pub fn ensure_mounted() -> Result<(PathBuf, bool), TracefsError> {
    if let Some(p) = find_mount() {
        return Ok((p, false));
    }
    let target = std::ffi::CString::new(DEFAULT_MOUNT).expect("no NUL in a constant");
    let fstype = c"tracefs";
    // SAFETY: all pointers are valid NUL-terminated strings; data is NULL.
    let rc = unsafe {
        libc::mount(c"nodev".as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null())
    };
    if rc != 0 {
        return Err(TracefsError::Mount {
            path: DEFAULT_MOUNT.into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok((PathBuf::from(DEFAULT_MOUNT), true))
}

/// One field of a tracepoint record: offset and size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub offset: usize,
    pub size: usize,
}

/// Parses `events/<category>/<name>/format` into field name -> (offset, size).
pub fn read_format(
    tracefs: &Path,
    category: &str,
    name: &str,
) -> Result<HashMap<String, Field>, TracefsError> {
    let dir = tracefs.join("events").join(category).join(name);
    if !dir.is_dir() {
        return Err(TracefsError::NoTracepoint(format!("{category}/{name}")));
    }
    let path = dir.join("format");
    let text = std::fs::read_to_string(&path)
        .map_err(|source| TracefsError::Read { path: path.display().to_string(), source })?;
    Ok(parse_format(&text))
}

/// `field:int sig; offset:8; size:4; signed:1;` (tab-separated) -> ("sig", 8, 4). Array brackets and
/// `__data_loc` prefixes are stripped from the name.
pub fn parse_format(text: &str) -> HashMap<String, Field> {
    let mut fields = HashMap::new();
    for line in text.lines() {
        let mut decl = None;
        let (mut offset, mut size) = (None, None);
        for part in line.trim().split(';') {
            let part = part.trim();
            if let Some(d) = part.strip_prefix("field:") {
                decl = Some(d);
            } else if let Some(o) = part.strip_prefix("offset:") {
                offset = o.parse().ok();
            } else if let Some(s) = part.strip_prefix("size:") {
                size = s.parse().ok();
            }
        }
        let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else { continue };
        let Some(last) = decl.split_whitespace().last() else { continue };
        let name = last.split('[').next().unwrap_or(last);
        fields.insert(name.to_string(), Field { offset, size });
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_format_file() {
        let text = "name: signal_generate\nID: 190\nformat:\n\
            \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
            \tfield:int sig;\toffset:8;\tsize:4;\tsigned:1;\n\
            \tfield:char comm[16];\toffset:20;\tsize:16;\tsigned:0;\n\
            \tfield:__data_loc char[] path;\toffset:24;\tsize:4;\tsigned:0;\n\
            \nprint fmt: \"sig=%d\"\n";
        let f = parse_format(text);
        assert_eq!(f["sig"], Field { offset: 8, size: 4 });
        assert_eq!(f["comm"], Field { offset: 20, size: 16 });
        assert_eq!(f["path"], Field { offset: 24, size: 4 });
        assert_eq!(f["common_type"], Field { offset: 0, size: 2 });
        assert_eq!(f.len(), 4);
    }

    #[test]
    fn finds_tracefs_in_mountinfo() {
        let info = "22 1 0:20 / /sys rw - sysfs sysfs rw\n\
                    35 22 0:12 / /sys/kernel/tracing rw,relatime - tracefs nodev rw\n";
        assert_eq!(find_mount_in(info), Some(PathBuf::from("/sys/kernel/tracing")));
        assert_eq!(find_mount_in("22 1 0:20 / /sys rw - sysfs sysfs rw\n"), None);
        assert_eq!(find_mount_in("garbage\n\n - \n"), None);
    }
}
