//! Who a client is, over IIOP with TLS: the manager its certificate names.
//!
//! A manager's certificate (made by `dcms cert issue`, `dcms_node::pki`)
//! names the manager twice: its subject's common name is the manager ID,
//! and it has a URI subject alternative name `urn:dcms:manager:ID`. The
//! certificate was verified in the TLS handshake (chain to the cluster's
//! CA, dates, `clientAuth` usage); here it is only read. A request over
//! TLS is run only when its `managerID` is one the certificate names
//! ([`check`]); anything else is `DCMS::NotAuthorized`, before the
//! request reaches the service, so nothing changes.

use dcms_core::{DomainError, ManagerId};
use rustorb_core::CertificateDer;

/// The prefix of a manager's URI subject alternative name.
pub const MANAGER_URN_PREFIX: &str = "urn:dcms:manager:";

/// The manager IDs a certificate names, canonical (`MTL0001`), each once:
/// its subject's common names and its `urn:dcms:manager:` URIs that are
/// valid manager IDs. Empty for a certificate that does not parse or names
/// none.
pub fn identities(cert: &CertificateDer<'_>) -> Vec<ManagerId> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                if let Some(id) = uri.strip_prefix(MANAGER_URN_PREFIX) {
                    names.push(id.to_string());
                }
            }
        }
    }
    let mut ids: Vec<ManagerId> = Vec::new();
    for id in names.iter().filter_map(|n| ManagerId::parse(n).ok()) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// Whether a request for `manager_id` may run for a client that presented
/// `chain` (end entity first; `None`: no certificate). The manager ID is
/// compared in its canonical form (`mtl0001` is `MTL0001`).
/// `Err(NotAuthorized)` naming the request's manager ID and the
/// certificate's identities otherwise. Returns the authenticated identity.
pub fn check(
    manager_id: &str,
    chain: Option<&[CertificateDer<'static>]>,
) -> Result<ManagerId, DomainError> {
    let refuse = |reason: String| DomainError::NotAuthorized {
        manager_id: manager_id.trim().chars().take(32).collect(),
        reason,
    };
    let Some(leaf) = chain.and_then(<[_]>::first) else {
        return Err(refuse("no client certificate".into()));
    };
    let ids = identities(leaf);
    let claimed = ManagerId::parse(manager_id).ok();
    match claimed {
        Some(id) if ids.contains(&id) => Ok(id),
        _ if ids.is_empty() => Err(refuse("the client certificate names no manager".into())),
        _ => {
            let names: Vec<String> = ids.iter().map(ManagerId::to_string).collect();
            Err(refuse(format!(
                "the client certificate is for {}",
                names.join(", ")
            )))
        }
    }
}
