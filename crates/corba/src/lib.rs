//! dcms-corba: the CORBA front door of dcms (`idl/dcms.idl`).
//!
//! - [`service`]: [`ClinicService`], the narrow interface the front door
//!   calls, and [`Standalone`], one in-process store behind it.
//! - [`idl`]: the IDL's types and exceptions and their CDR marshalling.
//! - [`servant`]: the `DCMS::ClinicManagement` servant (dispatch of the
//!   seven operations, error mapping, admission control).
//! - [`server`]: [`serve`], an ORB serving a `ClinicService` at
//!   `corbaloc:iiop:HOST:PORT/DCMS`, optionally bound in CosNaming.
//! - [`client`]: [`ClinicClient`], typed stubs of the seven operations.
//! - [`ft`]: FT-CORBA's `FT_REQUEST` context (client ID, retention ID,
//!   expiration): interceptors that carry it between the wire and the
//!   servant or the client.
//! - [`auth`]: over IIOP with TLS, the manager a client's certificate
//!   names, and the check that a request is that manager's.
//! - [`group`]: the group reference naming every front end of a cluster
//!   ([`group_corbaloc`], [`group_ior`]; over TLS [`group_corbaloc_tls`],
//!   [`group_ior_tls`]).
//!
//! Built on rustorb-core 0.2 (a patched copy: `vendor/rustorb-core`, see
//! its PATCHES.md); the stubs and skeleton are hand-written.
//!
//! Tests: `cargo test -p dcms-corba` (marshalling, error mapping, dispatch
//! through a real ORB on 127.0.0.1); `scripts/venv.sh` then
//! `cargo test --test corba_interop` (omniORBpy, omniNames and catior
//! against `dcms frontend --standalone` and `dcms up`);
//! `cargo test --test corba_robustness` (raw-socket GIOP, overload, SIGTERM).
//! `cargo run --release -p dcms-corba --example loadgen -- URL|null
//! counts|create CLIENTS SECONDS` measures throughput and latency.

pub mod auth;
pub mod client;
pub mod ft;
pub mod group;
pub mod idl;
pub mod servant;
pub mod server;
pub mod service;

pub use client::{CallError, ClientOptions, ClientTls, ClinicClient};
pub use group::{group_corbaloc, group_corbaloc_tls, group_ior, group_ior_tls};
pub use idl::{DcmsException, IdlRecord, IdlRecordPage, RecordKind};
pub use servant::{Admission, ClinicServant};
pub use server::{serve, RunningServer, ServeError, ServeOptions, TlsFiles};
pub use service::{ClinicService, Done, ServiceError, Standalone};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
