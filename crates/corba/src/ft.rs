//! FT-CORBA's request identity: the `IOP::FT_REQUEST` service context.
//!
//! A client that sends `FT::FTRequestServiceContext { client_id,
//! retention_id, expiration_time }` with a request, and the same context
//! with every retry of it, gets it executed at most once, whichever front
//! end receives each try: the leader keeps the first execution's reply by
//! (client ID, retention ID) until the expiration, and answers a retry
//! with it. A request whose expiration has passed is not executed.
//!
//! The context reaches the servant through a portable interceptor and a
//! `PortableInterceptor::Current` slot, as the specification intends; our
//! client puts it in through the same slot. [`install`] registers the
//! interceptors for every ORB created afterwards (the servant's and
//! `ClinicClient`'s call it).
//!
//! `expiration_time` is a `TimeBase::TimeT`: 100-nanosecond units since
//! 15 October 1582, UTC.

use std::sync::{Arc, Once, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use dcms_core::store::MAX_FT_CLIENT_ID_BYTES;
use dcms_core::FtRequest;
use rustorb_core::giop::{service_id, ServiceContext};
use rustorb_core::pi::{
    ClientRequestInfo, ClientRequestInterceptor, InterceptError, Interceptor, OrbInitInfo,
    OrbInitializer, PiCurrent, ServerRequestInfo, ServerRequestInterceptor, SlotId,
};
use rustorb_core::{Any, SystemException, TCKind, TypeCode, Value};

/// `TimeBase::TimeT` of the Unix epoch (1970-01-01 in 100 ns units since
/// 1582-10-15).
const UNIX_EPOCH_TIME_T: u64 = 0x01B2_1DD2_1381_4000;

pub use dcms_core::store::MAX_FT_EXPIRATION_MS;

/// Milliseconds since the Unix epoch of a `TimeT` (0 for a time before it).
pub fn unix_ms_of_time_t(t: u64) -> u64 {
    t.saturating_sub(UNIX_EPOCH_TIME_T) / 10_000
}

/// The `TimeT` of milliseconds since the Unix epoch.
pub fn time_t_of_unix_ms(ms: u64) -> u64 {
    UNIX_EPOCH_TIME_T + ms * 10_000
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Encodes `ft` as the `FT_REQUEST` context's data: a CDR encapsulation
/// (big-endian) of `FTRequestServiceContext`.
pub fn encode_context(ft: &FtRequest) -> Vec<u8> {
    let mut out = vec![0u8]; // big-endian
    let pad = |out: &mut Vec<u8>, to: usize| {
        while !out.len().is_multiple_of(to) {
            out.push(0);
        }
    };
    pad(&mut out, 4);
    out.extend_from_slice(&(ft.client_id.len() as u32 + 1).to_be_bytes());
    out.extend_from_slice(ft.client_id.as_bytes());
    out.push(0);
    pad(&mut out, 4);
    out.extend_from_slice(&ft.retention_id.to_be_bytes());
    pad(&mut out, 8);
    out.extend_from_slice(&time_t_of_unix_ms(ft.expires_ms).to_be_bytes());
    out
}

/// Decodes an `FT_REQUEST` context's data. The error names what is wrong.
pub fn decode_context(data: &[u8]) -> Result<FtRequest, String> {
    let mut at = 1usize;
    let little = match data.first() {
        Some(0) => false,
        Some(1) => true,
        Some(b) => return Err(format!("byte order octet {b} is neither 0 nor 1")),
        None => return Err("empty encapsulation".into()),
    };
    let mut take = |align: usize, n: usize, what: &str| -> Result<&[u8], String> {
        at = at.div_ceil(align) * align;
        let bytes = data
            .get(at..at + n)
            .ok_or_else(|| format!("truncated before the end of {what}"))?;
        at += n;
        Ok(bytes)
    };
    let word = |b: &[u8]| {
        let b: [u8; 4] = b.try_into().expect("4 bytes");
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let len = word(take(4, 4, "client_id")?) as usize;
    if len == 0 || len > MAX_FT_CLIENT_ID_BYTES + 1 {
        return Err(format!(
            "client_id of {} bytes (1 to {MAX_FT_CLIENT_ID_BYTES} expected)",
            len.saturating_sub(1)
        ));
    }
    let text = take(1, len, "client_id")?;
    let (&nul, text) = text.split_last().expect("len > 0");
    if nul != 0 {
        return Err("client_id is not NUL-terminated".into());
    }
    let client_id = std::str::from_utf8(text)
        .map_err(|_| "client_id is not UTF-8".to_string())?
        .to_string();
    if client_id.is_empty() || client_id.chars().any(char::is_control) {
        return Err("client_id is empty or holds control characters".into());
    }
    let retention_id = word(take(4, 4, "retention_id")?) as i32;
    let t: [u8; 8] = take(8, 8, "expiration_time")?.try_into().expect("8 bytes");
    let t = if little {
        u64::from_le_bytes(t)
    } else {
        u64::from_be_bytes(t)
    };
    Ok(FtRequest {
        client_id,
        retention_id,
        expires_ms: unix_ms_of_time_t(t),
    })
}

/// Checks what a front end accepts: an expiration at most
/// [`MAX_FT_EXPIRATION_MS`] ahead. (One already past is the leader's to
/// refuse: a retry of a request that executed still gets its reply.)
pub fn check(ft: &FtRequest) -> Result<(), String> {
    let now = now_ms();
    if ft.expires_ms > now + MAX_FT_EXPIRATION_MS {
        return Err(format!(
            "expiration_time is {} s ahead; at most {} s is accepted",
            (ft.expires_ms - now) / 1000,
            MAX_FT_EXPIRATION_MS / 1000
        ));
    }
    Ok(())
}

/// The slot that carries the context's data between the interceptors and
/// the servant or the client.
pub(crate) static SLOT: OnceLock<SlotId> = OnceLock::new();

pub(crate) fn octets(data: Vec<u8>) -> Any {
    static TC: OnceLock<TypeCode> = OnceLock::new();
    let tc = TC.get_or_init(|| {
        TypeCode::sequence(
            &TypeCode::simple(TCKind::Octet).expect("octet is a simple kind"),
            0,
        )
        .expect("sequence<octet> is valid")
    });
    Any::new(tc.clone(), Value::Octets(data.into()))
}

fn octets_of(any: &Any) -> Option<&[u8]> {
    match any.value() {
        Value::Octets(o) if !o.is_empty() => Some(o.as_slice()),
        _ => None,
    }
}

struct Initializer;

impl OrbInitializer for Initializer {
    fn pre_init(&self, info: &mut OrbInitInfo<'_>) -> Result<(), SystemException> {
        let slot = info.allocate_slot_id();
        // Every ORB allocates this slot first of ours; they agree.
        let slot = *SLOT.get_or_init(|| slot);
        let interceptors = Arc::new(FtInterceptors { slot });
        let _ = info.add_client_request_interceptor(interceptors.clone());
        let _ = info.add_server_request_interceptor(interceptors);
        Ok(())
    }
}

struct FtInterceptors {
    slot: SlotId,
}

impl Interceptor for FtInterceptors {
    fn name(&self) -> &str {
        "dcms-ft-request"
    }
}

impl ClientRequestInterceptor for FtInterceptors {
    fn send_request(&self, ri: &ClientRequestInfo<'_>) -> Result<(), InterceptError> {
        if let Some(data) = ri.get_slot(self.slot).ok().as_ref().and_then(octets_of) {
            ri.add_request_service_context(
                ServiceContext {
                    context_id: service_id::FT_REQUEST,
                    context_data: data.to_vec(),
                },
                true,
            )?;
        }
        Ok(())
    }
}

impl ServerRequestInterceptor for FtInterceptors {
    fn receive_request_service_contexts(
        &self,
        ri: &ServerRequestInfo<'_>,
    ) -> Result<(), InterceptError> {
        if let Ok(sc) = ri.get_request_service_context(service_id::FT_REQUEST) {
            let _ = ri.set_slot(self.slot, octets(sc.context_data));
        }
        Ok(())
    }
}

/// Registers the interceptors for every ORB created from now on.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| rustorb_core::pi::register_orb_initializer(Arc::new(Initializer)));
}

/// In the servant: the `FT_REQUEST` context of the request being run, if
/// the client sent one (`Err` names what is wrong with it).
pub fn current(pi: &PiCurrent) -> Option<Result<FtRequest, String>> {
    let slot = *SLOT.get()?;
    let any = pi.get_slot(slot).ok()?;
    octets_of(&any).map(decode_context)
}

/// The `FT_REQUEST` context among a request's service contexts, if the
/// client sent one (`Err` names what is wrong with it): for a servant that
/// reads the contexts itself ([`rustorb_core::DeferredServant`]).
pub fn in_contexts(contexts: &[ServiceContext]) -> Option<Result<FtRequest, String>> {
    contexts
        .iter()
        .find(|sc| sc.context_id == service_id::FT_REQUEST)
        .map(|sc| decode_context(&sc.context_data))
}

/// In a client: runs `call` with `ft` as the `FT_REQUEST` context of the
/// requests it makes on this thread. `false` (and no call) when the ORB
/// has no slot for it (created before [`install`]).
pub fn with_context<T>(pi: &PiCurrent, ft: &FtRequest, call: impl FnOnce() -> T) -> Option<T> {
    let slot = *SLOT.get()?;
    pi.set_slot(slot, octets(encode_context(ft))).ok()?;
    let result = call();
    let _ = pi.set_slot(slot, Any::default());
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_round_trips_and_times_convert() {
        let ft = FtRequest {
            client_id: "host/1234/ab".into(),
            retention_id: -7,
            expires_ms: 1_800_000_000_123,
        };
        let data = encode_context(&ft);
        assert_eq!(decode_context(&data), Ok(ft.clone()));
        // 2026-12-03 00:00:00 UTC is 1_796_256_000 s after 1970.
        assert_eq!(
            unix_ms_of_time_t(time_t_of_unix_ms(1_796_256_000_000)),
            1_796_256_000_000
        );
        assert_eq!(unix_ms_of_time_t(0), 0, "before 1970 is long expired");
    }

    #[test]
    fn a_little_endian_context_decodes() {
        // As an ORB on a little-endian host writes it.
        let mut data = vec![1, 0, 0, 0];
        data.extend_from_slice(&4u32.to_le_bytes());
        data.extend_from_slice(b"abc\0");
        data.extend_from_slice(&42i32.to_le_bytes()); // ends at 16: aligned
        data.extend_from_slice(&time_t_of_unix_ms(5_000).to_le_bytes());
        let ft = decode_context(&data).unwrap();
        assert_eq!(ft.client_id, "abc");
        assert_eq!(ft.retention_id, 42);
        assert_eq!(ft.expires_ms, 5_000);
    }

    #[test]
    fn bad_contexts_are_refused_by_name() {
        let good = encode_context(&FtRequest {
            client_id: "c".into(),
            retention_id: 1,
            expires_ms: 1,
        });
        for (data, what) in [
            (vec![], "empty"),
            (vec![2, 0, 0, 0], "byte order"),
            (good[..good.len() - 1].to_vec(), "expiration_time"),
            (good[..9].to_vec(), "client_id"),
        ] {
            let err = decode_context(&data).unwrap_err();
            assert!(err.contains(what), "{what}: {err}");
        }
        let mut long = vec![0, 0, 0, 0];
        long.extend_from_slice(&(MAX_FT_CLIENT_ID_BYTES as u32 + 2).to_be_bytes());
        assert!(decode_context(&long).unwrap_err().contains("client_id of"));
        let mut no_nul = good.clone();
        no_nul[9] = b'x';
        assert!(decode_context(&no_nul).unwrap_err().contains("NUL"));
        let far = FtRequest {
            client_id: "c".into(),
            retention_id: 1,
            expires_ms: now_ms() + MAX_FT_EXPIRATION_MS + 60_000,
        };
        assert!(check(&far).unwrap_err().contains("expiration_time"));
    }
}
