//! Field rules: each function takes raw client text and returns the
//! canonical value, or a [`DomainError::InvalidRequest`] naming the field and
//! what was expected. Values are trimmed first.

use crate::model::{Clinic, Date, Designation, ManagerId, NurseStatus, RecordId};
use crate::ops::{DomainError, MAX_TEXT_CHARS};

/// Free text (names, address, specialization): trimmed, 1 to
/// [`MAX_TEXT_CHARS`] characters, no control characters.
pub fn text(field: &str, raw: &str) -> Result<String, DomainError> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    let chars = t.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(DomainError::invalid(
            field,
            format!("is {chars} characters long; at most {MAX_TEXT_CHARS} are allowed"),
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(t.to_string())
}

/// A phone number: 7 to 20 digits, with an optional leading `+`, and spaces,
/// dashes or parentheses between them.
pub fn phone(field: &str, raw: &str) -> Result<String, DomainError> {
    let t = raw.trim();
    let body = t.strip_prefix('+').unwrap_or(t);
    if let Some(bad) = body
        .chars()
        .find(|c| !(c.is_ascii_digit() || matches!(c, ' ' | '-' | '(' | ')')))
    {
        return Err(DomainError::invalid(
            field,
            format!(
                "contains {bad:?}; expected 7 to 20 digits with an optional leading +, spaces, dashes or parentheses"
            ),
        ));
    }
    let digits = body.chars().filter(char::is_ascii_digit).count();
    if !(7..=20).contains(&digits) {
        return Err(DomainError::invalid(
            field,
            format!("has {digits} digits; expected 7 to 20"),
        ));
    }
    Ok(t.to_string())
}

pub fn manager_id(raw: &str) -> Result<ManagerId, DomainError> {
    ManagerId::parse(raw).map_err(|why| DomainError::invalid("managerID", why))
}

pub fn record_id(raw: &str) -> Result<RecordId, DomainError> {
    RecordId::parse(raw).map_err(|why| DomainError::invalid("recordID", why))
}

/// A clinic code (`MTL`, `LVL`, `DDO`) in any case.
pub fn clinic(field: &str, raw: &str) -> Result<Clinic, DomainError> {
    Clinic::parse(raw).ok_or_else(|| {
        DomainError::invalid(
            field,
            format!(
                "{:?} is not a clinic; expected MTL, LVL or DDO",
                cut(raw.trim(), 40)
            ),
        )
    })
}

pub fn location(raw: &str) -> Result<Clinic, DomainError> {
    Clinic::parse(raw).ok_or_else(|| {
        DomainError::invalid(
            "location",
            format!(
                "{:?} is not a location; expected mtl, lvl or ddo",
                cut(raw.trim(), 40)
            ),
        )
    })
}

pub fn designation(raw: &str) -> Result<Designation, DomainError> {
    Designation::parse(raw).ok_or_else(|| {
        DomainError::invalid(
            "designation",
            format!(
                "{:?} is not a designation; expected junior or senior",
                cut(raw.trim(), 40)
            ),
        )
    })
}

pub fn status(raw: &str) -> Result<NurseStatus, DomainError> {
    NurseStatus::parse(raw).ok_or_else(|| {
        DomainError::invalid(
            "status",
            format!(
                "{:?} is not a status; expected active or terminated",
                cut(raw.trim(), 40)
            ),
        )
    })
}

pub fn status_date(raw: &str) -> Result<Date, DomainError> {
    Date::parse(raw).map_err(|why| {
        DomainError::invalid("statusDate", format!("{:?}: {why}", cut(raw.trim(), 40)))
    })
}

/// A last-name prefix for listing: trimmed, may be empty, at most
/// [`MAX_TEXT_CHARS`] characters.
pub fn prefix(raw: &str) -> Result<String, DomainError> {
    let t = raw.trim();
    if t.chars().count() > MAX_TEXT_CHARS {
        return Err(DomainError::invalid(
            "lastNamePrefix",
            format!("at most {MAX_TEXT_CHARS} characters are allowed"),
        ));
    }
    Ok(t.to_string())
}

/// The first `max` characters of `s`, for echoing bad input in messages.
pub fn cut(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(e: DomainError) -> String {
        match e {
            DomainError::InvalidRequest { field, .. } => field,
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(text("firstName", "  Ann ").unwrap(), "Ann");
        assert_eq!(field_of(text("firstName", "   ").unwrap_err()), "firstName");
        assert!(text("address", &"a".repeat(100)).is_ok());
        assert!(
            text("address", &"é".repeat(100)).is_ok(),
            "limit counts characters, not bytes"
        );
        assert_eq!(
            field_of(text("address", &"a".repeat(101)).unwrap_err()),
            "address"
        );
        assert!(text("lastName", "O\u{0}Brien").is_err());
        assert_eq!(text("lastName", "Müller-Straße").unwrap(), "Müller-Straße");
    }

    #[test]
    fn phones() {
        assert!(phone("phone", "514-555-0199").is_ok());
        assert!(phone("phone", "+1 (514) 555 0199").is_ok());
        assert!(phone("phone", "5550199").is_ok());
        assert!(phone("phone", "555019").is_err(), "six digits");
        assert!(phone("phone", &"1".repeat(21)).is_err(), "21 digits");
        assert!(phone("phone", "514.555.0199").is_err(), "dots");
        assert!(phone("phone", "514-555-01x9").is_err());
        assert!(phone("phone", "1+5145550199").is_err(), "+ only in front");
        assert_eq!(field_of(phone("phone", "").unwrap_err()), "phone");
    }

    #[test]
    fn cut_respects_char_boundaries() {
        assert_eq!(cut("ééé", 2), "éé");
        assert_eq!(cut("ab", 5), "ab");
    }
}
