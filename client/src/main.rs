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
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use client::history::HistoryFile;
use client::repl::{format_cancelled, is_command_name, parse_line, parse_words, Word};
use client::session::{parse_error_line, run, Step};
use client::terminal::CommandMode;
use client::{Client, ClientOptions};
use rustyline::history::DefaultHistory;
use rustyline::DefaultEditor;
use tokio::signal::unix::{signal, Signal, SignalKind};

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

    /// Runs one command until it finishes or `interrupt` sees SIGINT
    /// (Ctrl-C); `None` if it was cancelled.
    fn run_unless_interrupted(
        &mut self,
        cmd: client::repl::Command,
        interrupt: Option<Signal>,
    ) -> Option<Step> {
        let Some(mut interrupt) = interrupt else {
            return Some(self.run(cmd));
        };
        let client = &mut self.client;
        self.runtime.block_on(async {
            tokio::select! {
                biased;
                step = run(client, cmd) => Some(step),
                _ = interrupt.recv() => None,
            }
        })
    }

    /// A listener for SIGINT, registered now: it sees only later signals.
    fn listen_for_interrupt(&self) -> Option<Signal> {
        let _enter = self.runtime.enter();
        signal(SignalKind::interrupt()).ok()
    }

    /// The interactive REPL with line editing and history. Every line typed
    /// or pasted runs, in order, its output after its own prompt line, even
    /// lines typed while a command still runs (see [`client::terminal`]).
    /// Ctrl-C during a command cancels it, says whether it may have been
    /// applied, and, as in a shell, drops what was typed ahead of it; at the
    /// prompt it drops the line being edited. Ctrl-D or QUIT leaves. Each
    /// line goes to the history file at once.
    fn interactive(&mut self) -> ExitCode {
        use rustyline::error::ReadlineError;
        let mut editor = match new_editor(DefaultHistory::new()) {
            Ok(ed) => ed,
            Err(e) => {
                eprintln!("client: no line editing ({e}); reading plain lines");
                return self.script();
            }
        };
        let history = std::env::var_os("HOME").and_then(|home| {
            HistoryFile::load(Path::new(&home).join(HISTORY_FILE), &mut editor)
                .map_err(|e| eprintln!("client: {e}; this session's lines will not be saved"))
                .ok()
        });
        let mut history_warned = false;
        // From here on SIGINT never ends the REPL: during a command it
        // cancels the command; at the prompt the editor reads Ctrl-C as a
        // key, and a SIGINT sent by another process is ignored.
        if self.listen_for_interrupt().is_none() {
            eprintln!("client: cannot catch SIGINT; Ctrl-C during a command will end the client");
        }
        // Where the editor edits lines, the terminal stays in command mode
        // between lines (the editor's raw mode while it reads one).
        let mode = if client::terminal::line_editing() {
            match CommandMode::enter() {
                Ok(mode) => Some(mode),
                Err(e) => {
                    eprintln!("client: cannot set the terminal mode ({e}); lines typed during a command are echoed early");
                    None
                }
            }
        } else {
            None
        };
        self.leave_on_termination(mode.as_ref().map(|m| m.saved().clone()));
        println!(
            "paxoskv client, session {:016x}; HELP for commands, QUIT to leave",
            self.client.client_id()
        );
        loop {
            if let Some(mode) = &mode {
                // Again, in case a job-control shell changed it (Ctrl-Z, fg).
                mode.reassert();
            }
            let prompt = format!("{}> ", self.client.preferred_address());
            let line = match editor.readline(&prompt) {
                Ok(line) => line,
                Err(ReadlineError::Interrupted) => {
                    client::terminal::discard_typed_ahead();
                    continue;
                }
                Err(ReadlineError::Eof) => break,
                Err(e) => {
                    eprintln!("client: cannot read input: {e}");
                    break;
                }
            };
            // Listening at once: a Ctrl-C from now on cancels this line's
            // command, even while the history file is being written.
            let interrupt = self.listen_for_interrupt();
            if !line.trim().is_empty() && editor.add_history_entry(line.as_str()).unwrap_or(false) {
                if let Some(Err(e)) = history.as_ref().map(|h| h.save(&mut editor)) {
                    if !std::mem::replace(&mut history_warned, true) {
                        eprintln!("client: {e}");
                    }
                }
            }
            let cmd = match parse_line(&line) {
                Ok(None) => continue,
                Ok(Some(cmd)) => cmd,
                Err(e) => {
                    println!("{}", parse_error_line(&e));
                    continue;
                }
            };
            let cancelled = format_cancelled(&cmd);
            match self.run_unless_interrupted(cmd, interrupt) {
                Some(Step::Ok(text)) | Some(Step::Err(text)) => println!("{text}"),
                Some(Step::Quit) => break,
                None => {
                    println!("{cancelled}");
                    // The kernel dropped the input queued behind the
                    // Ctrl-C; drop what the editor had read ahead too.
                    match new_editor(DefaultHistory::new()) {
                        Ok(mut fresh) => {
                            std::mem::swap(fresh.history_mut(), editor.history_mut());
                            editor = fresh;
                        }
                        Err(e) => eprintln!("client: cannot reset line editing: {e}"),
                    }
                }
            }
        }
        drop(mode);
        ExitCode::SUCCESS
    }

    /// On SIGTERM or SIGHUP: puts the terminal back in `cooked` mode (if
    /// given) and exits 143 or 129, as the default action would, but without
    /// leaving the terminal unechoed or the history file half replaced.
    fn leave_on_termination(&self, cooked: Option<nix::sys::termios::Termios>) {
        let _enter = self.runtime.enter();
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        self.runtime.spawn(async move {
            let code = tokio::select! {
                _ = term.recv() => 143,
                _ = hup.recv() => 129,
            };
            if let Some(mode) = &cooked {
                client::terminal::set_mode(mode);
            }
            // Not in the middle of replacing the history file.
            let _saved = client::history::no_save_in_progress();
            std::process::exit(code);
        });
    }
}

/// A line editor that keeps bytes read past a line for the next one (the
/// `buffer-redux` feature of rustyline) and does not ask the terminal for
/// bracketed paste, so pasted lines arrive as typed ones and run one by one.
fn new_editor(history: DefaultHistory) -> rustyline::Result<DefaultEditor> {
    let config = rustyline::Config::builder().bracketed_paste(false).build();
    DefaultEditor::with_history(config, history)
}
