//! `dcms up`: not built yet (see the open issues).

#[derive(clap::Args, Debug)]
pub struct UpArgs {}

pub fn run(_args: UpArgs) -> anyhow::Result<()> {
    anyhow::bail!("`dcms up` is not built yet")
}
