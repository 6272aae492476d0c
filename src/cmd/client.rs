//! `dcms client`: call the DCMS interface as a clinic manager.
//!
//! Against a `dcms up --tls` cluster give `--tls-ca` and `--cert` (the
//! manager's certificate; the front end runs only requests for the
//! manager it names), with the `corbaloc:ssliop:` URL or the IOR file.
//!
//! The object is found from `--url` (corbaloc: or corbaname:), `--ior` or
//! `--ior-file`. The result is printed readably, or as one JSON line with
//! `--json`. A CORBA exception is printed with its fields (on standard
//! output as JSON with `--json`) and the command exits non-zero.

use anyhow::Context;
use dcms_corba::{CallError, ClientOptions, ClinicClient, IdlRecord};
use dcms_core::{DoctorFields, NurseFields};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct ClientArgs {
    /// corbaloc:iiop:HOST:PORT/DCMS (or the group corbaloc `dcms up`
    /// prints, corbaloc:iiop:H1:P1,:H2:P2/DCMS) or corbaname:... URL of the object.
    #[arg(long, env = "DCMS_URL", conflicts_with_all = ["ior", "ior_file"])]
    url: Option<String>,
    /// Stringified IOR of the object.
    #[arg(long, conflicts_with = "ior_file")]
    ior: Option<String>,
    /// File holding the stringified IOR (`dcms up` writes the group IOR,
    /// every front end, to <data-dir>/dcms.ior; `dcms frontend --ior-file`
    /// its own).
    #[arg(long)]
    ior_file: Option<PathBuf>,
    /// The calling manager (clinic code and four digits, like MTL1234).
    #[arg(long, global = true, env = "DCMS_MANAGER")]
    manager: Option<String>,
    /// Print one JSON line instead of readable text.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for a reply.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// IIOP over TLS (a `dcms up --tls` cluster): the CA that signed the
    /// front ends' certificate (`<data-dir>/tls/ca.pem`).
    #[arg(long, env = "DCMS_TLS_CA", value_name = "PEM")]
    tls_ca: Option<PathBuf>,
    /// IIOP over TLS: this manager's certificate and key, one file (`dcms
    /// cert issue` writes `<data-dir>/tls/managers/ID.pem`). Needs
    /// --tls-ca.
    #[arg(long, env = "DCMS_CERT", value_name = "PEM", requires = "tls_ca")]
    cert: Option<PathBuf>,
    #[command(flatten)]
    ft: super::common::FtArgs,
    #[command(subcommand)]
    op: Op,
}

#[derive(clap::Subcommand, Debug)]
enum Op {
    /// createDRecord: a new doctor record; prints its ID.
    CreateDoctor(DoctorFields),
    /// createNRecord: a new nurse record; prints its ID.
    CreateNurse(NurseFields),
    /// getRecordCounts: records per clinic.
    Counts,
    /// editRecord: change one field of a record.
    Edit {
        #[arg(long)]
        record_id: String,
        /// The IDL field name (phone, address, location, designation, status, statusDate, ...).
        #[arg(long)]
        field: String,
        #[arg(long)]
        value: String,
    },
    /// transferRecord: move a record to another clinic.
    Transfer {
        #[arg(long)]
        record_id: String,
        /// The remote clinic server name (MTL, LVL or DDO).
        #[arg(long)]
        to: String,
    },
    /// getRecord: one record.
    Get {
        #[arg(long)]
        record_id: String,
    },
    /// listRecords: the records whose last name starts with a prefix.
    List {
        #[arg(long, default_value = "")]
        prefix: String,
        /// Stop after this many records.
        #[arg(long)]
        limit: Option<usize>,
        /// Records per `listRecordsPage` call (the server serves at most
        /// 1,000); 0 calls `listRecords` once instead, which a server
        /// may refuse for a large answer.
        #[arg(long, default_value_t = 500)]
        page_size: u32,
    },
}

enum Output {
    Text(String),
    Record(Box<IdlRecord>),
    Records(Vec<IdlRecord>),
}

pub fn run(args: ClientArgs) -> anyhow::Result<()> {
    let reference = match (&args.url, &args.ior, &args.ior_file) {
        (Some(u), _, _) => u.clone(),
        (_, Some(i), _) => i.clone(),
        (_, _, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading the IOR file {}", f.display()))?
            .trim()
            .to_string(),
        _ => anyhow::bail!("say where the object is: --url, --ior or --ior-file"),
    };
    let manager = args
        .manager
        .clone()
        .context("--manager is required (like --manager MTL1234)")?;
    if args.tls_ca.is_none() && reference.starts_with("corbaloc:ssliop:") {
        anyhow::bail!(
            "{reference} is served over TLS: give --tls-ca (the cluster's tls/ca.pem) and --cert (a manager's certificate)"
        );
    }
    for (arg, path) in [("--tls-ca", &args.tls_ca), ("--cert", &args.cert)] {
        if let Some(p) = path {
            std::fs::File::open(p).with_context(|| format!("{arg} {}", p.display()))?;
        }
    }
    let opts = ClientOptions {
        call_timeout: Duration::from_secs(args.timeout_secs.max(1)),
        ft: args.ft.options(),
        tls: args.tls_ca.clone().map(|ca_file| dcms_corba::ClientTls {
            ca_file,
            cert_file: args.cert.clone(),
        }),
        ..ClientOptions::default()
    };
    let result =
        ClinicClient::connect(&reference, &opts).and_then(|c| call(&c, &manager, &args.op));
    match result {
        Ok(out) => {
            print_output(&out, args.json);
            Ok(())
        }
        Err(e) => {
            if args.json {
                println!("{}", error_json(&e));
            }
            Err(anyhow::anyhow!("{}", describe(&e)))
        }
    }
}

fn call(c: &ClinicClient, m: &str, op: &Op) -> Result<Output, CallError> {
    Ok(match op {
        Op::CreateDoctor(fields) => Output::Text(c.create_doctor(m, fields)?),
        Op::CreateNurse(fields) => Output::Text(c.create_nurse(m, fields)?),
        Op::Counts => Output::Text(c.get_record_counts(m)?),
        Op::Edit {
            record_id,
            field,
            value,
        } => Output::Text(c.edit_record(m, record_id, field, value)?),
        Op::Transfer { record_id, to } => Output::Text(c.transfer_record(m, record_id, to)?),
        Op::Get { record_id } => Output::Record(Box::new(c.get_record(m, record_id)?)),
        Op::List {
            prefix,
            limit,
            page_size: 0,
        } => {
            let mut all = c.list_records(m, prefix)?;
            all.truncate(limit.unwrap_or(usize::MAX));
            Output::Records(all)
        }
        Op::List {
            prefix,
            limit,
            page_size,
        } => Output::Records(c.list_records_paged(m, prefix, *page_size, *limit)?),
    })
}

fn record_json(r: &IdlRecord) -> serde_json::Value {
    serde_json::Value::Object(
        r.fields()
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect(),
    )
}

fn print_output(out: &Output, json: bool) {
    if json {
        let v = match out {
            Output::Text(s) => serde_json::json!({ "ok": true, "result": s }),
            Output::Record(r) => serde_json::json!({ "ok": true, "record": record_json(r) }),
            Output::Records(rs) => serde_json::json!({
                "ok": true,
                "records": rs.iter().map(record_json).collect::<Vec<_>>(),
            }),
        };
        println!("{v}");
        return;
    }
    match out {
        Output::Text(s) => println!("{s}"),
        Output::Record(r) => {
            for (k, v) in r.fields() {
                if !v.is_empty() {
                    println!("{k:<15} {v}");
                }
            }
        }
        Output::Records(rs) => {
            for r in rs {
                let details: Vec<&str> = r
                    .fields()
                    .iter()
                    .skip(5)
                    .map(|(_, v)| *v)
                    .filter(|v| !v.is_empty())
                    .collect();
                println!(
                    "{}  {:<6}  {}  {} {}  ({})",
                    r.record_id,
                    r.kind.as_str(),
                    r.clinic,
                    r.first_name,
                    r.last_name,
                    details.join(", ")
                );
            }
            println!(
                "{} record{}",
                rs.len(),
                if rs.len() == 1 { "" } else { "s" }
            );
        }
    }
}

/// `DCMS::NotFound: recordID="DR10009"`.
fn describe(e: &CallError) -> String {
    let fields: Vec<String> = e
        .fields()
        .into_iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!(
        "{} ({}): {}",
        e.name(),
        e.repository_id(),
        fields.join(", ")
    )
}

fn error_json(e: &CallError) -> serde_json::Value {
    let fields: serde_json::Map<String, serde_json::Value> = e
        .fields()
        .into_iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
        .collect();
    serde_json::json!({
        "ok": false,
        "exception": e.name(),
        "repository_id": e.repository_id(),
        "fields": fields,
    })
}
