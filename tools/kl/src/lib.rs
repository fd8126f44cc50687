//! `kl`: the operator's command line for the functions of this workspace.
//!
//! - [`letters`]: the dead-letter table (selection, rows, counts by code, replay marks).
//! - [`rebuild`]: a dead letter back into the Kafka record it was.
//! - [`target`]: the function a replay invokes (local binary / invoke URL, or Lambda `Invoke`).
//! - [`replay`]: `kl dead-letters replay`.
//! - [`reembed`]: `kl pages reembed`.
//! - [`failures`]: `kl failures replay` (the mapping's on-failure destination records).
//! - [`cli`]: the flags, and each command's output.

pub mod cli;
pub mod failures;
pub mod letters;
pub mod rebuild;
pub mod reembed;
pub mod replay;
pub mod target;
