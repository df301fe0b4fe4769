//! The interactive `client` REPL on a pseudo-terminal, against a real
//! one-replica server: lines pasted at once and lines typed while a command
//! is still running all run, in order, each one's output after its own
//! prompt line; Ctrl-C cancels the running command (not the REPL) and says
//! whether it may have been applied; Ctrl-D leaves; the history file keeps
//! every line. Ports 27500-27599.

use crate::tty;

use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::termios::LocalFlags;
use tty::{Repl, Server};

/// Deadline of every wait for the screen.
const WAIT: Duration = Duration::from_secs(10);

/// Client flags: generous deadlines, so a command stays in flight (not
/// timed out) while a test holds the server paused.
const SLOW_OK: [&str; 4] = ["--timeout-ms", "20000", "--attempt-timeout-ms", "15000"];

fn start(name: &str, server: &Server, history: Option<&[u8]>) -> (Repl, String) {
    let mut args = SLOW_OK.to_vec();
    args.push(&server.addr);
    let repl = Repl::start(name, &args, history);
    let prompt = format!("{}>", server.addr);
    let screen = repl.wait_tail(&[prompt.as_str()], WAIT);
    assert!(
        screen[0].starts_with("paxoskv client, session "),
        "banner: {screen:?}"
    );
    (repl, prompt)
}

/// Whether the terminal is in its usual mode: echo and line editing.
fn echoes(repl: &Repl) -> bool {
    repl.termios()
        .local_flags
        .contains(LocalFlags::ECHO | LocalFlags::ICANON)
}

/// `prompt> line`, as the screen shows a line after its prompt.
fn at(prompt: &str, line: &str) -> String {
    format!("{prompt} {line}")
}

#[test]
fn pasted_lines_all_run_in_order_each_after_its_prompt() {
    let server = Server::start("repl-paste", 27500);
    let (mut repl, p) = start("repl-paste", &server, None);
    // Four lines in one write, as a terminal pastes them (Enter is CR).
    repl.send("PUT p1 x\rPUT p2 y\rPUT p3 z\rGET p2\r");
    let screen = repl.wait_tail(&[&at(&p, "GET p2"), "y", &p], WAIT);
    assert_eq!(
        screen[1..],
        [
            at(&p, "PUT p1 x"),
            "OK".into(),
            at(&p, "PUT p2 y"),
            "OK".into(),
            at(&p, "PUT p3 z"),
            "OK".into(),
            at(&p, "GET p2"),
            "y".into(),
            p.clone(),
        ]
    );
    // Text copied with LF line ends behaves the same.
    repl.send("APPEND p3 1\nGET p3\n");
    repl.wait_tail(
        &[&at(&p, "APPEND p3 1"), "z1", &at(&p, "GET p3"), "z1", &p],
        WAIT,
    );
    // The client does not ask for bracketed paste, so a terminal pastes
    // plain keystrokes, which run line by line as above.
    assert!(
        !repl.raw().contains("\x1b[?2004h"),
        "bracketed paste enabled"
    );
    repl.send("\x04");
    assert!(repl.wait_exit(WAIT).success());
    assert_eq!(
        repl.history(),
        [
            "PUT p1 x",
            "PUT p2 y",
            "PUT p3 z",
            "GET p2",
            "APPEND p3 1",
            "GET p3"
        ]
    );
}

#[test]
fn lines_typed_while_a_command_runs_run_after_it() {
    let server = Server::start("repl-typeahead", 27510);
    let (mut repl, p) = start("repl-typeahead", &server, Some(b"#V2\nOLD line\n"));
    server.pause();
    repl.send("PUT a 1\r");
    repl.wait_tail(&[&at(&p, "PUT a 1"), ""], WAIT);
    // PUT a 1 hangs on the paused server; type three more lines meanwhile,
    // one keystroke burst each.
    for line in ["PUT b 2\r", "GET a\r", "GET b\r"] {
        std::thread::sleep(Duration::from_millis(150));
        repl.send(line);
    }
    std::thread::sleep(Duration::from_millis(300));
    // Nothing typed ahead is echoed before the running command's output.
    assert_eq!(
        repl.screen()[1..],
        [at(&p, "PUT a 1"), String::new()],
        "typed-ahead lines were echoed early"
    );
    server.resume();
    let screen = repl.wait_tail(&[&at(&p, "GET b"), "2", &p], WAIT);
    assert_eq!(
        screen[1..],
        [
            at(&p, "PUT a 1"),
            "OK".into(),
            at(&p, "PUT b 2"),
            "OK".into(),
            at(&p, "GET a"),
            "1".into(),
            at(&p, "GET b"),
            "2".into(),
            p.clone(),
        ]
    );
    // Ctrl-D typed during a command leaves after the lines before it ran.
    server.pause();
    repl.send("GET a\r");
    repl.wait_tail(&[&at(&p, "GET a"), ""], WAIT);
    repl.send("\x04");
    std::thread::sleep(Duration::from_millis(200));
    server.resume();
    assert!(repl.wait_exit(WAIT).success());
    let mut screen = repl.screen();
    while screen.last().is_some_and(|l| l.is_empty()) {
        screen.pop();
    }
    assert!(
        screen.ends_with(&[at(&p, "GET a"), "1".into(), p.clone()]),
        "{screen:?}"
    );
    assert!(echoes(&repl), "terminal left without echo");
    assert_eq!(
        repl.history(),
        ["OLD line", "PUT a 1", "PUT b 2", "GET a", "GET b", "GET a"]
    );
}

#[test]
fn ctrl_c_cancels_the_running_command_not_the_repl() {
    let server = Server::start("repl-ctrl-c", 27520);
    let (mut repl, p) = start("repl-ctrl-c", &server, None);
    repl.send("PUT warm 0\r");
    repl.wait_tail(&[&at(&p, "PUT warm 0"), "OK", &p], WAIT);

    // A write cancelled while in flight may have been applied.
    server.pause();
    repl.send("PUT c 1\r");
    repl.wait_tail(&[&at(&p, "PUT c 1"), ""], WAIT);
    repl.wait_running(WAIT);
    // Typed ahead, then discarded by the Ctrl-C, as in a shell.
    repl.send("PUT e 5\r");
    std::thread::sleep(Duration::from_millis(100));
    repl.send("\x03");
    let cancelled = "error: cancelled by Ctrl-C (outcome unknown: PUT may have been applied)";
    repl.wait_tail(&[&at(&p, "PUT c 1"), cancelled, &p], WAIT);
    server.resume();
    repl.send("GET e\r");
    repl.wait_tail(&[&at(&p, "GET e"), "(nil)", &p], WAIT);
    repl.send("GET c\r");
    let screen = repl.wait_for("GET c's answer", WAIT, |s| {
        s.len() >= 3 && s[s.len() - 3] == at(&p, "GET c") && s[s.len() - 1] == p
    });
    let c = &screen[screen.len() - 2];
    assert!(c == "1" || c == "(nil)", "GET c printed {c:?}");

    // Lines pasted behind a command that gets cancelled go with it.
    server.pause();
    repl.send("PUT f 6\rPUT g 7\r");
    repl.wait_tail(&[&at(&p, "PUT f 6"), ""], WAIT);
    repl.wait_running(WAIT);
    repl.send("\x03");
    let cancelled_f = "error: cancelled by Ctrl-C (outcome unknown: PUT may have been applied)";
    repl.wait_tail(&[&at(&p, "PUT f 6"), cancelled_f, &p], WAIT);

    // A cancelled read surely changed nothing.
    repl.send("GET warm\r");
    repl.wait_tail(&[&at(&p, "GET warm"), ""], WAIT);
    repl.wait_running(WAIT);
    repl.send("\x03");
    repl.wait_tail(
        &[
            &at(&p, "GET warm"),
            "error: cancelled by Ctrl-C (not applied)",
            &p,
        ],
        WAIT,
    );
    server.resume();
    repl.send("GET g\r");
    repl.wait_tail(&[&at(&p, "GET g"), "(nil)", &p], WAIT);

    // Ctrl-C at the prompt drops the line being typed; the REPL stays.
    repl.send("GET half");
    repl.wait_tail(&[&at(&p, "GET half")], WAIT);
    repl.send("\x03");
    repl.wait_tail(&[&at(&p, "GET half"), &p], WAIT);
    repl.send("GET warm\r");
    repl.wait_tail(&[&at(&p, "GET warm"), "0", &p], WAIT);
    repl.send("\x04");
    assert!(repl.wait_exit(WAIT).success());
    assert_eq!(
        repl.history(),
        [
            "PUT warm 0",
            "PUT c 1",
            "GET e",
            "GET c",
            "PUT f 6",
            "GET warm",
            "GET g",
            "GET warm"
        ]
    );
}

#[test]
fn sigterm_during_a_command_leaves_the_terminal_as_it_was() {
    let server = Server::start("repl-sigterm", 27530);
    let (mut repl, p) = start("repl-sigterm", &server, None);
    server.pause();
    repl.send("PUT t 1\r");
    repl.wait_tail(&[&at(&p, "PUT t 1"), ""], WAIT);
    repl.wait_running(WAIT);
    // While the command runs, what is typed is not echoed (nor at the
    // prompt, where the line editor echoes)...
    assert!(!echoes(&repl), "terminal echoes during a command");
    repl.signal(Signal::SIGTERM);
    let status = repl.wait_exit(WAIT);
    server.resume();
    // ...and a SIGTERM ends the client as usual, its terminal restored.
    assert_eq!(
        std::os::unix::process::ExitStatusExt::into_raw(status) >> 8,
        143
    );
    assert!(echoes(&repl), "terminal left without echo");
    assert_eq!(repl.history(), ["PUT t 1"]);
}

#[test]
fn an_unreadable_history_file_is_reported_and_left_alone() {
    // Not UTF-8: the line editor cannot load it. No server is needed: the
    // client connects on its first command only.
    let damaged: &[u8] = b"#V2\nPUT a 1\n\xff\xfe broken\n";
    let mut repl = Repl::start("repl-damaged", &["127.0.0.1:27599"], Some(damaged));
    repl.wait_tail(&["127.0.0.1:27599>"], WAIT);
    let said = repl.screen().join("");
    assert!(
        said.starts_with("client: cannot read the history file ")
            && said.contains("this session's lines will not be saved"),
        "{said:?}"
    );
    repl.send("HELP get\r");
    repl.wait_tail(
        &[
            "127.0.0.1:27599> HELP get",
            "GET key: print the value of key, or (nil)",
            "127.0.0.1:27599>",
        ],
        WAIT,
    );
    repl.send("\x04");
    assert!(repl.wait_exit(WAIT).success());
    assert_eq!(repl.history_bytes(), damaged);
}
