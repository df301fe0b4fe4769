//! Times the phases of checking one history file (parse, pair, split, search).
//! `cargo run --release -p harness --example phases -- FILE`

use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use harness::checker::{kv, linearizable, Budget};
use harness::history::History;

/// CPU time of this process so far (user + system), from /proc (Linux).
fn cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident memory of this process so far, in MB (Linux).
fn peak_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: phases FILE");
    let t = Instant::now();
    let history = History::from_file(&path).expect("read");
    eprintln!("parse   {:?}, peak {:.0} MB", t.elapsed(), peak_mb());
    let t = Instant::now();
    let ops = history.client_ops().expect("pair");
    eprintln!("pair    {:?}, peak {:.0} MB", t.elapsed(), peak_mb());
    let t = Instant::now();
    let ops2 = history.client_ops().expect("pair");
    eprintln!("pair again {:?}", t.elapsed());
    drop(ops2);
    let t = Instant::now();
    let c = cpu();
    let parts = kv::partition(&ops).expect("split");
    eprintln!(
        "split   {:?} ({} keys) cpu {:.2}s, peak {:.0} MB",
        t.elapsed(),
        parts.len(),
        cpu() - c,
        peak_mb()
    );
    if std::env::var_os("NO_SEARCH").is_some() {
        return;
    }
    if std::env::var_os("SPLIT_AGAIN").is_some() {
        for _ in 0..5 {
            drop(kv::partition(&ops).expect("split"));
        }
    }
    let t = Instant::now();
    let mut slowest = (std::time::Duration::ZERO, String::new());
    for mut part in parts {
        let t1 = Instant::now();
        let _ = linearizable::search(&mut part.model, &part.ops, &Budget::default());
        let e = t1.elapsed();
        if e > slowest.0 {
            slowest = (e, format!("{:?}", part.key));
        }
    }
    eprintln!(
        "search  {:?} sequential (slowest key {} {:?})",
        t.elapsed(),
        slowest.1,
        slowest.0
    );
}
