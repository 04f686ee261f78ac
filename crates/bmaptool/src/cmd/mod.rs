//! One module per subcommand: arguments -> library options -> messages.

pub mod copy;
pub mod create;
mod preflight;
pub mod signature;
