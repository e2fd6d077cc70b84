//! paycenter's domain: pure decision logic for an event-sourced payment ledger.
//!
//! Aggregates decide with `decide(state, command, now) -> Result<Vec<Event>, DomainError>` and
//! fold with `apply(state, &event)`. Nothing here does I/O, reads the clock or draws random
//! numbers: time and entropy arrive as arguments, so every decision is reproducible.
//!
//! # Layout
//! - [`money`]: `Money` (integer minor units + ISO 4217 currency) and `Rate`.
//! - [`ids`]: validated identifiers, including paycenter's `TradeNo`.
//! - [`envelope`]: the stored event envelope and deterministic event ids.
//! - [`events`]: every event type.
//! - [`payment`]: the order aggregate (attempts, outcomes, refunds, duplicates); its
//!   [`payment::sharing`]: splits paid to their receivers at the channel, given back for refunds.
//! - [`shares`]: how a payment's money is divided among fee, splits and merchant, and each
//!   refund's shares of them.
//! - [`payouts`]: money paid out of a merchant's balance, never more than it earned.
//! - [`reconciliation`]: paycenter's record against a channel's bill.
//! - [`registry`]: merchants, channel accounts, apps.
//! - [`receivers`]: split receivers bound at the channel.
//! - [`routing`]: merchants' routing rules, the order accounts are tried in, each account's
//!   circuit breaker.
//! - [`alerts`]: alerts raised and resolved once per condition, and their deliveries.
//! - [`operators`]: the console's operators, their roles and what each role may do.
//! - [`notification`]: webhook deliveries and their retry schedule.
//! - [`streams`]: the stream naming scheme.
//! - [`vocabulary`]: channels, invoke methods, statuses, webhook types, anomaly and discrepancy
//!   kinds, each with its wire name written once.
//! - [`mod@error`] — `DomainError`.
#![warn(missing_docs)]

#[allow(missing_docs)] // Observation and condition fields are named for what they hold.
pub mod alerts;
pub mod envelope;
pub mod error;
#[allow(missing_docs)] // Event fields are named for what they hold; the structs are documented.
pub mod events;
pub mod ids;
pub mod money;
pub mod notification;
pub mod operators;
pub mod payment;
pub mod payouts;
pub mod receivers;
pub mod reconciliation;
pub mod registry;
#[allow(missing_docs)] // Candidate and plan fields are named for what they hold.
pub mod routing;
pub mod shares;
pub mod streams;
pub mod vocabulary;

pub use error::DomainError;
pub use events::Event;
pub use money::{Currency, Money, MoneyError, Rate};
