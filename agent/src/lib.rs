//! psstd, the per-host secrets agent.
//!
//! # Layout
//!
//! A request travels down this list:
//!
//! - [`transport`]: the Unix socket (or systemd's) and its accept loop.
//! - [`admission`]: what each uid, and everyone together, may make the agent hold.
//! - [`identity`]: peer credentials enriched from `/proc` into a [`identity::Caller`].
//! - [`api`]: gRPC handlers; they translate and call the core. [`http_api`] is the second front
//!   door: the AWS agents' HTTP/1.1 API, on the same socket (and optionally TCP).
//! - [`agent`]: the core: reference → policy → cache → backend, independent of gRPC.
//! - [`policy`]: deny by default, reloaded live.
//! - [`cache`]: memory-only, bounded, coalescing, stale-tolerant.
//! - [`backend`]: where values live ([`backend::local`] is the embedded default).
//! - [`rotation`]: change detection, the push to watchers, generated values.
//!
//! Beside it: [`config`], [`audit`], [`metrics`], [`telemetry`], [`lifecycle`], and [`app`], the composition
//! root. [`secret::SecretValue`] is the one type that holds plaintext.
// Denied, not forbidden: the audit journal's shared map (`audit/journal.rs`) is the one module
// allowed to use it.
#![deny(unsafe_code)]
#![warn(unreachable_pub)]

pub(crate) mod admission;
pub(crate) mod agent;
pub(crate) mod api;
pub mod app;
pub(crate) mod audit;
pub(crate) mod backend;
pub(crate) mod cache;
pub mod config;
pub mod http_api;
pub(crate) mod identity;
pub mod lifecycle;
pub mod metrics;
pub mod policy;
pub mod reference;
pub(crate) mod rotation;
pub(crate) mod secret;
pub(crate) mod server;
pub mod telemetry;
pub(crate) mod transport;
