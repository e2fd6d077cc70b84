//! Use cases: what paycenter does, apart from how it is asked. HTTP handlers, the reactor and
//! the sweeper call these; each loads what it needs, lets `domain` decide, appends through
//! `AppState::execute` and, where it must, calls a channel.
//!
//! This layer is being drawn out of `handlers.rs` and `reactor.rs`; so far it holds:
//!
//! # Layout
//! - [`outcomes`]: recording what a channel reported (callback or query), and where a refund
//!   is sent.
//! - [`payments`]: starting a payment attempt (checks, decision, initiation at the channel).

pub mod outcomes;
pub mod payments;
