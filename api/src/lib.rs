//! paycenter's HTTP service and the `paycenter` binary: the only crate that knows HTTP.
//!
//! # Layout
//! - [`server`]: options, start-up (store, master key, read model, reactors), graceful shutdown.
//! - [`routes`]: warp filters, auth, body limits, the error shape of refusals.
//! - [`handlers`]: one function per endpoint; [`checkout`]: the checkout page and sandbox pay.
//! - [`wire`]: the typed request and answer bodies, the source of `/openapi.json`'s schemas;
//!   [`dto`]: reading request fields and converting read models to answers.
//! - [`state`]: shared state and the decide-append-wait path every command takes.
//! - [`projections`]: projection status, lag and online rebuild.
//! - [`reconciliation`]: bills against paycenter's record, results as events.
//! - [`service`]: use cases the handlers and the reactor share (outcomes so far).
//! - [`reactor`]: notification scheduling, refund submission, the webhook dispatcher.
//! - [`idempotency`]: `Idempotency-Key` replays, recorded as events.
//! - [`listener`]: the HTTP listener with its connection cap and read timeouts.
//! - [`rate_limit`]: each app's request budget (`429 rate_limited`).
//! - [`keys`]: the master key and AES-256-GCM sealing of secrets inside events.
//! - [`health`]: `/healthz`, the state of the store and of every projection.
//! - [`clock`]: the time the service decides with (movable in test builds).
//! - [`error`], [`metrics`], [`openapi`].
#![warn(missing_docs)]

pub mod allowlist;
pub mod checkout;
pub mod clock;
pub mod dto;
pub mod error;
pub mod handlers;
pub mod health;
pub mod idempotency;
pub mod keys;
pub mod listener;
pub mod metrics;
pub mod openapi;
pub mod projections;
pub mod rate_limit;
pub mod reactor;
pub mod reconciliation;
pub mod routes;
pub mod server;
pub mod service;
pub mod state;
#[allow(missing_docs)] // Fields are the wire names; each type and each unclear field is documented.
pub mod wire;
