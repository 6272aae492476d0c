//! The store thread: owns a replica's SQLite [`Store`] and carries out, in
//! the order handed over, the protocol's persist batches (grouping whatever
//! queued up during the previous commit into one transaction: group commit)
//! and snapshot installs. Reports each durable position, and each finished
//! install, back to the event loop. SQLite calls block, so they stay off the
//! runtime.

use dcms_core::{LogEntry, RequestKey, Store};
use dcms_repl::snapshot::Snapshot;
use tokio::sync::mpsc;

enum Command {
    Commit(Vec<LogEntry>),
    Install(Box<Snapshot>),
}

pub struct Persister {
    tx: std::sync::mpsc::Sender<Command>,
}

/// What the store thread reports, in the order the work was handed over.
#[derive(Debug)]
pub enum Persisted {
    /// Every entry up to this position is durable.
    UpTo(u64),
    /// A snapshot install is durable.
    Installed,
    /// The store failed; the replica must stop (it can no longer promise
    /// durability).
    Failed(String),
}

impl Persister {
    /// Starts the thread. `done` receives reports in order.
    pub fn start(mut store: Store, done: mpsc::UnboundedSender<Persisted>) -> Persister {
        let (tx, rx) = std::sync::mpsc::channel::<Command>();
        std::thread::Builder::new()
            .name("dcms-store".into())
            .spawn(move || {
                let mut next = rx.recv().ok();
                while let Some(command) = next.take() {
                    let report = match command {
                        Command::Commit(mut batch) => {
                            // Later batches join this transaction; an install
                            // waits for the next turn (never merged across).
                            loop {
                                match rx.try_recv() {
                                    Ok(Command::Commit(more)) => batch.extend(more),
                                    Ok(install) => {
                                        next = Some(install);
                                        break;
                                    }
                                    Err(_) => break,
                                }
                            }
                            let last = batch.last().map(|e| e.position);
                            store.commit(&batch).map(|()| last.map(Persisted::UpTo))
                        }
                        Command::Install(s) => {
                            install(&mut store, &s).map(|()| Some(Persisted::Installed))
                        }
                    };
                    match report {
                        Ok(Some(r)) => {
                            if done.send(r).is_err() {
                                return;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            let _ = done.send(Persisted::Failed(e.to_string()));
                            return;
                        }
                    }
                    if next.is_none() {
                        next = rx.recv().ok();
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
        let _ = self.tx.send(Command::Commit(entries));
    }

    /// Queues a snapshot install, after everything queued before it.
    pub fn install(&self, snapshot: Box<Snapshot>) {
        let _ = self.tx.send(Command::Install(snapshot));
    }
}

fn install(store: &mut Store, s: &Snapshot) -> Result<(), dcms_core::StoreError> {
    let heads: Vec<RequestKey> = s
        .streams
        .iter()
        .map(|st| RequestKey {
            stream: st.stream,
            seq: st.head,
        })
        .collect();
    let replies = s.streams.iter().flat_map(|st| {
        st.replies.iter().map(move |(seq, at, reply)| {
            (
                RequestKey {
                    stream: st.stream,
                    seq: *seq,
                },
                *at,
                reply,
            )
        })
    });
    store.install(
        s.position, s.log_hash, s.digest, &s.records, &heads, replies,
    )
}
