//! `server`: one paxoskv replica.

fn main() {
    eprintln!("server: not built yet");
    std::process::exit(2);
}
