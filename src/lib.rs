//! cp-mod-migrator: moves a Kyma cluster from the legacy Connectivity Proxy 2.9.3 to the
//! Connectivity Proxy module, in steps that are safe to repeat, interrupt and run concurrently.

pub mod access;
pub mod archive;
pub mod cli;
pub mod client;
pub mod commands;
pub mod configmaps;
pub mod conflicts;
pub mod cr;
pub mod diff;
pub mod error;
pub mod fleet;
pub mod hand_over;
pub mod legacy;
pub mod logging;
pub mod migration;
pub mod module;
pub mod names;
pub mod schema;
pub mod service_mappings;
pub mod step;
pub mod termination;
pub mod translate;
pub mod yaml;

pub use error::{Error, Result};
