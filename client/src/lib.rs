//! paxoskv client library: a session with a replicated key-value store.
//!
//! ```no_run
//! # async fn demo() -> Result<(), client::ClientError> {
//! use client::{Client, ClientOptions};
//! let mut c = Client::new(
//!     vec!["127.0.0.1:8000".into(), "127.0.0.1:8001".into()],
//!     ClientOptions::default(),
//! )?;
//! c.put("apple", "green").await?;
//! assert_eq!(c.get("apple").await?.value.as_deref(), Some("green"));
//! # Ok(()) }
//! ```
//!
//! - [`Client`] ([`failover`]): commands with exactly-once retries across
//!   replicas, under a whole-request deadline.
//!   [`execute_once`] is one attempt on one replica (no failover, no retry),
//!   for callers bound to a replica such as the Jepsen harness.
//! - [`ClientError`] ([`error`]): what went wrong, which replica answered, and
//!   whether the command may have taken effect ([`Outcome`]).
//! - [`status`], [`set_fail_rate`] ([`admin`]): operator calls to one replica.
//! - [`repl`]: the command language of the `client` binary; [`session`]
//!   runs its commands and renders the output lines; [`terminal`] is the
//!   terminal mode of the interactive REPL between lines, [`history`] its
//!   history file.

pub mod addr;
pub mod admin;
pub mod error;
pub mod failover;
pub mod history;
pub mod op;
pub mod repl;
pub mod session;
pub mod terminal;

pub use addr::Address;
pub use admin::{set_fail_rate, status};
pub use error::{ClientError, ErrorKind, Outcome};
pub use failover::{execute_once, Client, ClientOptions};
pub use op::{Op, Reply};
