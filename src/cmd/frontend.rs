//! `dcms frontend`: not built yet (see the open issues).

#[derive(clap::Args, Debug)]
pub struct FrontendArgs {}

pub fn run(_args: FrontendArgs) -> anyhow::Result<()> {
    anyhow::bail!("`dcms frontend` is not built yet")
}
