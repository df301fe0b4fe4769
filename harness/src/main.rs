//! `harness`: run workloads, check histories, start local clusters.
//! All logic lives in the library; see `harness::cli`.

fn main() {
    std::process::exit(harness::cli::main_with_args(std::env::args_os()));
}
