//! `paycenter-replay`: verify, audit and export the event log, offline or beside a running
//! server (the store is opened read-only, without the writer's lock).
//!
//! # Layout
//! - [`fold`]: folds the log (up to a time) into the read model, reporting the first event
//!   that breaks an invariant instead of crashing.
//! - [`commands`]: one function per command, writing machine-readable output to a writer.
#![warn(missing_docs)]

pub mod commands;
pub mod fold;
