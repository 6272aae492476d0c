//! `dcms debug`: hidden tools for tests and operators.
//!
//! - `write-stream` commits a deterministic stream of requests to a store and
//!   prints each committed position; the crash test kills it with SIGKILL.
//! - `inspect` prints a store's last applied position, record count and digest.
//! - `export-audit` writes the audit trail as log files.

use anyhow::Context;
use dcms_core::workload::{Mix, Workload};
use dcms_core::{Store, SyncMode};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DebugArgs {
    #[command(subcommand)]
    command: DebugCommand,
}

#[derive(clap::Subcommand, Debug)]
enum DebugCommand {
    /// Commit a seeded stream of mixed requests, printing `committed N` after each batch.
    WriteStream {
        #[arg(long)]
        db: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Stop after this many entries (default: never).
        #[arg(long)]
        count: Option<u64>,
        #[arg(long, default_value = "full", value_parser = parse_sync)]
        sync: SyncMode,
    },
    /// Print a store's last applied position, record count and digest as JSON.
    Inspect {
        #[arg(long)]
        db: PathBuf,
    },
    /// Write the audit trail as one log per manager and one per clinic.
    ExportAudit {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn parse_sync(s: &str) -> Result<SyncMode, String> {
    SyncMode::parse(s).ok_or_else(|| format!("{s:?} is not a sync mode; expected full or normal"))
}

/// The time a deterministic writer stamps on entry `position`.
pub fn stream_time(position: u64) -> u64 {
    1_700_000_000_000 + position
}

pub fn run(args: DebugArgs) -> anyhow::Result<()> {
    match args.command {
        DebugCommand::WriteStream {
            db,
            seed,
            batch,
            count,
            sync,
        } => {
            anyhow::ensure!(batch > 0, "--batch must be at least 1");
            let mut store = Store::open(&db, sync)?;
            let mut state = store.load_state()?;
            let mut workload = Workload::new(seed, Mix::Mixed);
            // Regenerate what earlier runs executed so the stream continues.
            for _ in 0..store.last_applied() {
                workload.next_request();
            }
            let mut out = std::io::stdout().lock();
            let limit = count.unwrap_or(u64::MAX);
            while store.last_applied() < limit {
                let first = store.last_applied() + 1;
                let n = (batch as u64).min(limit - store.last_applied());
                let entries = workload.execute(&mut state, first, n, stream_time);
                store.commit(&entries)?;
                writeln!(out, "committed {}", store.last_applied())?;
                out.flush()?;
            }
            Ok(())
        }
        DebugCommand::Inspect { db } => {
            anyhow::ensure!(db.exists(), "no store at {}", db.display());
            let store = Store::open(&db, SyncMode::Full)?;
            let state = store.load_state()?;
            let json = serde_json::json!({
                "path": db,
                "last_applied": store.last_applied(),
                "records": state.len(),
                "counts": state.counts().to_string(),
                "digest": state.digest().to_hex(),
            });
            println!("{json}");
            Ok(())
        }
        DebugCommand::ExportAudit { db, out } => {
            anyhow::ensure!(db.exists(), "no store at {}", db.display());
            let store = Store::open(&db, SyncMode::Full)?;
            let summary = dcms_core::audit::export(&store, &out)
                .with_context(|| format!("exporting the audit trail of {}", db.display()))?;
            println!(
                "{} audit lines in {} files under {}",
                summary.lines,
                summary.files.len(),
                out.display()
            );
            Ok(())
        }
    }
}
