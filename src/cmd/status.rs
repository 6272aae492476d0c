//! `dcms status`: not built yet (see the open issues).

#[derive(clap::Args, Debug)]
pub struct StatusArgs {}

pub fn run(_args: StatusArgs) -> anyhow::Result<()> {
    anyhow::bail!("`dcms status` is not built yet")
}
