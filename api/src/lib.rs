//! paycenter's HTTP service and the `paycenter` binary.
//!
//! # Layout
//! - [`server`]: options, start-up (store, master key, read model, reactors), graceful shutdown.
//! - [`http`]: the only module that knows HTTP: the route table, the router, auth, handlers,
//!   the checkout page, the OpenAPI document, the listener.
//! - [`service`]: the use cases: the only code that loads streams, asks `domain` to decide,
//!   appends, and calls channels. HTTP handlers, the reactor and the sweeper all call it.
//! - [`reactor`]: the background loops (notifications, refund submission, webhooks, closes,
//!   the sweeper), each taking its work and handing each item to a use case.
//! - [`state`]: shared state and the decide-append-wait path every command takes.
//! - [`wire`]: the typed bodies paycenter takes and answers (API and webhook payloads), the
//!   source of `/openapi.json`'s schemas.
//! - [`projections`]: hosting the read model: status, its file, online rebuild.
//! - [`chain_audit`]: the sealed chain checkpoint and the background walk below it.
//! - [`error`]: refusals, each a stable code with one HTTP status.
//! - [`keys`]: the master key and AES-256-GCM sealing of secrets inside events.
//! - [`clock`]: the time the service decides with (fixed in tests, movable in test builds).
//! - [`channel_health`]: recent initiation outcomes per channel account (the failure-rate alert).
//! - [`channel_params`]: channel accounts' parameters unsealed once and zeroized on drop.
//! - [`allowlist`], [`key_locks`], [`metrics`], [`rate_limit`].
#![warn(missing_docs)]

pub mod allowlist;
pub mod chain_audit;
pub mod channel_health;
pub mod channel_params;
pub mod clock;
pub mod error;
pub mod http;
pub mod key_locks;
pub mod keys;
pub mod metrics;
pub mod projections;
pub mod rate_limit;
pub mod reactor;
pub mod server;
pub mod service;
pub mod state;
#[allow(missing_docs)] // Fields are the wire names; each type and each unclear field is documented.
pub mod wire;
