//! `client`: REPL and one-shot commands against a paxoskv cluster.

fn main() {
    eprintln!("client: not built yet");
    std::process::exit(2);
}
