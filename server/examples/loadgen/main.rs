//! Side-by-side closed-loop benchmark of paxoskv and etcd on local clusters
//! of real processes (durable: both fsync every write).
//!
//! ```text
//! cargo build --release -p server --bins --examples
//! target/release/examples/loadgen --replicas 3,5 --secs 10 --rounds 2
//! ```
//!
//! For each replica count it starts a paxoskv cluster (`server`, client
//! ports from `--base-port`) and an etcd cluster (`etcd` 3.4, client ports
//! from `--base-port + 100`) side by side in a temporary directory, waits for
//! both to elect a leader, and preloads every key in both. Then, for every
//! mix (`put`, `get`, `mixed` = 50/50) and every binding (`leader`: every
//! client talks to the leader; `all`: client i talks to replica i mod N), it
//! runs `--rounds` rounds, each driving first one system and then the other
//! (the order alternates between rounds) with the same load: `--clients`
//! concurrent sessions, each issuing one command at a time for `--secs`
//! seconds over `--keys` keys with `--value-size`-byte values. GETs are
//! linearizable in both systems (etcd's default Range).
//!
//! It prints each run, then a table of medians over the rounds: ops/s,
//! p50/p99/max latency, CPU seconds per 1000 ops (user + system of the
//! cluster's server processes, from /proc, over the run), the load tool's
//! own CPU seconds per 1000 ops (`/proc/self`), the share of the machine's
//! CPU left idle during the run (`/proc/stat`: near 0, the run was
//! CPU-bound) and the paxoskv/etcd ratios. The clients run on
//! `--load-threads` threads, each with a single-threaded runtime. The machine may be shared: compare the ratios of one
//! run, not figures across runs. Servers are SIGKILLed by PID at the end
//! (also on error).

mod cluster;
mod etcd;

/// mimalloc, as in the server: the load tool allocates and frees small
/// buffers per request (protobuf, h2 frames) like the servers do.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use client::{Client, ClientOptions};
use rand::Rng;

use cluster::{Cluster, System};
use etcd::EtcdClient;

#[derive(Parser, Debug)]
#[command(about = "side-by-side closed-loop load: paxoskv vs etcd on local clusters")]
struct Args {
    /// Replica counts, comma-separated.
    #[arg(long, default_value = "3")]
    replicas: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Seconds per run.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Rounds per point (each round runs every system once).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Mixes: put, get, mixed (50/50); comma-separated.
    #[arg(long, default_value = "put,get,mixed")]
    mix: String,
    /// Client bindings: leader, all (client i on replica i mod N).
    #[arg(long, default_value = "leader,all")]
    bind: String,
    /// Threads of the load tool, each running its share of the clients on a
    /// single-threaded runtime.
    #[arg(long, default_value_t = 2)]
    load_threads: usize,
    /// Systems: paxoskv, etcd; comma-separated.
    #[arg(long, default_value = "paxoskv,etcd")]
    systems: String,
    /// First port: paxoskv uses base.., etcd base+100.. (client ports;
    /// peer ports 50 higher).
    #[arg(long, default_value_t = 23500)]
    base_port: u16,
    /// The server binary (default: next to this example's directory).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// The etcd binary.
    #[arg(long, default_value = "etcd")]
    etcd_bin: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mix {
    Put,
    Get,
    Mixed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bind {
    Leader,
    All,
}

/// One client session of either system.
enum Session {
    Paxoskv(Client),
    Etcd(EtcdClient),
}

impl Session {
    async fn put(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        match self {
            Session::Paxoskv(c) => c.put(key, value).await.map(|_| ())?,
            Session::Etcd(c) => c.put(key, value).await?,
        }
        Ok(())
    }

    async fn get(&mut self, key: &str) -> anyhow::Result<()> {
        match self {
            Session::Paxoskv(c) => c.get(key).await.map(|_| ())?,
            Session::Etcd(c) => c.get(key).await.map(|_| ())?,
        }
        Ok(())
    }
}

fn session(system: System, addr: &str) -> anyhow::Result<Session> {
    Ok(match system {
        System::Paxoskv => Session::Paxoskv(Client::new(
            vec![addr.to_string()],
            ClientOptions::default(),
        )?),
        System::Etcd => Session::Etcd(EtcdClient::new(addr)?),
    })
}

/// The figures of one run.
#[derive(Clone, Copy, Debug, Default)]
struct Figures {
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    cpu_per_kop: f64,
    /// CPU seconds per 1000 ops of this load tool itself (`/proc/self`).
    load_cpu_per_kop: f64,
    /// Share of the machine's CPU time left idle during the run
    /// (`/proc/stat`, all processes): near 0 means CPU-bound.
    idle: f64,
    errors: u64,
}

/// Index of the leader among `cluster.addrs`, waiting up to 30 s.
async fn find_leader(cluster: &Cluster) -> anyhow::Result<usize> {
    let by = Instant::now() + Duration::from_secs(30);
    while Instant::now() < by {
        for (i, a) in cluster.addrs.iter().enumerate() {
            let leader = match cluster.system {
                System::Paxoskv => client::status(a, Duration::from_secs(1))
                    .await
                    .ok()
                    .filter(|st| !st.leader_addr.is_empty())
                    .map(|st| st.leader_addr == *a),
                System::Etcd => EtcdClient::new(a)?.is_leader().await.ok(),
            };
            if leader == Some(true) {
                return Ok(i);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{} elected no leader within 30 s", cluster.system.name())
}

/// Waits until the cluster accepts writes, then writes every key once.
async fn preload(cluster: &Cluster, leader: usize, args: &Args) -> anyhow::Result<()> {
    let mut s = session(cluster.system, &cluster.addrs[leader])?;
    let by = Instant::now() + Duration::from_secs(30);
    while let Err(e) = s.put("warmup", "1").await {
        if Instant::now() > by {
            bail!("{} does not accept writes: {e:#}", cluster.system.name());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let value = "v".repeat(args.value_size);
    for k in 0..args.keys {
        s.put(&format!("key{k}"), &value).await?;
    }
    Ok(())
}

async fn run(
    args: &Args,
    cluster: &Cluster,
    leader: usize,
    mix: Mix,
    bind: Bind,
) -> anyhow::Result<Figures> {
    let n = cluster.addrs.len();
    let keys: Arc<Vec<String>> = Arc::new((0..args.keys).map(|k| format!("key{k}")).collect());
    let groups = args.load_threads.clamp(1, args.clients.max(1));
    let cpu_before = cluster.cpu_seconds()?;
    let load_before = cluster::process_cpu_seconds(std::process::id())?;
    let machine_before = cluster::machine_ticks()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.secs);
    let mut threads = Vec::new();
    for g in 0..groups {
        // Client i belongs to group i mod groups.
        let targets: Vec<String> = (g..args.clients)
            .step_by(groups)
            .map(|i| match bind {
                Bind::Leader => cluster.addrs[leader].clone(),
                Bind::All => cluster.addrs[i % n].clone(),
            })
            .collect();
        let (system, keys, size) = (cluster.system, keys.clone(), args.value_size);
        threads.push(std::thread::spawn(move || {
            group(system, targets, keys, size, mix, deadline)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in threads {
        let (l, e) = t
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        lat.extend(l);
        errors += e;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cluster.cpu_seconds()? - cpu_before;
    let load_cpu = cluster::process_cpu_seconds(std::process::id())? - load_before;
    let machine = cluster::machine_ticks()?;
    let (idle, total) = (
        machine.0 - machine_before.0,
        (machine.1 - machine_before.1).max(1),
    );
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    Ok(Figures {
        ops_per_sec: lat.len() as f64 / secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: lat.last().map_or(0.0, |us| *us as f64 / 1000.0),
        cpu_per_kop: per_kop(cpu, lat.len()),
        load_cpu_per_kop: per_kop(load_cpu, lat.len()),
        idle: idle as f64 / total as f64,
        errors,
    })
}

/// One group of clients on a runtime of its own on this thread (a
/// current-thread runtime: no hand-offs between worker threads, which made
/// the load tool a large share of the machine's CPU): one session per
/// address in `targets`, each issuing one command at a time until
/// `deadline`. Returns the latencies (µs) of the answered commands and the
/// number of errors.
fn group(
    system: System,
    targets: Vec<String>,
    keys: Arc<Vec<String>>,
    value_size: usize,
    mix: Mix,
    deadline: Instant,
) -> anyhow::Result<(Vec<u64>, u64)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // A local set: the tasks stay on this thread (and may hold its RNG).
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let mut tasks = Vec::new();
        for addr in &targets {
            // Made inside this runtime: a channel's connection task runs
            // where the channel was made.
            let mut s = session(system, addr)?;
            let keys = keys.clone();
            tasks.push(tokio::task::spawn_local(async move {
                let mut lat = Vec::with_capacity(1 << 16);
                let mut errors = 0u64;
                let value: String = "v".repeat(value_size);
                let mut rng = rand::rng();
                while Instant::now() < deadline {
                    let put = match mix {
                        Mix::Put => true,
                        Mix::Get => false,
                        Mix::Mixed => rng.random_bool(0.5),
                    };
                    let key = &keys[rng.random_range(0..keys.len())];
                    let t = Instant::now();
                    let r = if put {
                        s.put(key, &value).await
                    } else {
                        s.get(key).await
                    };
                    match r {
                        Ok(()) => lat.push(t.elapsed().as_micros() as u64),
                        Err(_) => errors += 1,
                    }
                }
                (lat, errors)
            }));
        }
        let mut lat = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (l, e) = t.await?;
            lat.extend(l);
            errors += e;
        }
        Ok((lat, errors))
    })
}

/// `cpu` seconds per 1000 of `ops` operations.
fn per_kop(cpu: f64, ops: usize) -> f64 {
    if ops == 0 {
        0.0
    } else {
        cpu / ops as f64 * 1000.0
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

fn medians(runs: &[Figures]) -> Figures {
    let m = |f: fn(&Figures) -> f64| median(runs.iter().map(f).collect());
    Figures {
        ops_per_sec: m(|f| f.ops_per_sec),
        p50_ms: m(|f| f.p50_ms),
        p99_ms: m(|f| f.p99_ms),
        max_ms: m(|f| f.max_ms),
        cpu_per_kop: m(|f| f.cpu_per_kop),
        load_cpu_per_kop: m(|f| f.load_cpu_per_kop),
        idle: m(|f| f.idle),
        errors: runs.iter().map(|f| f.errors).sum(),
    }
}

fn list<T>(s: &str, parse: impl Fn(&str) -> Option<T>, what: &str) -> anyhow::Result<Vec<T>> {
    s.split(',')
        .map(|x| parse(x.trim()).with_context(|| format!("unknown {what} `{x}`")))
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let counts = list(&args.replicas, |s| s.parse::<usize>().ok(), "replica count")?;
    let mixes = list(
        &args.mix,
        |s| match s {
            "put" => Some(Mix::Put),
            "get" => Some(Mix::Get),
            "mixed" => Some(Mix::Mixed),
            _ => None,
        },
        "mix (put, get, mixed)",
    )?;
    let binds = list(
        &args.bind,
        |s| match s {
            "leader" => Some(Bind::Leader),
            "all" => Some(Bind::All),
            _ => None,
        },
        "binding (leader, all)",
    )?;
    let systems = list(
        &args.systems,
        |s| match s {
            "paxoskv" => Some(System::Paxoskv),
            "etcd" => Some(System::Etcd),
            _ => None,
        },
        "system (paxoskv, etcd)",
    )?;
    let server_bin = match &args.server_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .and_then(|p| p.parent())
            .context("cannot locate the target directory")?
            .join("server"),
    };
    if systems.contains(&System::Paxoskv) && !server_bin.exists() {
        bail!(
            "server binary {} not found (build it first)",
            server_bin.display()
        );
    }
    if systems.contains(&System::Etcd) {
        let ok = std::process::Command::new(&args.etcd_bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            bail!(
                "etcd binary `{}` does not run: install etcd 3.4 (Debian: apt-get install etcd-server) or pass --etcd-bin",
                args.etcd_bin.display()
            );
        }
    }
    let tmp = std::env::temp_dir().join(format!("paxoskv-loadgen-{}", std::process::id()));
    let mut table = Vec::new();
    for &n in &counts {
        let mut clusters = Vec::new();
        for &sys in &systems {
            let root = tmp.join(format!("{}-{n}", sys.name()));
            let cl = match sys {
                System::Paxoskv => Cluster::paxoskv(&server_bin, n, args.base_port, root)?,
                System::Etcd => Cluster::etcd(&args.etcd_bin, n, args.base_port + 100, root)?,
            };
            clusters.push(cl);
        }
        let mut leaders = Vec::new();
        for cl in &clusters {
            let leader = find_leader(cl).await?;
            preload(cl, leader, &args).await?;
            leaders.push(leader);
        }
        for &mix in &mixes {
            for &bind in &binds {
                let mut runs = vec![Vec::new(); clusters.len()];
                for round in 0..args.rounds {
                    let mut order: Vec<usize> = (0..clusters.len()).collect();
                    if round % 2 == 1 {
                        order.reverse();
                    }
                    for c in order {
                        // A leader may have changed since the last run.
                        let leader = find_leader(&clusters[c]).await?;
                        leaders[c] = leader;
                        let f = run(&args, &clusters[c], leader, mix, bind).await?;
                        println!(
                            "replicas={n} mix={mix:?} bind={bind:?} round={round} {}: {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, {:.3} cpu-s/1000 ops, load tool {:.3} cpu-s/1000 ops, {:.0}% idle, {} errors",
                            clusters[c].system.name(),
                            f.ops_per_sec, f.p50_ms, f.p99_ms, f.max_ms, f.cpu_per_kop,
                            f.load_cpu_per_kop, f.idle * 100.0, f.errors
                        );
                        runs[c].push(f);
                    }
                }
                let med: Vec<Figures> = runs.iter().map(|r| medians(r)).collect();
                table.push((n, mix, bind, med));
            }
        }
        drop(clusters);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    print_table(&systems, &table);
    Ok(())
}

fn print_table(systems: &[System], table: &[(usize, Mix, Bind, Vec<Figures>)]) {
    println!();
    println!("| replicas | op | clients on | system | ops/s | p50 ms | p99 ms | max ms | CPU s / 1000 ops | load tool CPU s / 1000 ops | idle | errors |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (n, mix, bind, med) in table {
        let op = match mix {
            Mix::Put => "put",
            Mix::Get => "get",
            Mix::Mixed => "50/50",
        };
        let on = match bind {
            Bind::Leader => "leader",
            Bind::All => "i mod N",
        };
        for (sys, f) in systems.iter().zip(med) {
            println!(
                "| {n} | {op} | {on} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {:.3} | {:.3} | {:.0}% | {} |",
                sys.name(),
                f.ops_per_sec,
                f.p50_ms,
                f.p99_ms,
                f.max_ms,
                f.cpu_per_kop,
                f.load_cpu_per_kop,
                f.idle * 100.0,
                f.errors
            );
        }
        if let (Some(p), Some(e)) = (
            systems.iter().position(|s| *s == System::Paxoskv),
            systems.iter().position(|s| *s == System::Etcd),
        ) {
            let (p, e) = (&med[p], &med[e]);
            let r = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
            println!(
                "| {n} | {op} | {on} | **paxoskv/etcd** | **{:.2}×** | {:.2}× | **{:.2}×** | {:.2}× | {:.2}× | |",
                r(p.ops_per_sec, e.ops_per_sec),
                r(p.p50_ms, e.p50_ms),
                r(p.p99_ms, e.p99_ms),
                r(p.max_ms, e.max_ms),
                r(p.cpu_per_kop, e.cpu_per_kop)
            );
        }
    }
}
