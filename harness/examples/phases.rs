//! Times the phases of checking one history file (parse, pair, split, search).
//! `cargo run --release -p harness --example phases -- FILE`

use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use harness::checker::{kv, linearizable, Budget};
use harness::history::History;

fn main() {
    let path = std::env::args().nth(1).expect("usage: phases FILE");
    let t = Instant::now();
    let history = History::from_file(&path).expect("read");
    eprintln!("parse   {:?}", t.elapsed());
    let t = Instant::now();
    let ops = history.client_ops().expect("pair");
    eprintln!("pair    {:?}", t.elapsed());
    let t = Instant::now();
    let ops2 = history.client_ops().expect("pair");
    eprintln!("pair again {:?}", t.elapsed());
    drop(ops2);
    let t = Instant::now();
    let parts = kv::partition(&ops).expect("split");
    eprintln!("split   {:?} ({} keys)", t.elapsed(), parts.len());
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
