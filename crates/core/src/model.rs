//! Value types of the clinic domain: clinics, manager and record IDs, and the
//! two kinds of record.
//!
//! Every type here is already valid: parsing is the only way in from text, so a
//! `ManagerId` or a `Date` that exists is one the rules accept. Codes and
//! enumerations parse in any letter case and print in one canonical case.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One of the three clinics. Declared in the order counts are reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Clinic {
    Mtl,
    Lvl,
    Ddo,
}

impl Clinic {
    /// Every clinic, in reporting order (MTL, LVL, DDO).
    pub const ALL: [Clinic; 3] = [Clinic::Mtl, Clinic::Lvl, Clinic::Ddo];

    /// The upper-case clinic code, as in manager IDs and server names.
    pub fn code(self) -> &'static str {
        match self {
            Clinic::Mtl => "MTL",
            Clinic::Lvl => "LVL",
            Clinic::Ddo => "DDO",
        }
    }

    /// The lower-case form used for a doctor's `location`.
    pub fn location(self) -> &'static str {
        match self {
            Clinic::Mtl => "mtl",
            Clinic::Lvl => "lvl",
            Clinic::Ddo => "ddo",
        }
    }

    /// The clinic's full name.
    pub fn name(self) -> &'static str {
        match self {
            Clinic::Mtl => "Montreal",
            Clinic::Lvl => "Laval",
            Clinic::Ddo => "Dollard-des-Ormeaux",
        }
    }

    /// Parses a clinic code in any letter case (surrounding blanks ignored).
    pub fn parse(text: &str) -> Option<Clinic> {
        let t = text.trim();
        Clinic::ALL
            .into_iter()
            .find(|c| c.code().eq_ignore_ascii_case(t))
    }

    /// Position in [`Clinic::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Clinic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A manager: a clinic code followed by exactly four digits (`MTL1234`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ManagerId {
    pub clinic: Clinic,
    pub number: u16,
}

impl ManagerId {
    /// Parses `CCCdddd`, the code in any case. Returns why not on failure.
    pub fn parse(text: &str) -> Result<ManagerId, &'static str> {
        let t = text.trim();
        if t.is_empty() {
            return Err("is empty; expected a clinic code and four digits, like MTL1234");
        }
        if t.len() != 7 || !t.is_ascii() {
            return Err("expected a clinic code (MTL, LVL or DDO) and four digits, like MTL1234");
        }
        let clinic =
            Clinic::parse(&t[..3]).ok_or("unknown clinic code; expected MTL, LVL or DDO")?;
        let digits = &t[3..];
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err("expected four digits after the clinic code, like MTL1234");
        }
        let number = digits.parse().map_err(|_| "expected four digits")?;
        Ok(ManagerId { clinic, number })
    }
}

impl fmt::Display for ManagerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:04}", self.clinic.code(), self.number)
    }
}

/// Doctor or nurse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RecordKind {
    Doctor,
    Nurse,
}

impl RecordKind {
    /// The two-letter prefix of this kind's record IDs.
    pub fn prefix(self) -> &'static str {
        match self {
            RecordKind::Doctor => "DR",
            RecordKind::Nurse => "NR",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Doctor => "doctor",
            RecordKind::Nurse => "nurse",
        }
    }
}

/// A record ID: `DR` or `NR` and five digits. Each kind has its own counter
/// from [`RecordId::FIRST`] to [`RecordId::LAST`]; IDs are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordId {
    pub kind: RecordKind,
    pub number: u32,
}

impl RecordId {
    pub const FIRST: u32 = 10_000;
    pub const LAST: u32 = 99_999;

    /// Parses `DRddddd` / `NRddddd`, the prefix in any case.
    pub fn parse(text: &str) -> Result<RecordId, &'static str> {
        let t = text.trim();
        if t.is_empty() {
            return Err("is empty; expected DR or NR and five digits, like DR10000");
        }
        if t.len() != 7 || !t.is_ascii() {
            return Err("expected DR or NR and five digits, like DR10000");
        }
        let kind = if t[..2].eq_ignore_ascii_case("DR") {
            RecordKind::Doctor
        } else if t[..2].eq_ignore_ascii_case("NR") {
            RecordKind::Nurse
        } else {
            return Err("unknown record prefix; expected DR (doctor) or NR (nurse)");
        };
        let digits = &t[2..];
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err("expected five digits after DR or NR");
        }
        let number: u32 = digits.parse().map_err(|_| "expected five digits")?;
        if number < Self::FIRST {
            return Err("record numbers start at 10000");
        }
        Ok(RecordId { kind, number })
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:05}", self.kind.prefix(), self.number)
    }
}

/// A nurse's designation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Designation {
    Junior,
    Senior,
}

impl Designation {
    pub fn parse(text: &str) -> Option<Designation> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("junior") {
            Some(Designation::Junior)
        } else if t.eq_ignore_ascii_case("senior") {
            Some(Designation::Senior)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Designation::Junior => "junior",
            Designation::Senior => "senior",
        }
    }
}

/// A nurse's employment status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NurseStatus {
    Active,
    Terminated,
}

impl NurseStatus {
    pub fn parse(text: &str) -> Option<NurseStatus> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("active") {
            Some(NurseStatus::Active)
        } else if t.eq_ignore_ascii_case("terminated") {
            Some(NurseStatus::Terminated)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NurseStatus::Active => "active",
            NurseStatus::Terminated => "terminated",
        }
    }
}

/// A calendar date, `YYYY-MM-DD`, checked against the real calendar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    /// Parses exactly `YYYY-MM-DD` (years 1000 to 9999) and rejects days that
    /// do not exist (2023-02-29, 2024-04-31).
    pub fn parse(text: &str) -> Result<Date, &'static str> {
        let t = text.trim();
        let b = t.as_bytes();
        let shape_ok = b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
        if !shape_ok {
            return Err("expected a date as YYYY-MM-DD");
        }
        let year: u16 = t[..4].parse().map_err(|_| "bad year")?;
        let month: u8 = t[5..7].parse().map_err(|_| "bad month")?;
        let day: u8 = t[8..].parse().map_err(|_| "bad day")?;
        if year < 1000 {
            return Err("the year must be 1000 or later");
        }
        if !(1..=12).contains(&month) {
            return Err("the month must be 01 to 12");
        }
        if day < 1 || day > days_in_month(year, month) {
            return Err("no such day in that month");
        }
        Ok(Date { year, month, day })
    }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            let leap =
                (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
            if leap {
                29
            } else {
                28
            }
        }
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// The fields of a doctor record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Doctor {
    pub first_name: String,
    pub last_name: String,
    pub address: String,
    pub phone: String,
    pub specialization: String,
    pub location: Clinic,
}

/// The fields of a nurse record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Nurse {
    pub first_name: String,
    pub last_name: String,
    pub designation: Designation,
    pub status: NurseStatus,
    pub status_date: Date,
}

/// What a record holds besides its ID and clinic.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecordBody {
    Doctor(Doctor),
    Nurse(Nurse),
}

/// A record, in the clinic that holds it now.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Record {
    pub id: RecordId,
    pub clinic: Clinic,
    pub body: RecordBody,
}

impl Record {
    pub fn first_name(&self) -> &str {
        match &self.body {
            RecordBody::Doctor(d) => &d.first_name,
            RecordBody::Nurse(n) => &n.first_name,
        }
    }

    /// About how many bytes this record takes as a `DCMS::Record` in CDR
    /// (eleven strings and an enum; each string a length, its UTF-8 bytes,
    /// a NUL and up to 3 bytes of alignment), never less than the truth.
    pub fn cdr_size(&self) -> usize {
        let text: usize = match &self.body {
            RecordBody::Doctor(d) => {
                d.first_name.len()
                    + d.last_name.len()
                    + d.address.len()
                    + d.phone.len()
                    + d.specialization.len()
                    + 3
            }
            RecordBody::Nurse(n) => n.first_name.len() + n.last_name.len() + 6 + 10 + 10,
        };
        // recordID (7) and clinic (3) too; the strings a kind leaves empty
        // still cost their length and NUL.
        4 + 11 * 8 + 7 + 3 + text
    }

    pub fn last_name(&self) -> &str {
        match &self.body {
            RecordBody::Doctor(d) => &d.last_name,
            RecordBody::Nurse(n) => &n.last_name,
        }
    }

    /// The record's kind; always agrees with the kind of its ID.
    pub fn kind(&self) -> RecordKind {
        match &self.body {
            RecordBody::Doctor(_) => RecordKind::Doctor,
            RecordBody::Nurse(_) => RecordKind::Nurse,
        }
    }

    /// A canonical byte encoding: equal exactly when the records are equal.
    /// The state digest is built from it.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // postcard is a canonical, length-prefixed encoding of these types.
        postcard::to_allocvec(self).expect("records always encode")
    }
}

/// Records per clinic (doctors and nurses together), in [`Clinic::ALL`] order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts(pub [u64; 3]);

impl Counts {
    pub fn get(&self, clinic: Clinic) -> u64 {
        self.0[clinic.index()]
    }
}

impl fmt::Display for Counts {
    /// `MTL 3, LVL 2, DDO 1`: every clinic, always in this order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, clinic) in Clinic::ALL.into_iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {}", clinic.code(), self.get(clinic))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clinic_codes_parse_in_any_case() {
        assert_eq!(Clinic::parse("mtl"), Some(Clinic::Mtl));
        assert_eq!(Clinic::parse(" LvL "), Some(Clinic::Lvl));
        assert_eq!(Clinic::parse("DDO"), Some(Clinic::Ddo));
        assert_eq!(Clinic::parse("QUE"), None);
        assert_eq!(Clinic::parse(""), None);
    }

    #[test]
    fn manager_ids() {
        let m = ManagerId::parse("mtl0042").unwrap();
        assert_eq!(m.clinic, Clinic::Mtl);
        assert_eq!(m.to_string(), "MTL0042");
        assert!(ManagerId::parse("MTL123").is_err());
        assert!(ManagerId::parse("MTL12345").is_err());
        assert!(ManagerId::parse("QUE1234").is_err());
        assert!(ManagerId::parse("MTL12a4").is_err());
        assert!(ManagerId::parse("").is_err());
        assert!(ManagerId::parse("MTL١٢٣٤").is_err()); // non-ASCII digits
    }

    #[test]
    fn record_ids() {
        let r = RecordId::parse("dr10000").unwrap();
        assert_eq!(r.kind, RecordKind::Doctor);
        assert_eq!(r.to_string(), "DR10000");
        assert_eq!(RecordId::parse("NR99999").unwrap().number, 99_999);
        assert!(RecordId::parse("DR09999").is_err());
        assert!(RecordId::parse("XR10000").is_err());
        assert!(RecordId::parse("DR1000").is_err());
        assert!(RecordId::parse("DR1000x").is_err());
    }

    #[test]
    fn dates_follow_the_calendar() {
        assert_eq!(Date::parse("2024-02-29").unwrap().to_string(), "2024-02-29");
        assert!(Date::parse("2023-02-29").is_err());
        assert!(Date::parse("1900-02-29").is_err());
        assert!(Date::parse("2000-02-29").is_ok());
        assert!(Date::parse("2024-04-31").is_err());
        assert!(Date::parse("2024-13-01").is_err());
        assert!(Date::parse("2024-00-10").is_err());
        assert!(Date::parse("2024-1-10").is_err());
        assert!(Date::parse("24-01-10").is_err());
        assert!(Date::parse("2024/01/10").is_err());
    }

    #[test]
    fn enumerations_are_case_insensitive_and_canonical() {
        assert_eq!(Designation::parse("SENIOR"), Some(Designation::Senior));
        assert_eq!(Designation::parse("Junior").unwrap().as_str(), "junior");
        assert_eq!(
            NurseStatus::parse("Terminated").unwrap().as_str(),
            "terminated"
        );
        assert_eq!(NurseStatus::parse("retired"), None);
    }

    #[test]
    fn counts_print_every_clinic_in_order() {
        assert_eq!(Counts([3, 2, 1]).to_string(), "MTL 3, LVL 2, DDO 1");
        assert_eq!(Counts::default().to_string(), "MTL 0, LVL 0, DDO 0");
    }
}
