//! The subcommands of `dcms`, one module each.

pub mod bench;
pub mod cert;
pub mod chaos;
pub mod client;
pub mod common;
pub mod debug;
pub mod frontend;
pub mod init;
pub mod replica;
pub mod status;
pub mod up;

/// Logs go to stderr; `RUST_LOG` selects what (default `default_level`:
/// `info` for the server processes, `warn` for client-side commands).
pub fn init_logging(default_level: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
