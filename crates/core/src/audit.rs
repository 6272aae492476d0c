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
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// One audit line as text:
/// `2026-11-24T12:00:00.123Z #42 MTL1234 createDRecord firstName="Ann" ... -> ok: DR10000`,
/// or, for a client that proved who it is with a TLS certificate,
/// `... #42 MTL1234 cert=MTL1234 createDRecord ...`.
///
/// One entry is always one line whose fields cannot be forged: the manager
/// ID is untrusted client text (a request with an invalid one is audited
/// too), so unless it is letters and digits only it is quoted and escaped
/// like the argument values (`"MTL0001 x\n2026-..."`); the operation gets
/// the same treatment, and control characters in the arguments and the
/// outcome are escaped. The lines of valid requests are unchanged by this.
pub fn format_line(position: u64, entry: &AuditEntry) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(entry.time_ms);
    let authenticated = match &entry.authenticated {
        Some(id) => format!(" cert={}", word(id)),
        None => String::new(),
    };
    format!(
        "{} #{position} {}{authenticated} {} {} -> {}",
        humantime::format_rfc3339_millis(time),
        if entry.manager_id.is_empty() {
            "-".into()
        } else {
            word(&entry.manager_id)
        },
        word(&entry.operation),
        one_line(&entry.arguments),
        one_line(&entry.outcome)
    )
}

/// `s` as one space-free field: as it is when only ASCII letters and
/// digits, else quoted with Rust's escapes (as `{:?}` writes argument values).
fn word(s: &str) -> Cow<'_, str> {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(format!("{s:?}"))
    }
}

/// `s` with control characters and Unicode line and paragraph separators
/// escaped (`\n`, `\u{2028}`), so that it cannot break the line.
fn one_line(s: &str) -> Cow<'_, str> {
    let breaks = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !s.contains(breaks) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if breaks(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(manager_id: &str) -> AuditEntry {
        AuditEntry {
            time_ms: 1_764_000_000_123,
            manager_id: manager_id.into(),
            clinic: None,
            operation: "getRecordCounts".into(),
            arguments: String::new(),
            outcome: "ok: MTL 0, LVL 0, DDO 0".into(),
            authenticated: None,
        }
    }

    #[test]
    fn an_authenticated_manager_is_named_after_the_manager_id() {
        let mut e = entry("mtl0001");
        e.authenticated = Some("MTL0001".into());
        assert_eq!(
            format_line(3, &e),
            "2025-11-24T16:00:00.123Z #3 mtl0001 cert=MTL0001 getRecordCounts  -> ok: MTL 0, LVL 0, DDO 0"
        );
        // Only from the executing leader, which keeps valid IDs only; still
        // one field whatever it holds.
        e.authenticated = Some("MTL0001 x\n".into());
        assert!(format_line(3, &e).contains(r#" cert="MTL0001 x\n" "#));
    }

    #[test]
    fn a_valid_manager_id_is_written_as_before() {
        let mut e = entry("MTL0001");
        e.operation = "createDRecord".into();
        e.arguments = r#"firstName="Ann" lastName="O'Neil\nX""#.into();
        e.outcome = "ok: DR10000".into();
        assert_eq!(
            format_line(42, &e),
            r#"2025-11-24T16:00:00.123Z #42 MTL0001 createDRecord firstName="Ann" lastName="O'Neil\nX" -> ok: DR10000"#
        );
        assert_eq!(
            format_line(7, &entry("")),
            "2025-11-24T16:00:00.123Z #7 - getRecordCounts  -> ok: MTL 0, LVL 0, DDO 0"
        );
    }

    #[test]
    fn a_manager_id_cannot_forge_a_line() {
        let forged =
            "\n2026-01-01T00:00:00.000Z #1 MTL0001 createDRecord firstName=\"A\" -> ok: DR10000";
        let line = format_line(9, &entry(forged));
        assert_eq!(line.lines().count(), 1, "{line}");
        assert_eq!(
            line,
            r#"2025-11-24T16:00:00.123Z #9 "\n2026-01-01T00:00:00.000Z #1 MTL0001 createDRecord firstName=\"A\" -> ok: DR10000" getRecordCounts  -> ok: MTL 0, LVL 0, DDO 0"#
        );
        // Spaces alone would shift the fields: quoted too, as is anything
        // beyond letters and digits, and a lone "-" (the empty ID's mark).
        for (id, shown) in [
            ("MTL0001 createDRecord", r#""MTL0001 createDRecord""#),
            ("-", r#""-""#),
            ("MTL0001\r", r#""MTL0001\r""#),
            ("ÉTÉ", r#""ÉTÉ""#),
            ("a\u{2028}b", r#""a\u{2028}b""#),
        ] {
            let line = format_line(1, &entry(id));
            assert!(
                line.contains(&format!(" #1 {shown} getRecordCounts ")),
                "{id:?}: {line}"
            );
            assert_eq!(line.lines().count(), 1, "{line}");
        }
    }

    #[test]
    fn no_field_can_break_the_line() {
        let mut e = entry("MTL0001");
        e.operation = "get\nRecord".into();
        e.arguments = "recordID=DR1\n2026".into();
        e.outcome = "error: x\r\n2026-01-01T00:00:00.000Z #2 MTL0001 a\u{2029}".into();
        let line = format_line(3, &e);
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(!line.contains(['\n', '\r', '\u{2029}']), "{line}");
        assert!(line.contains(r#" MTL0001 "get\nRecord" recordID=DR1\n2026 -> error: x\r\n2026"#));
        assert!(line.ends_with(r"a\u{2029}"), "{line}");
    }
}
