//! `dcms bench store` measures the durable store alone: effects applied per
//! second with one effect per transaction and in groups, with SQLite
//! `synchronous=FULL` and `NORMAL`, and the size on disk of N records.

use crate::cmd::debug::parse_sync;
use dcms_core::workload::{Mix, Workload};
use dcms_core::{ClinicState, LogEntry, Store, SyncMode};
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct StoreBench {
    /// Effects per run.
    #[arg(long, default_value_t = 5_000)]
    effects: u64,
    /// Group sizes to measure (effects per transaction).
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    batch: Vec<usize>,
    /// Durability modes to measure.
    #[arg(long, value_delimiter = ',', default_value = "full,normal", value_parser = parse_sync)]
    sync: Vec<SyncMode>,
    /// Records for the size-on-disk figure (0 to skip).
    #[arg(long, default_value_t = 100_000)]
    size_records: u64,
    /// Where to put the databases (default: a temporary folder, removed after).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// One JSON line per figure instead of text.
    #[arg(long)]
    json: bool,
}

/// Pre-executes `n` requests into log entries (not timed).
fn entries(mix: Mix, n: u64) -> Vec<LogEntry> {
    Workload::new(42, mix).execute(&mut ClinicState::new(), 1, n, |position| position)
}

fn progress(len: u64, what: String) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:32} {bar:40} {pos}/{len} {per_sec}")
            .expect("valid template"),
    );
    bar.set_message(what);
    bar
}

pub fn run(b: StoreBench) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = b.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let log = entries(Mix::CreatesOnly, b.effects);
    for &sync in &b.sync {
        for &batch in &b.batch {
            anyhow::ensure!(batch > 0, "--batch sizes must be at least 1");
            let path = dir.join(format!("bench-{sync:?}-{batch}.db").to_lowercase());
            let _ = std::fs::remove_file(&path);
            let mut store = Store::open(&path, sync)?;
            let bar = progress(b.effects, format!("sync={sync:?} batch={batch}"));
            let start = Instant::now();
            for group in log.chunks(batch) {
                store.commit(group)?;
                bar.inc(group.len() as u64);
            }
            let secs = start.elapsed().as_secs_f64();
            bar.finish_and_clear();
            let rate = b.effects as f64 / secs;
            if b.json {
                println!(
                    "{}",
                    serde_json::json!({"bench": "store", "sync": format!("{sync:?}").to_lowercase(), "batch": batch, "effects": b.effects, "seconds": secs, "effects_per_sec": rate})
                );
            } else {
                println!(
                    "sync={:<6} batch={:<3} {:>9.0} effects/s  ({} effects in {:.2} s, {:.1} commits/s)",
                    format!("{sync:?}").to_lowercase(),
                    batch,
                    rate,
                    b.effects,
                    secs,
                    b.effects as f64 / batch as f64 / secs
                );
            }
            drop(store);
            let _ = std::fs::remove_file(&path);
        }
    }
    if b.size_records > 0 {
        let path = dir.join("bench-size.db");
        let _ = std::fs::remove_file(&path);
        let mut store = Store::open(&path, SyncMode::Normal)?;
        let log = entries(Mix::AllCreates, b.size_records);
        let bar = progress(b.size_records, format!("{} records", b.size_records));
        for group in log.chunks(256) {
            store.commit(group)?;
            bar.inc(group.len() as u64);
        }
        bar.finish_and_clear();
        store.checkpoint()?;
        let bytes = store.disk_size();
        let records = store.records()?.len();
        if b.json {
            println!(
                "{}",
                serde_json::json!({"bench": "store-size", "records": records, "bytes": bytes, "bytes_per_record": bytes as f64 / records as f64})
            );
        } else {
            println!(
                "size: {records} records (with their replies and audit lines) take {:.1} MiB on disk ({:.0} bytes per record)",
                bytes as f64 / 1048576.0,
                bytes as f64 / records as f64
            );
        }
    }
    Ok(())
}
