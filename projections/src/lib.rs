//! paycenter's read models, derived by folding the global event log.
//!
//! Today one in-memory [`ReadModel`] holds what the service queries: the registry (merchants,
//! channel accounts, apps), payments by any of their three ids, the notification outbox, and
//! the work the log still asks for (notifications to schedule, refunds to submit). It is
//! rebuilt from position 1 at start and then follows the log live ([`follow`]).
//!
//! # Layout
//! - [`model`]: the read model and its fold.
//! - [`balances`]: double-entry balances (`Ledger`), part of the read model.
//! - [`follow`]: the thread that applies the log to a shared read model.
//! - [`sql`]: payments and balances as PostgreSQL tables, shared by nodes on one database.
#![warn(missing_docs)]

pub mod balances;
pub mod follow;
pub mod model;
pub mod persisted;
pub mod sql;
pub mod tables;

pub use model::ReadModel;
