//! One module per subcommand: arguments -> library options -> messages.

pub mod copy;
pub mod create;
pub mod errcode;
pub mod info;
pub mod json;
mod multi;
pub mod network;
mod preflight;
mod reflash;
mod seek;
pub mod signature;
pub mod verify;
