//! paycenter's read models, derived by folding the global event log.
//!
//! Two projections hold what the service queries. The [`ReadModel`]: the registry (merchants,
//! channel accounts, apps), payments by any of their ids, the notification outbox and feeds,
//! the work the log still asks for (queues ordered the way they are taken). The balances
//! ([`balances::Balances`]): the double-entry ledger. What grows with history lives in each
//! projection's own SQLite file in the data directory, committed with its checkpoint; a start
//! resumes there and follows the log live ([`follow`]).
//!
//! # Layout
//! - [`model`]: the read model, its fold and its typed queries.
//! - [`tables`]: where it keeps what it derives: `Map` (in a SQLite file, PostgreSQL tables, or
//!   in memory), `Resident`.
//! - [`persisted`]: the model's file in the data directory: the live pointer, generations,
//!   upgrades.
//! - [`balances`]: double-entry balances (`Ledger`) and the projection that keeps them.
//! - [`projection`]: what a projection is to the follower, the rebuild and its files.
//! - [`follow`]: the thread that applies the log to a shared projection and commits it.
//! - [`rebuild`]: an online rebuild into a new file, swapped in atomically.
//! - [`shared`]: projections whose tables nodes on one PostgreSQL database share: one node
//!   folds, the others read.
//! - [`sql`]: payments and balances as PostgreSQL tables, shared by nodes on one database.
#![warn(missing_docs)]

pub mod balances;
pub mod follow;
pub mod model;
pub mod persisted;
pub mod projection;
pub mod rebuild;
pub mod shared;
pub mod sql;
pub mod tables;

pub use model::ReadModel;
pub use projection::Projection;
