//! The audit trail as plain log files: one per manager and one per clinic,
//! as the first version of the system kept them.
//!
//! Every replica keeps the same audit lines (they travel inside effects), so
//! any replica's store can be exported. Layout under the target folder:
//! `managers/MTL1234.log`, `clinics/MTL.log`, and `unidentified.log` for
//! requests whose manager ID was not valid (so no file is named after
//! untrusted text).

use crate::model::ManagerId;
use crate::ops::AuditEntry;
use crate::store::{Store, StoreError};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// One audit line as text:
/// `2026-11-24T12:00:00.123Z #42 MTL1234 createDRecord firstName="Ann" ... -> ok: DR10000`.
pub fn format_line(position: u64, entry: &AuditEntry) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(entry.time_ms);
    format!(
        "{} #{position} {} {} {} -> {}",
        humantime::format_rfc3339_millis(time),
        if entry.manager_id.is_empty() {
            "-"
        } else {
            &entry.manager_id
        },
        entry.operation,
        entry.arguments,
        entry.outcome
    )
}

/// What [`export`] wrote.
#[derive(Debug, Default)]
pub struct ExportSummary {
    pub files: Vec<PathBuf>,
    pub lines: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Writes the store's audit trail under `dir` (created if needed; files
/// there are replaced).
pub fn export(store: &Store, dir: &Path) -> Result<ExportSummary, ExportError> {
    let mut files: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    let entries = store.audit()?;
    for (position, entry) in &entries {
        let line = format_line(*position, entry);
        match (ManagerId::parse(&entry.manager_id), entry.clinic) {
            (Ok(manager), Some(clinic)) => {
                files
                    .entry(dir.join("managers").join(format!("{manager}.log")))
                    .or_default()
                    .push(line.clone());
                files
                    .entry(dir.join("clinics").join(format!("{}.log", clinic.code())))
                    .or_default()
                    .push(line);
            }
            _ => files
                .entry(dir.join("unidentified.log"))
                .or_default()
                .push(line),
        }
    }
    let mut summary = ExportSummary {
        files: Vec::new(),
        lines: entries.len(),
    };
    for (path, lines) in files {
        let io = |source| ExportError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).map_err(io)?);
        for line in lines {
            writeln!(out, "{line}").map_err(io)?;
        }
        out.flush().map_err(io)?;
        summary.files.push(path);
    }
    Ok(summary)
}
