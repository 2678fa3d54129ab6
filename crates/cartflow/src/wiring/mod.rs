//! What commands share: the pieces they open and connect (listeners and
//! tokens, the registry, the prediction server, the feature streamer, the
//! trainer, the dashboard's insights) and the summaries more than one
//! prints. A command parses its arguments and calls these; no command calls
//! another command's code.

pub mod insights;
pub mod listen;
pub mod registry;
pub mod report;
pub mod server;
pub mod streamer;
pub mod study;
pub mod training;
