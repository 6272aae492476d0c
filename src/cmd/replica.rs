//! `dcms replica`: not built yet (see the open issues).

#[derive(clap::Args, Debug)]
pub struct ReplicaArgs {}

pub fn run(_args: ReplicaArgs) -> anyhow::Result<()> {
    anyhow::bail!("`dcms replica` is not built yet")
}
