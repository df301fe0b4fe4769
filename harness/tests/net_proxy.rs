//! The link proxies against real sockets on 127.0.0.1: bytes flow; a cut
//! blackholes or resets as configured; a heal lets connections through
//! again; delay and bandwidth add at least what they promise (lower bounds
//! only: the machine is noisy); a one-way partition cuts one direction only;
//! nothing keeps listening once the network is dropped. The inbound
//! proxies (one per destination, etcd's layout) tell real dialling
//! processes apart and cut each direction of a connection by its own link.
//!
//! Ports 25900-25999 and 28900-28919.

use std::net::SocketAddr;
use std::time::Duration;

use harness::net::{Cut, Grudge, LinkProxy, Network, ProcDialers, Shape};
use rand::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// An echo server on `port`; it runs until the test's runtime ends.
async fn echo(port: u16) {
    let l = TcpListener::bind(local(port))
        .await
        .expect("echo port free");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
}

/// Writes `msg` and reads back as many bytes, within `within`.
async fn round_trip(s: &mut TcpStream, msg: &[u8], within: Duration) -> Result<Vec<u8>, String> {
    s.write_all(msg).await.map_err(|e| format!("write: {e}"))?;
    let mut got = vec![0u8; msg.len()];
    match timeout(within, s.read_exact(&mut got)).await {
        Ok(Ok(_)) => Ok(got),
        Ok(Err(e)) => Err(format!("read: {e}")),
        Err(_) => Err("timeout".into()),
    }
}

/// Whether the connection has been closed or reset (reads EOF or an error)
/// within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 1];
    let deadline = Instant::now() + within;
    loop {
        match timeout(deadline - Instant::now(), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(5);

#[tokio::test]
async fn bytes_flow_through_a_passing_link() {
    echo(25900).await;
    let p = LinkProxy::bind("n0->n1", local(25901), local(25900)).unwrap();
    let mut s = TcpStream::connect(p.addr()).await.unwrap();
    for i in 0..20 {
        let msg = format!("hello {i}");
        assert_eq!(
            round_trip(&mut s, msg.as_bytes(), LONG).await.unwrap(),
            msg.as_bytes()
        );
    }
    assert_eq!(p.open_connections(), 1);
}

#[tokio::test]
async fn a_blackhole_swallows_bytes_and_the_heal_reconnects() {
    echo(25902).await;
    let p = LinkProxy::bind("n0->n1", local(25903), local(25902)).unwrap();
    let mut old = TcpStream::connect(p.addr()).await.unwrap();
    round_trip(&mut old, b"before", LONG).await.unwrap();

    p.set_cut(Some(Cut::Blackhole));
    // The open connection hangs: no answer, but not closed either.
    assert_eq!(
        round_trip(&mut old, b"lost", SHORT).await,
        Err("timeout".into())
    );
    // A new connection is accepted and then hears nothing.
    let mut during = TcpStream::connect(p.addr()).await.unwrap();
    assert_eq!(
        round_trip(&mut during, b"lost too", SHORT).await,
        Err("timeout".into())
    );

    p.set_cut(None);
    // Both lost bytes: the heal resets them, so their endpoints reconnect.
    assert!(
        closed_within(&mut old, LONG).await,
        "the old connection must be reset at heal"
    );
    assert!(closed_within(&mut during, LONG).await);
    let mut new = TcpStream::connect(p.addr()).await.unwrap();
    assert_eq!(
        round_trip(&mut new, b"after", LONG).await.unwrap(),
        b"after"
    );
}

#[tokio::test]
async fn an_idle_connection_survives_a_blackhole() {
    echo(25904).await;
    let p = LinkProxy::bind("n0->n1", local(25905), local(25904)).unwrap();
    let mut s = TcpStream::connect(p.addr()).await.unwrap();
    round_trip(&mut s, b"x", LONG).await.unwrap();
    p.set_cut(Some(Cut::Blackhole));
    tokio::time::sleep(Duration::from_millis(100)).await;
    p.set_cut(None);
    // Nothing was lost on it, so it carries on.
    assert_eq!(
        round_trip(&mut s, b"still here", LONG).await.unwrap(),
        b"still here"
    );
}

#[tokio::test]
async fn a_reset_cut_resets_open_and_new_connections() {
    echo(25906).await;
    let p = LinkProxy::bind("n0->n1", local(25907), local(25906)).unwrap();
    let mut old = TcpStream::connect(p.addr()).await.unwrap();
    round_trip(&mut old, b"before", LONG).await.unwrap();

    p.set_cut(Some(Cut::Reset));
    assert!(closed_within(&mut old, LONG).await, "open connection reset");
    // A new one is accepted by the kernel and reset at once.
    if let Ok(mut s) = TcpStream::connect(p.addr()).await {
        assert!(closed_within(&mut s, LONG).await, "new connection reset");
    }
    p.set_cut(None);
    let mut new = TcpStream::connect(p.addr()).await.unwrap();
    assert_eq!(
        round_trip(&mut new, b"after", LONG).await.unwrap(),
        b"after"
    );
}

#[tokio::test]
async fn delay_adds_at_least_the_latency_each_way() {
    echo(25908).await;
    let p = LinkProxy::bind("n0->n1", local(25909), local(25908)).unwrap();
    let latency = Duration::from_millis(80);
    p.update(|r| {
        r.latency = latency;
        r.jitter = Duration::from_millis(20);
    });
    let mut s = TcpStream::connect(p.addr()).await.unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        round_trip(&mut s, b"ping", LONG).await.unwrap();
        // Delayed on the way there and on the way back.
        assert!(t.elapsed() >= 2 * latency, "round trip {:?}", t.elapsed());
    }
}

#[tokio::test]
async fn slow_paces_to_the_bandwidth() {
    echo(25910).await;
    let p = LinkProxy::bind("n0->n1", local(25911), local(25910)).unwrap();
    p.update(|r| r.bandwidth = Some(40_000));
    let mut s = TcpStream::connect(p.addr()).await.unwrap();
    let msg = vec![7u8; 20_000];
    let t = Instant::now();
    assert_eq!(round_trip(&mut s, &msg, LONG).await.unwrap(), msg);
    // 20 kB at 40 kB/s takes 0.5 s (the two directions overlap).
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn one_way_cuts_what_the_target_sends_only() {
    // Two "replicas": echo servers standing in for their Paxos ports.
    echo(25920).await;
    echo(25921).await;
    let up = vec!["127.0.0.1:25920".to_string(), "127.0.0.1:25921".to_string()];
    // Links n0->n1 on 25930 + 1, n1->n0 on 25930 + 2.
    let net = Network::start("127.0.0.1", 25930, &up).unwrap();
    assert_eq!(net.peer_dials(0), vec!["1=127.0.0.1:25931".to_string()]);
    assert_eq!(net.peer_dials(1), vec!["0=127.0.0.1:25932".to_string()]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let g: Grudge = Shape::OneWay.grudge(2, &[0], &mut rng).unwrap();
    net.partition(&g, Cut::Blackhole);

    let mut from_target = TcpStream::connect(net.dial_addr(0, 1).unwrap())
        .await
        .unwrap();
    let mut to_target = TcpStream::connect(net.dial_addr(1, 0).unwrap())
        .await
        .unwrap();
    assert_eq!(
        round_trip(&mut from_target, b"x", SHORT).await,
        Err("timeout".into())
    );
    assert_eq!(round_trip(&mut to_target, b"y", LONG).await.unwrap(), b"y");

    net.heal_partition();
    let mut again = TcpStream::connect(net.dial_addr(0, 1).unwrap())
        .await
        .unwrap();
    assert_eq!(round_trip(&mut again, b"z", LONG).await.unwrap(), b"z");
}

#[tokio::test]
async fn the_network_binds_every_port_and_frees_them_when_dropped() {
    let up: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", 25940 + i)).collect();
    // A port of the range already taken: the error names it.
    let squatter = std::net::TcpListener::bind(local(25950 + 5)).unwrap();
    let err = Network::start("127.0.0.1", 25950, &up)
        .unwrap_err()
        .to_string();
    assert!(err.contains("25955") && err.contains("n1->n2"), "{err}");
    drop(squatter);

    let net = Network::start("127.0.0.1", 25950, &up).unwrap();
    assert_eq!(net.links_of(None).len(), 6);
    assert_eq!(net.links_of(Some(&[0])).len(), 4);
    drop(net);
    tokio::task::yield_now().await;
    // Every listener is gone: each port can be bound again.
    for from in 0..3 {
        for to in (0..3).filter(|&t| t != from) {
            let port = 25950 + (from * 3 + to) as u16;
            let mut ok = false;
            for _ in 0..50 {
                if std::net::TcpListener::bind(local(port)).is_ok() {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(ok, "port {port} still bound after the network was dropped");
        }
    }
}

/// An echo server on `port` that also reports every line it hears.
async fn recording_echo(port: u16) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let l = TcpListener::bind(local(port))
        .await
        .expect("echo port free");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let _ = tx.send(line.clone());
                    if w.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    rx
}

/// A separate process (bash, its `$0` being `marker`) that dials `port`,
/// sends `msg` and waits a second for the echo: what it heard, or
/// "timeout" / "closed".
async fn dial_from_process(marker: &str, port: u16, msg: &str) -> String {
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port} || {{ echo closed; exit; }}; \
         echo {msg} >&3; \
         if read -t 1 line <&3; then echo \"$line\"; \
         elif [ $? -gt 128 ]; then echo timeout; else echo closed; fi"
    );
    let out = tokio::process::Command::new("bash")
        .args(["-c", &script, marker])
        .kill_on_drop(true)
        .output();
    let out = timeout(LONG, out)
        .await
        .expect("the dialler finishes")
        .expect("bash runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn inbound_proxies_cut_each_direction_by_the_dialling_process() {
    // Node 2 is a recording echo server; nodes 0 and 1 are processes that
    // dial it through its inbound proxy (28910 + 2).
    let mut heard = recording_echo(28902).await;
    let up: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", 28900 + i)).collect();
    let markers: Vec<String> = (0..3)
        .map(|i| format!("net-proxy-test-n{i}-{}", std::process::id()))
        .collect();
    let net =
        Network::start_inbound("127.0.0.1", 28910, &up, ProcDialers::new(markers.clone())).unwrap();
    let to_n2 = net.inbound_addr(2).unwrap().port();
    assert_eq!(to_n2, 28912);
    assert_eq!(
        net.dial_addr(0, 2),
        net.dial_addr(1, 2),
        "one address per destination"
    );

    // Everything passes.
    assert_eq!(dial_from_process(&markers[0], to_n2, "a").await, "a");
    assert_eq!(heard.recv().await.unwrap(), "a");

    // n2 -> n0 cut (n0 does not hear n2): what n0 sends arrives, the echo
    // does not come back; n1 is not affected.
    let mut g = Grudge::new(3);
    g.cut(2, 0);
    net.partition(&g, Cut::Blackhole);
    assert_eq!(dial_from_process(&markers[0], to_n2, "b").await, "timeout");
    assert_eq!(heard.recv().await.unwrap(), "b", "n0 -> n2 still passes");
    assert_eq!(dial_from_process(&markers[1], to_n2, "c").await, "c");
    assert_eq!(heard.recv().await.unwrap(), "c");

    // n0 -> n2 cut: nothing n0 sends arrives.
    let mut g = Grudge::new(3);
    g.cut(0, 2);
    net.partition(&g, Cut::Blackhole);
    assert_eq!(dial_from_process(&markers[0], to_n2, "d").await, "timeout");
    assert_eq!(dial_from_process(&markers[1], to_n2, "e").await, "e");
    assert_eq!(heard.recv().await.unwrap(), "e", "n0's d never arrived");

    // A reset cut of either direction resets n0's connections.
    let mut g = Grudge::new(3);
    g.cut(2, 0);
    net.partition(&g, Cut::Reset);
    assert_eq!(dial_from_process(&markers[0], to_n2, "f").await, "closed");
    net.heal_partition();
    assert_eq!(dial_from_process(&markers[0], to_n2, "g").await, "g");
    assert_eq!(heard.recv().await.unwrap(), "g");

    // A dialler that is not a node (this test process) is reset, counted.
    assert_eq!(net.strangers(), 0);
    let mut s = TcpStream::connect(local(to_n2)).await.unwrap();
    assert!(closed_within(&mut s, LONG).await);
    assert_eq!(net.strangers(), 1);
    assert!(heard.try_recv().is_err(), "nothing else reached n2");
}
