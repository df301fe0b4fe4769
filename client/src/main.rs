//! `client`: REPL, script and one-shot commands against a paxoskv cluster.
//!
//! ```text
//! client                                     # REPL against localhost:8000
//! client localhost:8001                      # REPL against another replica
//! client -a host:8000,host:8001 get apple    # one-shot, with failover
//! echo "PUT apple green" | client            # script from stdin
//! ```
//!
//! Exit status: one-shot 0 ok, 1 error reply, 2 usage error; script 0 if
//! every command succeeded, else 1. The command language lives in
//! [`client::repl`], its execution in [`client::session`]; this file only
//! wires terminal, stdin and arguments to them.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use client::repl::{is_command_name, parse_line, parse_words, Word};
use client::session::{parse_error_line, run, Step};
use client::{Client, ClientOptions};

/// Replica used when none is given.
const DEFAULT_ADDR: &str = "localhost:8000";
/// History file of the interactive REPL, in $HOME.
const HISTORY_FILE: &str = ".paxoskv_client_history";

/// Command line of `client`.
#[derive(Debug, Parser)]
#[command(
    name = "client",
    args_override_self = true,
    version,
    about = "paxoskv client: REPL, script (stdin) and one-shot commands.",
    after_help = "Examples:\n  client                                   REPL against localhost:8000\n  \
        client localhost:8001                    REPL against another replica\n  \
        client -a h:8000,h:8001 get apple        one-shot; fails over between addresses\n  \
        echo \"PUT apple green\" | client          script from stdin\n\
        Commands: GET k, PUT k v, DELETE k, CAS k old new (old - or nil: absent), APPEND k v, STATUS [addr], HELP"
)]
struct Cli {
    /// Replica addresses (host:port), comma-separated or repeated; tried in
    /// order, starting from the coordinator that served the last command if
    /// it is listed, else from the last one that answered.
    #[arg(
        short = 'a',
        long = "addrs",
        value_delimiter = ',',
        value_name = "HOST:PORT"
    )]
    addrs: Vec<String>,
    /// Deadline of one command, retries included, in milliseconds.
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    timeout_ms: u64,
    /// Deadline of one attempt on one replica, in milliseconds.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    attempt_timeout_ms: u64,
    /// Session id (default: random).
    #[arg(long)]
    client_id: Option<u64>,
    /// Only ever try the first address.
    #[arg(long)]
    no_failover: bool,
    /// `[HOST:PORT[,HOST:PORT...]] [COMMAND ARGS...]`: a replica to talk to,
    /// and a command to run once instead of the REPL. Put `--` before
    /// arguments that start with `-` (other than `-` itself).
    #[arg(allow_negative_numbers = true, value_name = "ARGS")]
    words: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut words = cli.words;
    let mut addrs = cli.addrs;
    // `client host:port [command...]`: a leading word that is not a command
    // name and looks like an address (has a port) is the address; anything
    // else is left to the command parser, which names unknown commands.
    if words
        .first()
        .is_some_and(|w| !is_command_name(w) && w.contains(':'))
    {
        let first = words.remove(0);
        addrs.extend(first.split(',').map(str::to_owned));
    }
    if addrs.is_empty() {
        addrs.push(DEFAULT_ADDR.to_owned());
    }
    let opts = ClientOptions {
        timeout: Duration::from_millis(cli.timeout_ms),
        attempt_timeout: Duration::from_millis(cli.attempt_timeout_ms),
        client_id: cli.client_id,
        failover: !cli.no_failover,
    };
    let client = match Client::new(addrs, opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("client: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("client: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let mut shell = Shell { runtime, client };
    if !words.is_empty() {
        shell.one_shot(&words)
    } else if std::io::stdin().is_terminal() {
        shell.interactive()
    } else {
        shell.script()
    }
}

/// A client plus the runtime its commands run on.
struct Shell {
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl Shell {
    /// Runs one parsed command to completion.
    fn run(&mut self, cmd: client::repl::Command) -> Step {
        self.runtime.block_on(run(&mut self.client, cmd))
    }

    /// One command from the command line.
    fn one_shot(&mut self, words: &[String]) -> ExitCode {
        let words: Vec<Word> = words.iter().map(Word::plain).collect();
        let cmd = match parse_words(&words) {
            Ok(cmd) => cmd,
            Err(e) => {
                eprintln!("client: {}", parse_error_line(&e));
                return ExitCode::from(2);
            }
        };
        match self.run(cmd) {
            Step::Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Step::Err(line) => {
                eprintln!("{line}");
                ExitCode::from(1)
            }
            Step::Quit => ExitCode::SUCCESS,
        }
    }

    /// Commands from a non-terminal stdin, one per line, no prompt.
    fn script(&mut self) -> ExitCode {
        let mut all_ok = true;
        let stdin = std::io::stdin();
        let mut out = std::io::stdout();
        for line in stdin.lock().lines() {
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    let _ = writeln!(out, "error: cannot read stdin: {e}");
                    all_ok = false;
                    break;
                }
            };
            match self.line(&line) {
                Some(Step::Ok(text)) => {
                    let _ = writeln!(out, "{text}");
                }
                Some(Step::Err(text)) => {
                    all_ok = false;
                    let _ = writeln!(out, "{text}");
                }
                Some(Step::Quit) => break,
                None => {}
            }
            let _ = out.flush();
        }
        if all_ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    }

    /// Parses and runs one REPL line; `None` for blank lines and comments.
    fn line(&mut self, line: &str) -> Option<Step> {
        match parse_line(line) {
            Ok(None) => None,
            Ok(Some(cmd)) => Some(self.run(cmd)),
            Err(e) => Some(Step::Err(parse_error_line(&e))),
        }
    }

    /// The interactive REPL with line editing and history.
    fn interactive(&mut self) -> ExitCode {
        use rustyline::error::ReadlineError;
        let mut editor = match rustyline::DefaultEditor::new() {
            Ok(ed) => ed,
            Err(e) => {
                eprintln!("client: no line editing ({e}); reading plain lines");
                return self.script();
            }
        };
        let history = std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(HISTORY_FILE));
        if let Some(path) = &history {
            let _ = editor.load_history(path);
        }
        println!(
            "paxoskv client, session {:016x}; HELP for commands, QUIT to leave",
            self.client.client_id()
        );
        loop {
            let prompt = format!("{}> ", self.client.preferred_address());
            match editor.readline(&prompt) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    match self.line(&line) {
                        Some(Step::Ok(text)) | Some(Step::Err(text)) => println!("{text}"),
                        Some(Step::Quit) => break,
                        None => {}
                    }
                }
                Err(ReadlineError::Interrupted) => continue,
                Err(ReadlineError::Eof) => break,
                Err(e) => {
                    eprintln!("client: cannot read input: {e}");
                    break;
                }
            }
        }
        if let Some(path) = &history {
            let _ = editor.save_history(path);
        }
        ExitCode::SUCCESS
    }
}
