//! `harness`: run workloads, check histories, start local clusters.
//! All logic lives in the library; see `harness::cli`.

/// mimalloc: parsing and checking a history allocates millions of small
/// values; glibc's malloc spends more time consolidating than we do checking.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(harness::cli::main_with_args(std::env::args_os()));
}
