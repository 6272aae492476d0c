//! The subcommands of `dcms`, one module each.

pub mod bench;
pub mod client;
pub mod common;
pub mod debug;
pub mod frontend;
pub mod replica;
pub mod serve;
pub mod status;
pub mod up;

/// Logs go to stderr; `RUST_LOG` selects what (default `info`).
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
