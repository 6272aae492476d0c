//! The store thread: carries out on a replica's SQLite [`Store`], in the
//! order handed over, the protocol's persist batches (grouping whatever
//! queued up during the previous commit into one transaction: group commit)
//! and snapshot installs. Reports each durable position, and each finished
//! install, back to the event loop. SQLite calls block, so they stay off the
//! runtime, except [`Persister::commit_here`]: a commit on the caller's
//! thread while the store thread has nothing in hand (a backup's, see
//! `replica/ready.rs`).

use dcms_core::{Batch, RequestKey, Store};
use dcms_repl::snapshot::Snapshot;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

enum Command {
    Commit(Batch),
    Install(Box<Snapshot>),
    /// Drop silent streams' replies up to their heads (reports nothing).
    ForgetReplies(Vec<RequestKey>),
}

pub struct Persister {
    tx: std::sync::mpsc::Sender<Command>,
    /// Shared with the thread, which holds it only while it works.
    store: Arc<Mutex<Store>>,
    /// Commands handed to the thread, and those whose report the event
    /// loop has seen ([`Persister::note`]).
    sent: u64,
    seen: u64,
}

/// What the store thread reports, in the order the work was handed over.
#[derive(Debug)]
pub enum Persisted {
    /// Every entry up to `position` is durable; the report covers this
    /// many commands (batches handed over meanwhile join one commit) of
    /// `entries` entries, committed in `took`.
    UpTo {
        position: u64,
        commands: u64,
        entries: u64,
        took: std::time::Duration,
    },
    /// A snapshot install is durable.
    Installed,
    /// The store failed; the replica must stop (it can no longer promise
    /// durability).
    Failed(String),
}

impl Persister {
    /// Starts the thread. `done` receives reports in order.
    pub fn start(store: Store, done: mpsc::UnboundedSender<Persisted>) -> Persister {
        let (tx, rx) = std::sync::mpsc::channel::<Command>();
        let store = Arc::new(Mutex::new(store));
        let shared = store.clone();
        std::thread::Builder::new()
            .name("dcms-store".into())
            .spawn(move || {
                let mut next = rx.recv().ok();
                while let Some(command) = next.take() {
                    let mut store = shared.lock().expect("the store lock is never poisoned");
                    let report = match command {
                        Command::Commit(mut batch) => {
                            // Later batches join this transaction; an install
                            // waits for the next turn (never merged across).
                            let mut commands = 1;
                            loop {
                                match rx.try_recv() {
                                    Ok(Command::Commit(more)) => {
                                        batch.append(more);
                                        commands += 1;
                                    }
                                    Ok(install) => {
                                        next = Some(install);
                                        break;
                                    }
                                    Err(_) => break,
                                }
                            }
                            let last = batch.entries().last().map(|e| e.position);
                            let started = std::time::Instant::now();
                            store.commit_batch(&batch).map(|()| {
                                Some(Persisted::UpTo {
                                    position: last.unwrap_or(0),
                                    commands,
                                    entries: batch.len() as u64,
                                    took: started.elapsed(),
                                })
                            })
                        }
                        Command::Install(s) => {
                            install(&mut store, &s).map(|()| Some(Persisted::Installed))
                        }
                        Command::ForgetReplies(heads) => {
                            store.forget_replies(&heads).map(|()| None)
                        }
                    };
                    drop(store);
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
        Persister {
            tx,
            store,
            sent: 0,
            seen: 0,
        }
    }

    /// Queues entries (in log order) for durable commit.
    pub fn persist(&mut self, entries: Batch) {
        self.sent += 1;
        // A closed channel means the thread stopped after a failure, which
        // it has reported already.
        let _ = self.tx.send(Command::Commit(entries));
    }

    /// Queues a snapshot install, after everything queued before it.
    pub fn install(&mut self, snapshot: Box<Snapshot>) {
        self.sent += 1;
        let _ = self.tx.send(Command::Install(snapshot));
    }

    /// Queues dropping the replies of silent streams up to their heads,
    /// after everything queued before. It sends no report and does not
    /// count as work in hand: it touches no position, and deletes only
    /// replies up to a head, so a commit made meanwhile on the event loop
    /// (of newer numbers) is unaffected whatever the order.
    pub fn forget_replies(&mut self, heads: Vec<RequestKey>) {
        let _ = self.tx.send(Command::ForgetReplies(heads));
    }

    /// Notes a report of the thread; the event loop passes on every one.
    pub fn note(&mut self, report: &Persisted) {
        self.seen += match report {
            Persisted::UpTo { commands, .. } => *commands,
            Persisted::Installed => 1,
            Persisted::Failed(_) => 0,
        };
        assert!(self.seen <= self.sent, "more reports than commands");
    }

    /// Whether the thread has done everything handed to it and the event
    /// loop has seen every report.
    pub fn idle(&self) -> bool {
        self.seen == self.sent
    }

    /// Commits `entries` on the calling thread, at once, and returns the
    /// last position now durable. Only when [`idle`](Self::idle), so that
    /// the work keeps its order.
    pub fn commit_here(&mut self, entries: &Batch) -> Result<Option<u64>, dcms_core::StoreError> {
        assert!(self.idle(), "a commit here would overtake the store thread");
        let mut store = self.store.lock().expect("the store lock is never poisoned");
        store.commit_batch(entries)?;
        Ok(entries.entries().last().map(|e| e.position))
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
        s.position,
        s.log_hash,
        s.digest,
        &s.records,
        &heads,
        replies,
        &s.retained,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcms_core::store::LogHash;
    use dcms_core::workload::{Mix, Workload};
    use dcms_core::{ClinicState, LogEntry, SyncMode};

    /// `n` log entries from `first`, executed on `state` as a leader would,
    /// chained on from `hash` (left at the hash after them).
    fn entries(
        state: &mut ClinicState,
        work: &mut Workload,
        hash: &mut Option<LogHash>,
        first: u64,
        n: u64,
    ) -> Batch {
        let entries: Vec<LogEntry> = (first..first + n)
            .map(|position| {
                let (reply, effect) = state.execute(&work.create_doctor(), position);
                state.apply(&effect);
                LogEntry {
                    position,
                    key: RequestKey {
                        stream: 9,
                        seq: position,
                    },
                    effect,
                    reply,
                    ft: None,
                }
            })
            .collect();
        let batch = Batch::chained(*hash, entries);
        *hash = *batch.hashes().last().expect("n > 0");
        batch
    }

    /// The thread's batches and the caller's commits reach the store in the
    /// order handed over: a commit here waits until every report is seen.
    #[tokio::test]
    async fn commits_here_never_overtake_the_thread() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("r.db");
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let mut p = Persister::start(Store::open(&path, SyncMode::Normal).unwrap(), done_tx);
        let (mut state, mut work) = (ClinicState::new(), Workload::new(1, Mix::CreatesOnly));
        let mut hash = Some(LogHash::EMPTY);
        assert!(p.idle());
        p.persist(entries(&mut state, &mut work, &mut hash, 1, 3));
        p.persist(entries(&mut state, &mut work, &mut hash, 4, 2));
        assert!(!p.idle(), "two batches in the thread's hands");
        let mut durable = 0;
        while !p.idle() {
            let report = done_rx.recv().await.unwrap();
            p.note(&report);
            match report {
                Persisted::UpTo { position, .. } => durable = position,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(durable, 5, "both batches durable once every report is seen");
        assert_eq!(
            p.commit_here(&entries(&mut state, &mut work, &mut hash, 6, 4))
                .unwrap(),
            Some(9)
        );
        p.persist(entries(&mut state, &mut work, &mut hash, 10, 1));
        let report = done_rx.recv().await.unwrap();
        p.note(&report);
        assert!(matches!(
            report,
            Persisted::UpTo {
                position: 10,
                commands: 1,
                entries: 1,
                ..
            }
        ));
        assert!(p.idle());
        drop(p);
        let store = Store::open(&path, SyncMode::Normal).unwrap();
        assert_eq!(store.last_applied(), 10);
        assert_eq!(store.digest().unwrap(), state.digest());
    }

    #[test]
    #[should_panic(expected = "overtake")]
    fn a_commit_here_while_the_thread_works_is_refused() {
        let dir = tempfile::TempDir::new().unwrap();
        let (done_tx, _done_rx) = mpsc::unbounded_channel();
        let store = Store::open(dir.path().join("r.db"), SyncMode::Normal).unwrap();
        let mut p = Persister::start(store, done_tx);
        let (mut state, mut work) = (ClinicState::new(), Workload::new(1, Mix::CreatesOnly));
        let mut hash = Some(LogHash::EMPTY);
        p.persist(entries(&mut state, &mut work, &mut hash, 1, 1));
        let _ = p.commit_here(&entries(&mut state, &mut work, &mut hash, 2, 1));
    }
}
