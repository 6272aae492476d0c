//! Unit tests: marshalling round trips, error mapping, and the servant
//! dispatch through a real ORB on 127.0.0.1 with a scripted service.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use dcms_core::model::{Doctor, Nurse};
use dcms_core::{
    Clinic, Counts, Date, Designation, DoctorFields, DomainError, NurseStatus, Outcome, Record,
    RecordBody, RecordId, Reply, Request,
};
use rustorb_core::cdr::{ByteOrder, Decoder, Encoder, Encoding};
use rustorb_core::{
    CompletionStatus, Exception, InStream, OutStream, SystemException, SystemExceptionKind,
};

use crate::idl::{self, DcmsException, IdlRecord, RecordKind};
use crate::servant::{self, Answer};
use crate::{
    serve, Admission, CallError, ClientOptions, ClinicClient, ClinicService, ServeOptions,
    ServiceError,
};

fn doctor_record() -> Record {
    Record {
        id: RecordId::parse("DR10001").unwrap(),
        clinic: Clinic::Lvl,
        body: RecordBody::Doctor(Doctor {
            first_name: "Zoé".into(),
            last_name: "Müller".into(),
            address: "1 rue Saint-Denis".into(),
            phone: "5145551234".into(),
            specialization: "surgeon".into(),
            location: Clinic::Lvl,
        }),
    }
}

fn nurse_record() -> Record {
    Record {
        id: RecordId::parse("NR10000").unwrap(),
        clinic: Clinic::Ddo,
        body: RecordBody::Nurse(Nurse {
            first_name: "Jörg".into(),
            last_name: "Straße".into(),
            designation: Designation::Senior,
            status: NurseStatus::Terminated,
            status_date: Date::parse("2024-02-29").unwrap(),
        }),
    }
}

fn round_trip<T>(
    order: ByteOrder,
    write: impl FnOnce(&mut OutStream<'_>) -> Result<(), SystemException>,
    read: impl FnOnce(&mut InStream<'_>) -> Result<T, SystemException>,
) -> Result<T, SystemException> {
    let mut enc = Encoder::new(order, Encoding::Giop1_2);
    // Start at an odd offset so that alignment is exercised.
    enc.write_octet(7);
    write(&mut OutStream::standalone(&mut enc))?;
    let bytes = enc.into_bytes();
    let mut dec = Decoder::new(&bytes, order, Encoding::Giop1_2);
    dec.read_octet().unwrap();
    let mut input = InStream::standalone(dec, None);
    let v = read(&mut input)?;
    assert!(input.is_empty(), "everything written was read");
    Ok(v)
}

#[test]
fn records_convert_with_empty_fields_for_the_other_kind() {
    let d = IdlRecord::from(&doctor_record());
    assert_eq!(d.record_id, "DR10001");
    assert_eq!(d.kind, RecordKind::Doctor);
    assert_eq!(d.clinic, "LVL");
    assert_eq!(d.location, "lvl");
    assert_eq!(
        (d.first_name.as_str(), d.last_name.as_str()),
        ("Zoé", "Müller")
    );
    assert_eq!(d.phone, "5145551234");
    assert!(d.designation.is_empty() && d.status.is_empty() && d.status_date.is_empty());

    let n = IdlRecord::from(&nurse_record());
    assert_eq!(n.kind, RecordKind::Nurse);
    assert_eq!(n.clinic, "DDO");
    assert_eq!(
        (
            n.designation.as_str(),
            n.status.as_str(),
            n.status_date.as_str()
        ),
        ("senior", "terminated", "2024-02-29")
    );
    assert!(n.address.is_empty() && n.phone.is_empty());
    assert!(n.specialization.is_empty() && n.location.is_empty());
}

#[test]
fn records_and_lists_round_trip_in_both_byte_orders() {
    let records = vec![
        IdlRecord::from(&doctor_record()),
        IdlRecord::from(&nurse_record()),
    ];
    for order in [ByteOrder::Little, ByteOrder::Big] {
        let one = round_trip(order, |o| records[0].write(o), IdlRecord::read).unwrap();
        assert_eq!(one, records[0]);
        let list = round_trip(
            order,
            |o| idl::write_record_list(o, &records),
            idl::read_record_list,
        )
        .unwrap();
        assert_eq!(list, records);
        let empty = round_trip(
            order,
            |o| idl::write_record_list(o, &[]),
            idl::read_record_list,
        )
        .unwrap();
        assert!(empty.is_empty());
    }
}

#[test]
fn the_record_layout_is_the_idl_one() {
    // recordID, kind (ulong), then ten strings: check the bytes by hand.
    let mut r = IdlRecord::from(&nurse_record());
    r.first_name = "A".into();
    let mut enc = Encoder::new(ByteOrder::Big, Encoding::Giop1_2);
    r.write(&mut OutStream::standalone(&mut enc)).unwrap();
    let b = enc.into_bytes();
    assert_eq!(&b[0..4], &[0, 0, 0, 8]); // "NR10000\0"
    assert_eq!(&b[4..12], b"NR10000\0");
    assert_eq!(&b[12..16], &[0, 0, 0, 1]); // NURSE
    assert_eq!(&b[16..20], &[0, 0, 0, 4]); // "DDO\0"
    assert_eq!(&b[20..24], b"DDO\0");
    assert_eq!(&b[24..28], &[0, 0, 0, 2]); // "A\0"
}

#[test]
fn bad_enum_and_forged_lengths_are_marshal_errors() {
    let e = round_trip(
        ByteOrder::Little,
        |o| {
            o.write_u32(2);
            Ok(())
        },
        RecordKind::read,
    )
    .unwrap_err();
    assert!(e.is(SystemExceptionKind::MARSHAL));
    // A list claiming a million records in a few bytes.
    let mut enc = Encoder::new(ByteOrder::Little, Encoding::Giop1_2);
    enc.write_u32(1_000_000);
    enc.write_u32(0);
    let bytes = enc.into_bytes();
    let mut input = InStream::standalone(
        Decoder::new(&bytes, ByteOrder::Little, Encoding::Giop1_2),
        None,
    );
    assert!(idl::read_record_list(&mut input)
        .unwrap_err()
        .is(SystemExceptionKind::MARSHAL));
}

#[test]
fn exceptions_round_trip_with_their_members() {
    let all = [
        DcmsException::InvalidRequest {
            field: "phone".into(),
            reason: "too long".into(),
        },
        DcmsException::NotFound {
            record_id: "DR99999".into(),
        },
        DcmsException::NotAuthorized {
            manager_id: "LVL0001".into(),
            reason: "record of MTL".into(),
        },
        DcmsException::Unavailable {
            reason: "no leader".into(),
        },
    ];
    for ex in all {
        let back = round_trip(
            ByteOrder::Big,
            |o| ex.write_members(o),
            |i| DcmsException::read_members(ex.repository_id(), i).unwrap(),
        )
        .unwrap();
        assert_eq!(back, ex);
        assert!(ex.repository_id().starts_with("IDL:DCMS/"));
    }
    let bytes = Encoder::new(ByteOrder::Big, Encoding::Giop1_2).into_bytes();
    let mut input = InStream::standalone(
        Decoder::new(&bytes, ByteOrder::Big, Encoding::Giop1_2),
        None,
    );
    assert!(DcmsException::read_members("IDL:Other/Ex:1.0", &mut input).is_none());
}

#[test]
fn requests_decode_from_their_arguments() {
    let args = ["MTL1234", "DR10000", "phone", "5145550000"];
    let req = round_trip(
        ByteOrder::Little,
        |o| {
            for a in args {
                o.write_string(a)?;
            }
            Ok(())
        },
        |i| servant::decode_request("editRecord", i),
    )
    .unwrap();
    assert_eq!(
        req,
        Request::EditRecord {
            manager_id: "MTL1234".into(),
            record_id: "DR10000".into(),
            field_name: "phone".into(),
            new_value: "5145550000".into(),
        }
    );
    // Too few arguments.
    let e = round_trip(
        ByteOrder::Little,
        |o| o.write_string("MTL1234"),
        |i| servant::decode_request("editRecord", i).map(|_| ()),
    )
    .unwrap_err();
    assert!(e.is(SystemExceptionKind::MARSHAL));
    assert_eq!(e.completed, CompletionStatus::No);
    // Unknown operation.
    let bytes = Encoder::new(ByteOrder::Little, Encoding::Giop1_2).into_bytes();
    let mut input = InStream::standalone(
        Decoder::new(&bytes, ByteOrder::Little, Encoding::Giop1_2),
        None,
    );
    let e = servant::decode_request("deleteRecord", &mut input).unwrap_err();
    assert!(e.is(SystemExceptionKind::BAD_OPERATION));
}

#[test]
fn outcomes_and_errors_map_to_the_idl() {
    use servant::answer;
    assert_eq!(
        answer(
            "getRecordCounts",
            Ok(Ok(Outcome::Counts(Counts([3, 2, 1]))))
        ),
        Answer::Text("MTL 3, LVL 2, DDO 1".into())
    );
    assert_eq!(
        answer(
            "createDRecord",
            Ok(Ok(Outcome::RecordId(RecordId::parse("DR10000").unwrap())))
        ),
        Answer::Text("DR10000".into())
    );
    let err = |e: DomainError| answer("editRecord", Ok(Err(e)));
    assert_eq!(
        err(DomainError::invalid("phone", "bad")),
        Answer::User(DcmsException::InvalidRequest {
            field: "phone".into(),
            reason: "bad".into()
        })
    );
    assert_eq!(
        err(DomainError::NotFound {
            record_id: "DR10009".into()
        }),
        Answer::User(DcmsException::NotFound {
            record_id: "DR10009".into()
        })
    );
    assert_eq!(
        err(DomainError::NotAuthorized {
            manager_id: "LVL0001".into(),
            reason: "r".into()
        }),
        Answer::User(DcmsException::NotAuthorized {
            manager_id: "LVL0001".into(),
            reason: "r".into()
        })
    );
    assert_eq!(
        err(DomainError::Exhausted {
            reason: "no DR left".into()
        }),
        Answer::User(DcmsException::Unavailable {
            reason: "no DR left".into()
        })
    );
    // NotFound is not declared by listRecords.
    assert!(matches!(
        answer(
            "listRecords",
            Ok(Err(DomainError::NotFound {
                record_id: "DR1".into()
            }))
        ),
        Answer::User(DcmsException::InvalidRequest { .. })
    ));
    assert_eq!(
        answer("getRecord", Err(ServiceError::Unavailable("down".into()))),
        Answer::User(DcmsException::Unavailable {
            reason: "down".into()
        })
    );
    match answer("getRecord", Err(ServiceError::Overloaded)) {
        Answer::System(e) => {
            assert!(e.is(SystemExceptionKind::TRANSIENT));
            assert_eq!(e.completed, CompletionStatus::No);
        }
        other => panic!("{other:?}"),
    }
    match answer("createDRecord", Err(ServiceError::OutcomeUnknown)) {
        Answer::System(e) => {
            assert!(e.is(SystemExceptionKind::TRANSIENT));
            assert_eq!(e.completed, CompletionStatus::Maybe);
        }
        other => panic!("{other:?}"),
    }
}

/// A service that records the requests and answers from a script.
#[derive(Default)]
struct Scripted {
    seen: Mutex<Vec<Request>>,
    calls: AtomicUsize,
    delay: Mutex<Option<Duration>>,
    barrier: Mutex<Option<Arc<Barrier>>>,
    /// The FT identity each call carried.
    fts: Mutex<Vec<Option<dcms_core::FtRequest>>>,
}

impl ClinicService for Scripted {
    fn call_ft(
        &self,
        request: Request,
        ft: Option<dcms_core::FtRequest>,
    ) -> Result<Reply, ServiceError> {
        self.fts.lock().unwrap().push(ft);
        self.call(request)
    }

    fn call(&self, request: Request) -> Result<Reply, ServiceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(request.clone());
        let barrier = self.barrier.lock().unwrap().clone();
        if let Some(b) = barrier {
            b.wait();
        }
        if let Some(d) = *self.delay.lock().unwrap() {
            std::thread::sleep(d);
        }
        let m = request.manager_id().to_string();
        match m.as_str() {
            "UNAVAIL" => return Err(ServiceError::Unavailable("no quorum".into())),
            "OVERLOAD" => return Err(ServiceError::Overloaded),
            "MAYBE" => return Err(ServiceError::OutcomeUnknown),
            "NOTAUTH" => {
                return Ok(Err(DomainError::NotAuthorized {
                    manager_id: m,
                    reason: "not yours".into(),
                }))
            }
            "NOTFOUND" => {
                return Ok(Err(DomainError::NotFound {
                    record_id: "DR10042".into(),
                }))
            }
            "INVALID" => return Ok(Err(DomainError::invalid("managerID", "bad"))),
            _ => {}
        }
        Ok(Ok(match request {
            Request::GetRecordCounts { .. } => Outcome::Counts(Counts([1, 0, 1])),
            Request::GetRecord { .. } => Outcome::Record(doctor_record()),
            Request::ListRecords { .. } => Outcome::Records(vec![doctor_record(), nurse_record()]),
            // Two pages: the doctor, then the nurse.
            Request::ListRecordsPage {
                after_record_id, ..
            } if after_record_id.is_empty() => Outcome::RecordPage {
                records: vec![doctor_record()],
                next_after: Some(doctor_record().id),
            },
            Request::ListRecordsPage { .. } => Outcome::RecordPage {
                records: vec![nurse_record()],
                next_after: None,
            },
            _ => Outcome::RecordId(RecordId::parse("NR10000").unwrap()),
        }))
    }
}

fn start(service: Arc<Scripted>, admission: Admission) -> (crate::RunningServer, ClinicClient) {
    let server = serve(
        service,
        &ServeOptions {
            admission,
            ..ServeOptions::default()
        },
    )
    .unwrap();
    let client = ClinicClient::connect(&server.corbaloc(), &ClientOptions::default()).unwrap();
    (server, client)
}

fn system(r: Result<impl std::fmt::Debug, CallError>) -> SystemException {
    match r {
        Err(CallError::System(e)) => e,
        other => panic!("expected a system exception, got {other:?}"),
    }
}

fn user(r: Result<impl std::fmt::Debug, CallError>) -> DcmsException {
    match r {
        Err(CallError::User(e)) => e,
        other => panic!("expected a user exception, got {other:?}"),
    }
}

#[test]
fn every_operation_goes_through_the_orb() {
    let svc = Arc::new(Scripted::default());
    let (server, c) = start(svc.clone(), Admission::default());
    assert!(server.ior().starts_with("IOR:"));
    assert!(server.port() != 0);
    assert!(c.is_clinic_management().unwrap());
    assert!(!c.object().non_existent().unwrap());
    assert!(c.object().locate().unwrap());

    let m = "MTL1234";
    assert_eq!(
        c.create_d_record(m, "Zoé", "Müller", "a", "p", "s", "mtl")
            .unwrap(),
        "NR10000"
    );
    assert_eq!(
        c.create_n_record(m, "f", "l", "junior", "active", "2024-01-01")
            .unwrap(),
        "NR10000"
    );
    assert_eq!(c.get_record_counts(m).unwrap(), "MTL 1, LVL 0, DDO 1");
    assert_eq!(
        c.edit_record(m, "DR10000", "phone", "1").unwrap(),
        "NR10000"
    );
    assert_eq!(c.transfer_record(m, "DR10000", "LVL").unwrap(), "NR10000");
    assert_eq!(
        c.get_record(m, "DR10001").unwrap(),
        IdlRecord::from(&doctor_record())
    );
    assert_eq!(
        c.list_records(m, "").unwrap(),
        vec![
            IdlRecord::from(&doctor_record()),
            IdlRecord::from(&nurse_record())
        ]
    );
    let seen = svc.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 7);
    assert_eq!(
        seen[0],
        Request::CreateDoctor {
            manager_id: m.into(),
            fields: DoctorFields {
                first_name: "Zoé".into(),
                last_name: "Müller".into(),
                address: "a".into(),
                phone: "p".into(),
                specialization: "s".into(),
                location: "mtl".into(),
            },
        }
    );
    assert_eq!(
        seen[4],
        Request::TransferRecord {
            manager_id: m.into(),
            record_id: "DR10000".into(),
            remote_clinic: "LVL".into(),
        }
    );
}

#[test]
fn errors_reach_the_client_as_the_idl_says() {
    let svc = Arc::new(Scripted::default());
    let (_server, c) = start(svc.clone(), Admission::default());
    assert_eq!(
        user(c.get_record_counts("UNAVAIL")),
        DcmsException::Unavailable {
            reason: "no quorum".into()
        }
    );
    assert_eq!(
        user(c.edit_record("NOTAUTH", "DR10000", "phone", "1")),
        DcmsException::NotAuthorized {
            manager_id: "NOTAUTH".into(),
            reason: "not yours".into()
        }
    );
    assert_eq!(
        user(c.get_record("NOTFOUND", "DR10042")),
        DcmsException::NotFound {
            record_id: "DR10042".into()
        }
    );
    assert!(matches!(
        user(c.list_records("INVALID", "")),
        DcmsException::InvalidRequest { .. }
    ));
    let e = system(c.create_d_record("OVERLOAD", "", "", "", "", "", ""));
    assert!(e.is(SystemExceptionKind::TRANSIENT));
    assert_eq!(e.completed, CompletionStatus::No);
    let e = system(c.create_d_record("MAYBE", "", "", "", "", "", ""));
    assert!(e.is(SystemExceptionKind::TRANSIENT));
    assert_eq!(e.completed, CompletionStatus::Maybe);

    let calls_before = svc.calls.load(Ordering::SeqCst);
    // Unknown operation.
    match c.object().request("deleteRecord").invoke() {
        Err(Exception::System(e)) => {
            assert!(e.is(SystemExceptionKind::BAD_OPERATION), "{e}");
            assert_eq!(e.completed, CompletionStatus::No);
        }
        other => panic!("{other:?}"),
    }
    // A body that does not hold the arguments.
    match c
        .object()
        .request("editRecord")
        .args(|o| o.write_string("MTL1234"))
        .invoke()
    {
        Err(Exception::System(e)) => {
            assert!(e.is(SystemExceptionKind::MARSHAL), "{e}");
            assert_eq!(e.completed, CompletionStatus::No);
        }
        other => panic!("{other:?}"),
    }
    // A string that is not NUL-terminated.
    match c
        .object()
        .request("getRecordCounts")
        .args(|o| {
            o.write_u32(3);
            o.write_octets(b"abc");
            Ok(())
        })
        .invoke()
    {
        Err(Exception::System(e)) => assert!(e.is(SystemExceptionKind::MARSHAL), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        svc.calls.load(Ordering::SeqCst),
        calls_before,
        "bad requests never reach the service"
    );
    assert!(!c.object().is_a("IDL:DCMS/Other:1.0").unwrap());
    // The client still works.
    assert_eq!(
        c.get_record_counts("MTL1234").unwrap(),
        "MTL 1, LVL 0, DDO 1"
    );
}

#[test]
fn beyond_the_admission_limit_requests_are_refused_quickly() {
    let svc = Arc::new(Scripted::default());
    // Two requests block in the service until the test releases them.
    let barrier = Arc::new(Barrier::new(2));
    *svc.barrier.lock().unwrap() = Some(barrier.clone());
    let (_server, c) = start(
        svc.clone(),
        Admission {
            max_running: 1,
            max_waiting: 1,
            max_wait: Duration::from_secs(30),
        },
    );
    let running = {
        let c = c.clone();
        std::thread::spawn(move || c.get_record_counts("MTL1234"))
    };
    // Wait until the first request is in the service.
    let t0 = Instant::now();
    while svc.calls.load(Ordering::SeqCst) < 1 {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    let waiting = {
        let c = c.clone();
        std::thread::spawn(move || c.get_record_counts("MTL1234"))
    };
    std::thread::sleep(Duration::from_millis(200));
    // Running 1 + waiting 1: the third is refused at once.
    let t = Instant::now();
    let e = system(c.get_record_counts("MTL1234"));
    assert!(e.is(SystemExceptionKind::TRANSIENT), "{e}");
    assert_eq!(e.completed, CompletionStatus::No);
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(svc.calls.load(Ordering::SeqCst), 1);
    // Release the first; the waiting one then runs without the barrier.
    *svc.barrier.lock().unwrap() = None;
    barrier.wait();
    assert!(running.join().unwrap().is_ok());
    assert!(waiting.join().unwrap().is_ok());
}

/// Lists `n` records for any request.
struct Many(usize);

impl ClinicService for Many {
    fn call(&self, _: Request) -> Result<Reply, ServiceError> {
        let one = doctor_record();
        Ok(Ok(Outcome::Records(vec![one; self.0])))
    }
}

#[test]
fn large_lists_fit_and_too_large_ones_are_marshal_errors() {
    // 20,000 records (~6 MB) fit the default 16 MiB.
    let server = serve(Arc::new(Many(20_000)), &ServeOptions::default()).unwrap();
    let c = ClinicClient::connect(&server.corbaloc(), &ClientOptions::default()).unwrap();
    let list = c.list_records("MTL1234", "").unwrap();
    assert_eq!(list.len(), 20_000);
    assert_eq!(list[19_999], IdlRecord::from(&doctor_record()));
    // With a 1 MiB limit the same reply is replaced by MARSHAL, completed
    // yes, and the connection goes on.
    let small = serve(
        Arc::new(Many(20_000)),
        &ServeOptions {
            max_message_size: 1 << 20,
            ..ServeOptions::default()
        },
    )
    .unwrap();
    let c = ClinicClient::connect(&small.corbaloc(), &ClientOptions::default()).unwrap();
    let e = system(c.list_records("MTL1234", ""));
    assert!(e.is(SystemExceptionKind::MARSHAL), "{e}");
    assert_eq!(e.completed, CompletionStatus::Yes);
    assert!(c.is_clinic_management().unwrap());
}

#[test]
fn text_outside_latin_1_goes_both_ways_through_a_corbaloc() {
    let dir = tempfile::tempdir().unwrap();
    let service = Arc::new(crate::Standalone::open(dir.path()).unwrap());
    let server = serve(service, &ServeOptions::default()).unwrap();
    assert!(server.corbaloc().starts_with("corbaloc:iiop:127.0.0.1:"));
    let c = ClinicClient::connect(&server.corbaloc(), &ClientOptions::default()).unwrap();
    let id = c
        .create_d_record(
            "MTL1234",
            "Łukasz",
            "東京 🦀",
            "ul. Żółta",
            "5145550000",
            "s",
            "mtl",
        )
        .unwrap();
    let r = c.get_record("MTL1234", &id).unwrap();
    assert_eq!(
        (
            r.first_name.as_str(),
            r.last_name.as_str(),
            r.address.as_str()
        ),
        ("Łukasz", "東京 🦀", "ul. Żółta")
    );
    assert_eq!(c.list_records("MTL1234", "東").unwrap().len(), 1);
    // The same through the IOR, and through a corbaloc with an explicit
    // IIOP 1.0 address, where CORBA's default (ISO-8859-1) holds.
    let by_ior = ClinicClient::connect(server.ior(), &ClientOptions::default()).unwrap();
    assert_eq!(by_ior.get_record("MTL1234", &id).unwrap(), r);
    let v10 = server.corbaloc().replace("iiop:", "iiop:1.0@");
    let old = ClinicClient::connect(&v10, &ClientOptions::default()).unwrap();
    let e = system(old.get_record("MTL1234", &id));
    assert!(e.is(SystemExceptionKind::DATA_CONVERSION), "{e}");
    assert_eq!(
        old.get_record_counts("MTL1234").unwrap(),
        "MTL 1, LVL 0, DDO 0"
    );
}

#[test]
fn ft_clients_send_their_identity_with_writes_and_retry_an_unknown_outcome_with_it() {
    let service = Arc::new(Scripted::default());
    let (server, _) = start(service.clone(), Admission::default());
    let ft = crate::client::FtOptions {
        client_id: "test-client".into(),
        expiration: Duration::from_millis(400),
    };
    let opts = ClientOptions {
        ft: Some(ft),
        ..ClientOptions::default()
    };
    let client = ClinicClient::connect(&server.corbaloc(), &opts).unwrap();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    client
        .create_n_record("MTL0001", "A", "B", "junior", "active", "2024-01-01")
        .unwrap();
    client.get_record_counts("MTL0001").unwrap();
    client
        .edit_record("MTL0001", "NR10000", "status", "terminated")
        .unwrap();
    let fts = std::mem::take(&mut *service.fts.lock().unwrap());
    assert_eq!(fts.len(), 3);
    let first = fts[0].clone().expect("a write carries its identity");
    assert_eq!(first.client_id, "test-client");
    assert!(
        (before + 300..before + 2_000).contains(&first.expires_ms),
        "expiration {} about 400 ms after {before}",
        first.expires_ms
    );
    assert_eq!(fts[1], None, "a read carries none");
    let second = fts[2].clone().expect("a write carries its identity");
    assert_eq!(
        second.retention_id,
        first.retention_id + 1,
        "a new call, a new ID"
    );
    assert_eq!(client.retries(), 0);

    // An unknown outcome is retried with the same identity until the
    // expiration, then reported.
    let e = system(client.create_n_record("MAYBE", "A", "B", "junior", "active", "2024-01-01"));
    assert!(e.is(SystemExceptionKind::TRANSIENT));
    let fts = std::mem::take(&mut *service.fts.lock().unwrap());
    assert!(fts.len() >= 3, "tried {} times", fts.len());
    assert!(fts
        .iter()
        .all(|f| f.as_ref().map(|f| f.retention_id) == Some(second.retention_id + 1)));
    assert_eq!(client.retries(), fts.len() as u64 - 1);

    // A client without FT sends no context and tries once.
    let plain = ClinicClient::connect(&server.corbaloc(), &ClientOptions::default()).unwrap();
    system(plain.create_n_record("MAYBE", "A", "B", "junior", "active", "2024-01-01"));
    assert_eq!(*service.fts.lock().unwrap(), vec![None]);
}

#[test]
fn a_malformed_or_far_ft_context_is_refused_by_name_and_not_run() {
    let service = Arc::new(Scripted::default());
    let (server, client) = start(service.clone(), Admission::default());
    let pi = client.orb().pi_current();
    let slot = *crate::ft::SLOT
        .get()
        .expect("the interceptors are installed");
    let far = crate::ft::encode_context(&dcms_core::FtRequest {
        client_id: "c".into(),
        retention_id: 1,
        expires_ms: u64::MAX / 20_000,
    });
    for (data, what) in [(vec![7u8, 1, 2], "byte order"), (far, "expiration_time")] {
        pi.set_slot(slot, crate::ft::octets(data)).unwrap();
        let r = client.create_n_record("MTL0001", "A", "B", "junior", "active", "2024-01-01");
        pi.set_slot(slot, rustorb_core::Any::default()).unwrap();
        match user(r) {
            DcmsException::InvalidRequest { field, reason } => {
                assert_eq!(field, "FT_REQUEST");
                assert!(reason.contains(what), "{what}: {reason}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(service.calls.load(Ordering::SeqCst), 0, "nothing ran");
    drop(server);
}

#[test]
fn pages_go_through_the_orb_and_a_paged_listing_follows_the_cursor() {
    let service = Arc::new(Scripted::default());
    let (_server, client) = start(service.clone(), Admission::default());
    let first = client.list_records_page("MTL0001", "s", "", 1).unwrap();
    assert_eq!(first.records.len(), 1);
    assert_eq!(first.next_after, doctor_record().id.to_string());
    let all = client.list_records_paged("MTL0001", "s", 1, None).unwrap();
    assert_eq!(
        all,
        vec![
            IdlRecord::from(&doctor_record()),
            IdlRecord::from(&nurse_record())
        ]
    );
    assert_eq!(
        client
            .list_records_paged("MTL0001", "s", 1, Some(1))
            .unwrap()
            .len(),
        1
    );
    let seen = service.seen.lock().unwrap().clone();
    assert!(seen.contains(&Request::ListRecordsPage {
        manager_id: "MTL0001".into(),
        last_name_prefix: "s".into(),
        after_record_id: doctor_record().id.to_string(),
        max_count: 1,
    }));
}

#[test]
fn the_domains_list_size_estimate_covers_the_real_encoding() {
    // What `dcms_core::ops::bound_list` counts must not be below what the
    // servant writes, or a list under the bound could still be too large.
    let mut long = doctor_record();
    if let dcms_core::RecordBody::Doctor(d) = &mut long.body {
        d.first_name = "é".repeat(100);
        d.address = "x".repeat(100);
        d.specialization = "ü".repeat(99);
    }
    let records = [doctor_record(), nurse_record(), long];
    for order in [ByteOrder::Big, ByteOrder::Little] {
        let mut enc = Encoder::new(order, Encoding::Giop1_2);
        let idl: Vec<IdlRecord> = records.iter().map(IdlRecord::from).collect();
        idl::write_record_list(&mut OutStream::standalone(&mut enc), &idl).unwrap();
        let real = enc.into_bytes().len();
        let estimate = 4 + records.iter().map(Record::cdr_size).sum::<usize>();
        assert!(estimate >= real, "estimate {estimate} < encoding {real}");
    }
}

/// A service that answers later: it keeps each started request until the
/// test answers it.
#[derive(Default)]
struct Later {
    held: Mutex<Vec<(Request, Option<dcms_core::FtRequest>, crate::Done)>>,
}

impl ClinicService for Later {
    fn call(&self, _: Request) -> Result<Reply, ServiceError> {
        Err(ServiceError::Unavailable(
            "a service that answers later is started, not called".into(),
        ))
    }

    fn answers_later(&self) -> bool {
        true
    }

    fn start_as(
        &self,
        request: Request,
        ft: Option<dcms_core::FtRequest>,
        _: Option<dcms_core::ManagerId>,
        done: crate::Done,
    ) {
        self.held.lock().unwrap().push((request, ft, done));
    }
}

impl Later {
    /// The requests held once there are `n`.
    fn wait_for(&self, n: usize) -> Vec<(Request, Option<dcms_core::FtRequest>, crate::Done)> {
        let t0 = Instant::now();
        loop {
            {
                let mut held = self.held.lock().unwrap();
                if held.len() >= n {
                    return std::mem::take(&mut *held);
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{n} requests never arrived"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn start_later(admission: Admission) -> (Arc<Later>, crate::RunningServer, ClinicClient) {
    let service = Arc::new(Later::default());
    let server = serve(
        service.clone(),
        &ServeOptions {
            admission,
            ..ServeOptions::default()
        },
    )
    .unwrap();
    let client = ClinicClient::connect(&server.corbaloc(), &ClientOptions::default()).unwrap();
    (service, server, client)
}

/// Answered in the reverse order of their arrival, from a thread of the
/// test, each of several concurrent requests on one connection gets its
/// own answer; and a write's `FT_REQUEST` context reaches the service.
#[test]
fn a_service_that_answers_later_gets_each_answer_to_its_own_request() {
    let (service, server, client) = start_later(Admission::default());
    let managers = ["MTL0001", "LVL0001", "DDO0001", "MTL0002"];
    let calls: Vec<_> = managers
        .iter()
        .map(|m| {
            let (c, m) = (client.clone(), m.to_string());
            std::thread::spawn(move || c.get_record_counts(&m))
        })
        .collect();
    let mut held = service.wait_for(managers.len());
    while let Some((request, ft, done)) = held.pop() {
        assert_eq!(ft, None, "a read carries no FT identity");
        let n = managers
            .iter()
            .position(|m| *m == request.manager_id())
            .unwrap() as u64;
        done(Ok(Ok(Outcome::Counts(Counts([n, n + 10, n + 20])))));
    }
    for (n, call) in calls.into_iter().enumerate() {
        assert_eq!(
            call.join().unwrap().unwrap(),
            format!("MTL {n}, LVL {}, DDO {}", n + 10, n + 20),
            "{}'s answer",
            managers[n]
        );
    }

    let ft_client = ClinicClient::connect(
        &server.corbaloc(),
        &ClientOptions {
            ft: Some(crate::client::FtOptions {
                client_id: "later-client".into(),
                expiration: Duration::from_secs(5),
            }),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let write = std::thread::spawn(move || {
        ft_client.create_n_record("MTL0001", "A", "B", "junior", "active", "2024-01-01")
    });
    let (_, ft, done) = service.wait_for(1).pop().unwrap();
    assert_eq!(ft.expect("the write's identity").client_id, "later-client");
    done(Ok(Ok(Outcome::RecordId(
        RecordId::parse("NR10007").unwrap(),
    ))));
    assert_eq!(write.join().unwrap().unwrap(), "NR10007");
}

/// At most running + waiting requests are in a service that answers
/// later; the next is refused at once with TRANSIENT, completed no, and
/// is not started. A request the service drops unanswered gets
/// TRANSIENT, completed maybe.
#[test]
fn a_service_that_answers_later_is_bounded_and_a_dropped_request_is_maybe() {
    let (service, _server, client) = start_later(Admission {
        max_running: 1,
        max_waiting: 1,
        max_wait: Duration::from_secs(30),
    });
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let c = client.clone();
            std::thread::spawn(move || c.get_record_counts("MTL0001"))
        })
        .collect();
    let held = service.wait_for(2);
    let t = Instant::now();
    let e = system(client.get_record_counts("MTL0001"));
    assert!(e.is(SystemExceptionKind::TRANSIENT), "{e}");
    assert_eq!(e.completed, CompletionStatus::No);
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(service.held.lock().unwrap().is_empty(), "not started");
    let mut held = held.into_iter();
    let (_, _, first) = held.next().unwrap();
    first(Ok(Ok(Outcome::Counts(Counts([1, 2, 3])))));
    drop(held);
    let mut answers: Vec<_> = calls.into_iter().map(|c| c.join().unwrap()).collect();
    answers.sort_by_key(|a| a.is_err());
    assert_eq!(answers[0].as_deref().unwrap(), "MTL 1, LVL 2, DDO 3");
    let e = system(answers.pop().unwrap());
    assert!(e.is(SystemExceptionKind::TRANSIENT), "{e}");
    assert_eq!(e.completed, CompletionStatus::Maybe);
    // Both slots are free again.
    let again = {
        let c = client.clone();
        std::thread::spawn(move || c.get_record_counts("MTL0001"))
    };
    let (_, _, done) = service.wait_for(1).pop().unwrap();
    done(Ok(Ok(Outcome::Counts(Counts([0, 0, 0])))));
    assert!(again.join().unwrap().is_ok());
}
