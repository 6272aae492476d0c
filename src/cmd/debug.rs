//! `dcms debug`: hidden tools for tests.

#[derive(clap::Args, Debug)]
pub struct DebugArgs {}

pub fn run(_args: DebugArgs) -> anyhow::Result<()> {
    anyhow::bail!("to come")
}
