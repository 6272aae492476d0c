//! The clinic domain as a deterministic state machine, in memory.
//!
//! Two steps, as replication needs them:
//! - [`ClinicState::execute`] (leader only) validates a request against the
//!   current state, assigns IDs, and returns the reply and an [`Effect`]. It
//!   does not change the state.
//! - [`ClinicState::apply`] (every replica) applies an effect. It never
//!   validates or assigns anything, so the same effects in the same order give
//!   the same state everywhere.
//!
//! Invariants (asserted): a record's ID kind matches its body; record IDs are
//! unique and never reused; the name index (when kept), counts and digest
//! always agree with the records.
//!
//! The name index serves only `listRecords`, which only a leader executes:
//! a backup drops it ([`ClinicState::keep_name_index`]) and saves a B-tree
//! insert per change; a leader that took over builds it at its first list.
//! Without it a list is a scan, with the same result.

use crate::model::{
    Clinic, Counts, Doctor, ManagerId, Nurse, Record, RecordBody, RecordId, RecordKind,
};
use crate::ops::{
    AuditEntry, Change, DomainError, Effect, Outcome, Reply, Request, MAX_PAGE_RECORDS,
};
use crate::validate::{self, cut};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A digest of the records: equal exactly when the sets of records are equal
/// (up to SHA-256 collisions). It is the XOR of the SHA-256 of each record's
/// canonical encoding, so it is kept up to date in O(1) per change; IDs are
/// unique, so no two equal records can cancel out.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct StateDigest(pub [u8; 32]);

impl StateDigest {
    /// Adds `record` to the digest, or removes it if it was in.
    pub(crate) fn toggle(&mut self, record: &Record) {
        let h = Sha256::digest(record.canonical_bytes());
        for (d, x) in self.0.iter_mut().zip(h.iter()) {
            *d ^= x;
        }
    }

    /// The digest of a set of records.
    pub fn of<'a>(records: impl IntoIterator<Item = &'a Record>) -> StateDigest {
        let mut d = StateDigest::default();
        for r in records {
            d.toggle(r);
        }
        d
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Debug for StateDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateDigest({})", self.short())
    }
}

impl fmt::Display for StateDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Longest argument value kept in an audit line, in characters.
const AUDIT_VALUE_CHARS: usize = 120;

/// All records, with the indexes the operations need.
#[derive(Clone, Debug)]
pub struct ClinicState {
    records: BTreeMap<RecordId, Record>,
    /// (clinic, lower-case last name, ID): listing order within a clinic.
    /// `None` when not kept (see the module docs).
    by_name: Option<NameIndex>,
    counts: Counts,
    /// Highest number used so far per kind (doctor, nurse); 0 when none.
    highest: [u32; 2],
    digest: StateDigest,
}

type NameIndex = BTreeSet<(Clinic, String, RecordId)>;

fn name_key(r: &Record) -> (Clinic, String, RecordId) {
    (r.clinic, r.last_name().to_lowercase(), r.id)
}

impl Default for ClinicState {
    fn default() -> ClinicState {
        ClinicState {
            records: BTreeMap::new(),
            by_name: Some(NameIndex::new()),
            counts: Counts::default(),
            highest: [0; 2],
            digest: StateDigest::default(),
        }
    }
}

fn kind_slot(kind: RecordKind) -> usize {
    match kind {
        RecordKind::Doctor => 0,
        RecordKind::Nurse => 1,
    }
}

impl ClinicState {
    pub fn new() -> ClinicState {
        ClinicState::default()
    }

    /// Builds the state from stored records (any order).
    pub fn from_records(records: impl IntoIterator<Item = Record>) -> ClinicState {
        let mut s = ClinicState::new();
        for r in records {
            assert!(
                !s.records.contains_key(&r.id),
                "duplicate stored record {}",
                r.id
            );
            s.insert(r);
        }
        s
    }

    pub fn digest(&self) -> StateDigest {
        self.digest
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Keeps the name index (building it, in O(n log n), if it was
    /// dropped) or drops it. Lists give the same result either way.
    pub fn keep_name_index(&mut self, keep: bool) {
        match (keep, self.by_name.is_some()) {
            (true, false) => self.by_name = Some(self.records.values().map(name_key).collect()),
            (false, true) => self.by_name = None,
            _ => {}
        }
    }

    /// Whether the name index is kept.
    pub fn has_name_index(&self) -> bool {
        self.by_name.is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn get(&self, id: RecordId) -> Option<&Record> {
        self.records.get(&id)
    }

    /// All records in ID order.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.records.values()
    }

    /// The ID the next created record of `kind` gets, if any are left.
    pub fn next_id(&self, kind: RecordKind) -> Option<RecordId> {
        let highest = self.highest[kind_slot(kind)];
        let number = if highest == 0 {
            RecordId::FIRST
        } else {
            highest.checked_add(1)?
        };
        (number <= RecordId::LAST).then_some(RecordId { kind, number })
    }

    /// Validates and executes `request` at time `now_ms` (the leader's clock),
    /// without changing the state. Returns the client's reply and the effect
    /// every replica must apply (a refused request yields an effect with no
    /// change: only its audit line).
    pub fn execute(&self, request: &Request, now_ms: u64) -> (Reply, Effect) {
        let manager = ManagerId::parse(request.manager_id()).ok();
        let result = self.decide(request);
        let (reply, change) = match result {
            Ok((outcome, change)) => (Ok(outcome), change),
            Err(e) => (Err(e), None),
        };
        let audit = AuditEntry {
            time_ms: now_ms,
            manager_id: cut(request.manager_id().trim(), 20).to_string(),
            clinic: manager.map(|m| m.clinic),
            operation: request.operation().to_string(),
            arguments: request
                .arguments()
                .iter()
                .map(|(k, v)| format!("{k}={:?}", cut(v, AUDIT_VALUE_CHARS)))
                .collect::<Vec<_>>()
                .join(" "),
            outcome: outcome_text(&reply),
            // Known to the executing leader only: it sets it.
            authenticated: None,
        };
        (reply, Effect { change, audit })
    }

    fn decide(&self, request: &Request) -> Result<(Outcome, Option<Change>), DomainError> {
        let manager = validate::manager_id(request.manager_id())?;
        match request {
            Request::CreateDoctor { fields: f, .. } => {
                let doctor = Doctor {
                    first_name: validate::text("firstName", &f.first_name)?,
                    last_name: validate::text("lastName", &f.last_name)?,
                    address: validate::text("address", &f.address)?,
                    phone: validate::phone("phone", &f.phone)?,
                    specialization: validate::text("specialization", &f.specialization)?,
                    location: validate::location(&f.location)?,
                };
                self.create(manager, RecordBody::Doctor(doctor))
            }
            Request::CreateNurse { fields: f, .. } => {
                let nurse = Nurse {
                    first_name: validate::text("firstName", &f.first_name)?,
                    last_name: validate::text("lastName", &f.last_name)?,
                    designation: validate::designation(&f.designation)?,
                    status: validate::status(&f.status)?,
                    status_date: validate::status_date(&f.status_date)?,
                };
                self.create(manager, RecordBody::Nurse(nurse))
            }
            Request::GetRecordCounts { .. } => Ok((Outcome::Counts(self.counts), None)),
            Request::EditRecord {
                record_id,
                field_name,
                new_value,
                ..
            } => {
                let id = validate::record_id(record_id)?;
                let current = self.own_record(manager, id)?;
                let mut updated = current.clone();
                edit_field(&mut updated.body, field_name, new_value)?;
                let change = (updated != *current).then_some(Change::Update(updated));
                Ok((Outcome::RecordId(id), change))
            }
            Request::TransferRecord {
                record_id,
                remote_clinic,
                ..
            } => {
                let id = validate::record_id(record_id)?;
                let target = validate::clinic("remoteClinicServerName", remote_clinic)?;
                let current = self.own_record(manager, id)?;
                if target == current.clinic {
                    return Err(DomainError::invalid(
                        "remoteClinicServerName",
                        format!("{id} is already in {target}; choose another clinic"),
                    ));
                }
                let mut moved = current.clone();
                moved.clinic = target;
                Ok((Outcome::RecordId(id), Some(Change::Update(moved))))
            }
            Request::GetRecord { record_id, .. } => {
                let id = validate::record_id(record_id)?;
                let record = self.own_record(manager, id)?;
                Ok((Outcome::Record(record.clone()), None))
            }
            Request::ListRecords {
                last_name_prefix, ..
            } => {
                let prefix = validate::prefix(last_name_prefix)?.to_lowercase();
                let list = self.list(manager.clinic, &prefix, None, usize::MAX);
                Ok((Outcome::Records(list), None))
            }
            Request::ListRecordsPage {
                last_name_prefix,
                after_record_id,
                max_count,
                ..
            } => {
                let prefix = validate::prefix(last_name_prefix)?.to_lowercase();
                if *max_count == 0 {
                    return Err(DomainError::invalid("maxCount", "must be at least 1"));
                }
                let after = if after_record_id.trim().is_empty() {
                    None
                } else {
                    let id = RecordId::parse(after_record_id)
                        .map_err(|why| DomainError::invalid("afterRecordID", why))?;
                    // Last names never change and records are never
                    // removed: a record's place in the order is fixed, even
                    // after a transfer to another clinic.
                    let record = self.records.get(&id).ok_or_else(|| {
                        DomainError::invalid("afterRecordID", format!("no record {id}"))
                    })?;
                    Some(name_key(record))
                };
                let want = (*max_count).min(MAX_PAGE_RECORDS) as usize;
                // One more than asked tells whether a next page exists.
                let mut records = self.list(manager.clinic, &prefix, after, want + 1);
                let next_after = if records.len() > want {
                    records.truncate(want);
                    records.last().map(|r| r.id)
                } else {
                    None
                };
                Ok((
                    Outcome::RecordPage {
                        records,
                        next_after,
                    },
                    None,
                ))
            }
        }
    }

    /// The records of `clinic` whose lowercased last name starts with
    /// `prefix`, in (last name, ID) order, strictly after `after` (a
    /// position in that order), at most `limit`.
    fn list(
        &self,
        clinic: Clinic,
        prefix: &str,
        after: Option<(Clinic, String, RecordId)>,
        limit: usize,
    ) -> Vec<Record> {
        let start = (clinic, prefix.to_string(), RecordId::min());
        // Only this clinic's keys count; a cursor from another clinic
        // (transferred since) still orders by its name and ID.
        let after = after.map(|(_, name, id)| (clinic, name, id));
        let from = match &after {
            Some(a) if *a >= start => std::ops::Bound::Excluded(a.clone()),
            _ => std::ops::Bound::Included(start),
        };
        let matches = |c: &Clinic, name: &String| *c == clinic && name.starts_with(prefix);
        match &self.by_name {
            Some(index) => index
                .range((from, std::ops::Bound::Unbounded))
                .take_while(|(c, name, _)| matches(c, name))
                .take(limit)
                .map(|(_, _, id)| self.records[id].clone())
                .collect(),
            None => {
                // No index (a backup): a scan, in the index's order.
                let mut found: Vec<_> = self
                    .records
                    .values()
                    .filter(|r| r.clinic == clinic)
                    .map(name_key)
                    .filter(|k| matches(&k.0, &k.1))
                    .filter(|k| match &from {
                        std::ops::Bound::Excluded(a) => k > a,
                        _ => true,
                    })
                    .collect();
                found.sort_unstable();
                found
                    .into_iter()
                    .take(limit)
                    .map(|(_, _, id)| self.records[&id].clone())
                    .collect()
            }
        }
    }

    fn create(
        &self,
        manager: ManagerId,
        body: RecordBody,
    ) -> Result<(Outcome, Option<Change>), DomainError> {
        let kind = match body {
            RecordBody::Doctor(_) => RecordKind::Doctor,
            RecordBody::Nurse(_) => RecordKind::Nurse,
        };
        let id = self.next_id(kind).ok_or_else(|| DomainError::Exhausted {
            reason: format!(
                "all {} record IDs up to {} are used",
                kind.as_str(),
                RecordId::LAST
            ),
        })?;
        let record = Record {
            id,
            clinic: manager.clinic,
            body,
        };
        Ok((Outcome::RecordId(id), Some(Change::Create(record))))
    }

    /// The record, if it exists and is now in the manager's clinic.
    fn own_record(&self, manager: ManagerId, id: RecordId) -> Result<&Record, DomainError> {
        let record = self.records.get(&id).ok_or(DomainError::NotFound {
            record_id: id.to_string(),
        })?;
        if record.clinic != manager.clinic {
            return Err(DomainError::NotAuthorized {
                manager_id: manager.to_string(),
                reason: format!(
                    "{id} is in {}, not in the manager's clinic {}",
                    record.clinic, manager.clinic
                ),
            });
        }
        Ok(record)
    }

    /// Applies an effect. Never validates: the leader did.
    pub fn apply(&mut self, effect: &Effect) {
        if let Some(change) = &effect.change {
            self.apply_change(change);
        }
    }

    fn apply_change(&mut self, change: &Change) {
        let record = change.record();
        match change {
            Change::Create(_) => {
                // IDs are assigned in increasing order and never reused.
                assert!(
                    record.id.number > self.highest[kind_slot(record.id.kind)],
                    "create of {} after a higher or equal ID",
                    record.id
                );
            }
            Change::Update(_) => {
                let old = self
                    .records
                    .remove(&record.id)
                    .unwrap_or_else(|| panic!("update of missing record {}", record.id));
                assert_eq!(
                    old.kind(),
                    record.kind(),
                    "an update never changes the kind"
                );
                self.unindex(&old);
            }
        }
        self.insert(record.clone());
    }

    fn insert(&mut self, record: Record) {
        assert_eq!(
            record.id.kind,
            record.kind(),
            "record ID kind must match its body"
        );
        let slot = &mut self.highest[kind_slot(record.id.kind)];
        *slot = (*slot).max(record.id.number);
        self.index(&record);
        self.records.insert(record.id, record);
    }

    fn index(&mut self, r: &Record) {
        if let Some(index) = &mut self.by_name {
            index.insert(name_key(r));
        }
        self.counts.0[r.clinic.index()] += 1;
        self.digest.toggle(r);
    }

    fn unindex(&mut self, r: &Record) {
        if let Some(index) = &mut self.by_name {
            let removed = index.remove(&name_key(r));
            assert!(removed, "index out of step with records");
        }
        self.counts.0[r.clinic.index()] -= 1;
        self.digest.toggle(r);
    }
}

impl RecordId {
    /// The smallest ID in sort order, for range scans.
    pub fn min() -> RecordId {
        RecordId {
            kind: RecordKind::Doctor,
            number: 0,
        }
    }
}

/// Applies an edit of `field_name` to `body`, validating the new value.
fn edit_field(body: &mut RecordBody, field_name: &str, new_value: &str) -> Result<(), DomainError> {
    let field = field_name.trim();
    match body {
        RecordBody::Doctor(d) => {
            if field.eq_ignore_ascii_case("address") {
                d.address = validate::text("address", new_value)?;
            } else if field.eq_ignore_ascii_case("phone") {
                d.phone = validate::phone("phone", new_value)?;
            } else if field.eq_ignore_ascii_case("location") {
                d.location = validate::location(new_value)?;
            } else {
                return Err(DomainError::invalid(
                    "fieldName",
                    format!(
                        "{:?} cannot be edited on a doctor record; expected address, phone or location",
                        cut(field, 40)
                    ),
                ));
            }
        }
        RecordBody::Nurse(n) => {
            if field.eq_ignore_ascii_case("designation") {
                n.designation = validate::designation(new_value)?;
            } else if field.eq_ignore_ascii_case("status") {
                n.status = validate::status(new_value)?;
            } else if field.eq_ignore_ascii_case("statusDate") {
                n.status_date = validate::status_date(new_value)?;
            } else {
                return Err(DomainError::invalid(
                    "fieldName",
                    format!(
                        "{:?} cannot be edited on a nurse record; expected designation, status or statusDate",
                        cut(field, 40)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A short description of an outcome, for the audit trail.
/// The audit line's outcome for `reply`: `ok: ...` or `error: ...`.
pub fn outcome_text(reply: &Reply) -> String {
    match reply {
        Ok(o) => format!("ok: {}", describe(o)),
        Err(e) => format!("error: {e}"),
    }
}

fn describe(o: &Outcome) -> String {
    match o {
        Outcome::RecordId(id) => id.to_string(),
        Outcome::Counts(c) => c.to_string(),
        Outcome::Record(r) => r.id.to_string(),
        Outcome::Records(list) => format!("{} records", list.len()),
        Outcome::RecordPage { records, .. } => format!("a page of {} records", records.len()),
    }
}

#[cfg(test)]
pub(crate) mod tests;
