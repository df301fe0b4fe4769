//! `harness`: run workloads, check histories, start local clusters.

fn main() {
    eprintln!("harness: not built yet");
    std::process::exit(2);
}
