//! `observer report`: post-incident analysis of the journal. Reads the journal and its
//! rotated files oldest first, keeps the records the filters select, and prints either a
//! summary per workload followed by the forced kills (newest first, each with its reason in
//! words), or with `--json` the matching journal lines unchanged. Lines that are not records
//! are skipped and counted in a closing warning on stderr.

pub mod args;
pub mod read;
pub mod summary;

use std::io::{IsTerminal as _, Write as _};

use anyhow::{Context as _, Result};
use chrono::Utc;

use self::args::{Color, ReportArgs};
use crate::record::filter::Filter;

impl ReportArgs {
    /// The filter these arguments ask for, `--since` counted back from `now`.
    pub fn filter(&self, now: chrono::DateTime<Utc>) -> Filter {
        let since = self
            .since
            .map(|d| now.checked_sub_signed(d).unwrap_or(chrono::DateTime::<Utc>::MIN_UTC));
        Filter {
            from: since.or(self.from),
            to: self.to,
            namespace: self.namespace.clone(),
            workload: self.workload.clone(),
            pod: self.pod.clone(),
            outcome: self.outcome.clone(),
            verdict: self.verdict.clone(),
        }
    }
}

pub fn run(args: &ReportArgs) -> Result<()> {
    let filter = args.filter(Utc::now());
    let files = read::journal_files(&args.journal)?;
    let stdout = std::io::stdout();
    let color = match args.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut write_err = None;
    let skipped = if args.json {
        read::for_each_record(&files, |e, line| {
            if write_err.is_none() && filter.matches(e) {
                if let Err(err) = out.write_all(line).and_then(|()| out.write_all(b"\n")) {
                    write_err = Some(err);
                }
            }
        })?
    } else {
        let mut summary = summary::Summary::default();
        let skipped = read::for_each_record(&files, |e, _| {
            if filter.matches(e) {
                summary.add(e);
            }
        })?;
        if let Err(e) = out.write_all(summary.render(args.max_kills, color).as_bytes()) {
            write_err = Some(e);
        }
        skipped
    };
    if write_err.is_none() {
        write_err = out.flush().err();
    }
    if let Some(w) = skipped.warning() {
        eprintln!("{w}");
    }
    match write_err {
        // `observer report | head`: the reader has what it wanted.
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Some(e) => Err(e).context("writing the report"),
        None => Ok(()),
    }
}
