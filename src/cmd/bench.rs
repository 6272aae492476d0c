//! `dcms bench`: measurements. `dcms bench store` measures the durable store.

#[derive(clap::Args, Debug)]
pub struct BenchArgs {}

pub fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("to come")
}
