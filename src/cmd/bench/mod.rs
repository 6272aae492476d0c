//! `dcms bench`: measurements.
//!
//! - `dcms bench [OPTIONS]`: N concurrent CORBA clients against a running
//!   cluster (`--url`) or one it starts itself (`--spawn`), an operation mix,
//!   a count or a duration; ops/s and p50/p99/p999 latency at the end, and
//!   with `--spawn` the CPU time each process spent per operation.
//! - `dcms bench store`: the durable store alone.

mod cpu;
mod load;
pub mod spawn;
mod store;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    #[command(flatten)]
    load: load::LoadArgs,
}

#[derive(clap::Subcommand, Debug)]
enum BenchCommand {
    /// Effects applied per second by one replica's store, and its size on disk.
    Store(store::StoreBench),
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        Some(BenchCommand::Store(b)) => store::run(b),
        None => load::run(args.load),
    }
}
