//! `dcms client`: not built yet (see the open issues).

#[derive(clap::Args, Debug)]
pub struct ClientArgs {}

pub fn run(_args: ClientArgs) -> anyhow::Result<()> {
    anyhow::bail!("`dcms client` is not built yet")
}
