//! The store thread: owns a replica's SQLite [`Store`] and commits what the
//! protocol hands it, grouping everything that queued up during the previous
//! commit into one transaction (group commit). Reports each durable position
//! back to the event loop. SQLite calls block, so they stay off the runtime.

use dcms_core::{LogEntry, Store};
use tokio::sync::mpsc;

pub struct Persister {
    tx: std::sync::mpsc::Sender<Vec<LogEntry>>,
}

/// What the store thread reports.
#[derive(Debug)]
pub enum Persisted {
    /// Every entry up to this position is durable.
    UpTo(u64),
    /// A commit failed; the replica must stop (it can no longer promise durability).
    Failed(String),
}

impl Persister {
    /// Starts the thread. `done` receives durable positions in order.
    pub fn start(mut store: Store, done: mpsc::UnboundedSender<Persisted>) -> Persister {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<LogEntry>>();
        std::thread::Builder::new()
            .name("dcms-store".into())
            .spawn(move || {
                while let Ok(mut batch) = rx.recv() {
                    // Everything else already waiting joins this transaction.
                    while let Ok(more) = rx.try_recv() {
                        batch.extend(more);
                    }
                    let last = batch.last().map(|e| e.position);
                    match store.commit(&batch) {
                        Ok(()) => {
                            if let Some(last) = last {
                                if done.send(Persisted::UpTo(last)).is_err() {
                                    return;
                                }
                            }
                        }
                        Err(e) => {
                            let _ = done.send(Persisted::Failed(e.to_string()));
                            return;
                        }
                    }
                }
            })
            .expect("spawn the store thread");
        Persister { tx }
    }

    /// Queues entries (in log order) for durable commit.
    pub fn persist(&self, entries: Vec<LogEntry>) {
        // A closed channel means the thread stopped after a failure, which
        // it has reported already.
        let _ = self.tx.send(entries);
    }
}
