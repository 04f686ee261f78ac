//! One module per subcommand: arguments -> library options -> messages.

pub mod copy;
pub mod create;
pub mod info;
pub mod network;
mod preflight;
pub mod signature;
