//! `dcms`: the one binary of the Distributed Clinic Management System.
//!
//! Each subcommand lives in its own module under `cmd/`; this file only parses
//! the command line, sets up logging and dispatches.

mod cmd;

use clap::{Parser, Subcommand};

/// dcms — a fault-tolerant Distributed Clinic Management System.
///
/// Managers of three clinics (MTL Montreal, LVL Laval, DDO Dollard-des-Ormeaux)
/// create, edit, transfer and count doctor and nurse records through one CORBA
/// interface (idl/dcms.idl). A front end sequences every request and sends it
/// over UDP to the leader replica, which executes it, replicates the effect to
/// two backups and answers once. Each replica keeps its own SQLite database.
///
/// Start a local cluster with `dcms up`, then talk to it with `dcms client`.
#[derive(Parser, Debug)]
#[command(name = "dcms", version, about, long_about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a local cluster (front end and replicas) on 127.0.0.1.
    Up(cmd::up::UpArgs),
    /// Write the configuration files of a cluster on separate hosts.
    Init(cmd::init::InitArgs),
    /// Run one replica manager (leader or backup).
    Replica(cmd::replica::ReplicaArgs),
    /// Run the CORBA front end (sequencer).
    Frontend(cmd::frontend::FrontendArgs),
    /// Certificates of IIOP over TLS: a manager's client certificate.
    Cert(cmd::cert::CertArgs),
    /// Call the DCMS interface as a clinic manager.
    Client(cmd::client::ClientArgs),
    /// Show the state of every process of a cluster.
    Status(cmd::status::StatusArgs),
    /// Measure throughput and latency.
    Bench(cmd::bench::BenchArgs),
    /// Hurt a local cluster under load (kill the leader, pause a backup) and check that nothing acknowledged is lost or doubled.
    Chaos(cmd::chaos::ChaosArgs),
    /// Tools for tests and operators (store inspection, audit export).
    #[command(hide = true)]
    Debug(cmd::debug::DebugArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let quiet = matches!(
        cli.command,
        Command::Client(_)
            | Command::Init(_)
            | Command::Cert(_)
            | Command::Bench(_)
            | Command::Chaos(_)
            | Command::Status(_)
            | Command::Debug(_)
    );
    cmd::init_logging(if quiet { "warn" } else { "info" });
    let result = match cli.command {
        Command::Up(a) => cmd::up::run(a),
        Command::Init(a) => cmd::init::run(a),
        Command::Replica(a) => cmd::replica::run(a),
        Command::Frontend(a) => cmd::frontend::run(a),
        Command::Cert(a) => cmd::cert::run(a),
        Command::Client(a) => cmd::client::run(a),
        Command::Status(a) => cmd::status::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Chaos(a) => cmd::chaos::run(a),
        Command::Debug(a) => cmd::debug::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dcms: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
