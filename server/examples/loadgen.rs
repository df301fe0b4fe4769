//! Closed-loop load benchmark against a local cluster of real `server`
//! processes (durable: every write is fsynced).
//!
//! ```text
//! cargo build --release -p server --bins --examples
//! target/release/examples/loadgen --replicas 3 --clients 64 --mix put --secs 10
//! ```
//!
//! Starts `--replicas` servers on 127.0.0.1 (client ports from `--base-port`,
//! Paxos ports 50 higher) in a temporary directory, preloads every key, runs
//! `--clients` concurrent clients (each a `client::Client` session issuing one
//! command at a time) for `--secs` seconds over `--keys` keys with
//! `--value-size`-byte values, and prints throughput and latency percentiles
//! for each mix. The servers are SIGKILLed by PID at the end (also on panic).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use client::{Client, ClientOptions};
use rand::Rng;

#[derive(Parser, Debug)]
#[command(about = "closed-loop load against a local paxoskv cluster")]
struct Args {
    /// Number of replicas.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Seconds per mix.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Mixes to run: put, get, mixed (50/50); comma-separated.
    #[arg(long, default_value = "put,get,mixed")]
    mix: String,
    /// First client port.
    #[arg(long, default_value_t = 23500)]
    base_port: u16,
    /// The server binary (default: next to this example's directory).
    #[arg(long)]
    server_bin: Option<PathBuf>,
}

/// Servers killed by PID on drop.
struct Servers(Vec<Child>, PathBuf);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn start(args: &Args, bin: &PathBuf) -> anyhow::Result<Servers> {
    let root = std::env::temp_dir().join(format!("paxoskv-loadgen-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let mut servers = Servers(Vec::new(), root.clone());
    let paxos = |i: usize| format!("127.0.0.1:{}", args.base_port + 50 + i as u16);
    for i in 0..args.replicas {
        let mut cmd = Command::new(bin);
        cmd.arg("--my-addr")
            .arg(format!("127.0.0.1:{}", args.base_port + i as u16))
            .arg("--my-paxos")
            .arg(paxos(i))
            .arg("--data-dir")
            .arg(root.join(format!("data-{i}")));
        for r in 0..args.replicas {
            cmd.arg("--replica").arg(paxos(r));
        }
        cmd.env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join(format!("server-{i}.log")))?);
        servers.0.push(
            cmd.spawn()
                .with_context(|| format!("spawn {}", bin.display()))?,
        );
    }
    Ok(servers)
}

#[derive(Clone, Copy, Debug)]
enum Mix {
    Put,
    Get,
    Mixed,
}

async fn run_mix(args: &Args, addrs: &[String], mix: Mix) -> anyhow::Result<()> {
    let slots_before = commit_index(addrs).await;
    let deadline = Instant::now() + Duration::from_secs(args.secs);
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let mut cl = Client::new(addrs.to_vec(), ClientOptions::default())?;
        let (keys, size) = (args.keys, args.value_size);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let value: String = "v".repeat(size);
            while Instant::now() < deadline {
                let (k, put) = {
                    let mut rng = rand::rng();
                    let k = rng.random_range(0..keys);
                    let put = match mix {
                        Mix::Put => true,
                        Mix::Get => false,
                        Mix::Mixed => rng.random_bool(0.5),
                    };
                    (k, put)
                };
                let key = format!("key{k}");
                let t = Instant::now();
                let r = if put {
                    cl.put(&key, &value).await
                } else {
                    cl.get(&key).await
                };
                match r {
                    Ok(_) => lat.push(t.elapsed().as_micros() as u64),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let started = Instant::now();
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        errors += e;
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    let slots = commit_index(addrs).await.saturating_sub(slots_before);
    println!(
        "replicas={} clients={} mix={:?}: {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} ops, {} errors, {} slots",
        args.replicas,
        args.clients,
        mix,
        lat.len() as f64 / secs,
        pct(0.50),
        pct(0.99),
        lat.last().map_or(0.0, |us| *us as f64 / 1000.0),
        lat.len(),
        errors,
        slots
    );
    Ok(())
}

/// Highest commit index any replica reports (slots used so far).
async fn commit_index(addrs: &[String]) -> u64 {
    let mut best = 0;
    for a in addrs {
        if let Ok(st) = client::status(a, Duration::from_secs(1)).await {
            best = best.max(st.commit_index);
        }
    }
    best
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = match &args.server_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .and_then(|p| p.parent())
            .context("cannot locate the target directory")?
            .join("server"),
    };
    if !bin.exists() {
        bail!("server binary {} not found (build it first)", bin.display());
    }
    let _servers = start(&args, &bin)?;
    let addrs: Vec<String> = (0..args.replicas)
        .map(|i| format!("127.0.0.1:{}", args.base_port + i as u16))
        .collect();
    // Wait until the cluster serves, then preload every key.
    let mut cl = Client::new(addrs.clone(), ClientOptions::default())?;
    let ready_by = Instant::now() + Duration::from_secs(20);
    while cl.put("warmup", "1").await.is_err() {
        if Instant::now() > ready_by {
            bail!("cluster did not become ready");
        }
    }
    let value = "v".repeat(args.value_size);
    for k in 0..args.keys {
        cl.put(&format!("key{k}"), &value).await?;
    }
    for m in args.mix.split(',') {
        let mix = match m.trim() {
            "put" => Mix::Put,
            "get" => Mix::Get,
            "mixed" => Mix::Mixed,
            other => bail!("unknown mix `{other}` (put, get, mixed)"),
        };
        run_mix(&args, &addrs, mix).await?;
    }
    Ok(())
}
