//! HTTP: the only part of paycenter that knows requests and responses. Everything here reads
//! a request, calls a use case of [`crate::service`] (or reads the read model), and writes the
//! answer; no business rule lives here.
//!
//! # Layout
//! - [`routes`]: the route table: method, path, caller, body, answers of every operation. The
//!   router and `/openapi.json` are both made from it.
//! - [`router`]: matches a request against the table, authenticates its caller, reads its body
//!   within the route's limit, calls its handler and records its metrics.
//! - [`auth`]: the admin token and app keys; each app's request budget.
//! - [`handlers`]: one function per API operation; [`checkout`]: the checkout page and the
//!   sandbox's pay button; [`admin`]: projections, reconciliations and metrics.
//! - [`alerts`]: alert destinations and alerts (`/v1/alert-channels`, `/v1/alerts`).
//! - [`operations`]: every admin-side operation, with the role check and the actor.
//! - [`operators`]: the console's operators (`/v1/operators`).
//! - [`console`]: the back office's pages at `/console`, calling the same operations as the API.
//! - [`dto`]: reading request fields (limits, unknown fields, amounts); [`requests`]: request
//!   bodies into domain types.
//! - [`idempotency`]: `Idempotency-Key` replays, recorded as events.
//! - [`listener`]: the TCP listener with its connection cap and read timeouts.
//! - [`openapi`]: the OpenAPI 3.1 document.

pub mod admin;
pub mod alerts;
pub mod auth;
pub mod checkout;
pub mod console;
pub mod dto;
pub mod handlers;
pub mod health;
pub mod idempotency;
pub mod listener;
pub mod lists;
pub mod openapi;
pub mod operations;
pub mod operators;
pub mod payouts;
pub mod receivers;
pub mod requests;
pub mod router;
pub mod routes;
pub mod routing;

use hyper::http::StatusCode;

/// A handler's answer: a status and a JSON body, or a refusal.
pub type Answer = Result<(StatusCode, serde_json::Value), crate::error::Refusal>;
