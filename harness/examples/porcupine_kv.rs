//! Converts one of Porcupine's kv test histories (`test_data/kv/*.txt`, one
//! `{:process P, :type T, :f F, :key K, :value V}` a line) to this harness's
//! kv EDN on stdout: the key folds into the value (`:value [K V]`), and a
//! `get` that returned `""` (Porcupine's missing key) reads `nil`.
//!
//! `cargo run -p harness --example porcupine_kv -- c50-bad.txt > c50-bad.edn`

use std::io::Write;

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: porcupine_kv FILE"))?;
    let text = std::fs::read_to_string(&path)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = || anyhow::anyhow!("{path}:{}: not a Porcupine kv op: {line}", n + 1);
        let key_at = line.find(", :key ").ok_or_else(bad)?;
        let value_at = line.find(", :value ").ok_or_else(bad)?;
        let body = line.strip_suffix('}').ok_or_else(bad)?;
        if value_at < key_at || value_at + 9 > body.len() {
            return Err(bad());
        }
        let key = &line[key_at + 7..value_at];
        let mut value = &body[value_at + 9..];
        if value == "\"\"" && line.contains(":f :get") {
            value = "nil";
        }
        writeln!(out, "{}, :value [{key} {value}]}}", &line[..key_at])?;
    }
    Ok(())
}
