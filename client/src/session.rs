//! Runs parsed REPL commands against a cluster and renders each result as
//! the one line the `client` binary prints. Shared by the interactive REPL,
//! script mode (stdin) and one-shot commands, so all three print the same.

use std::time::Duration;

use crate::failover::Client;
use crate::repl::{format_reply, format_status, help_for, help_text, Command, ParseError};

/// What running one command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Success: the line to print.
    Ok(String),
    /// Failure: the line to print (starts with `error: `).
    Err(String),
    /// The user asked to leave.
    Quit,
}

/// Runs one command. Never panics on server or network errors: they become
/// [`Step::Err`] lines naming the replica and the outcome.
pub async fn run(client: &mut Client, cmd: Command) -> Step {
    match cmd {
        Command::Op(op) => match client.execute(op.clone()).await {
            Ok(reply) => Step::Ok(format_reply(&op, &reply)),
            Err(e) => Step::Err(format!("error: {e}")),
        },
        Command::Status { addr } => {
            let addr = addr.unwrap_or_else(|| client.preferred_address().to_owned());
            let timeout = client.options().attempt_timeout.max(Duration::from_secs(1));
            match crate::admin::status(&addr, timeout).await {
                Ok(s) => Step::Ok(format_status(&s)),
                Err(e) => Step::Err(format!("error: {e}")),
            }
        }
        Command::Help { topic: None } => Step::Ok(help_text()),
        Command::Help { topic: Some(t) } => match help_for(&t) {
            Some(h) => Step::Ok(h),
            None => Step::Err(format!("error: unknown command {t:?} (try HELP)")),
        },
        Command::Quit => Step::Quit,
    }
}

/// The one line printed for a line that does not parse.
pub fn parse_error_line(e: &ParseError) -> String {
    match e.usage {
        Some(u) => format!("error: {e}; usage: {u}"),
        None => format!("error: {e}"),
    }
}
