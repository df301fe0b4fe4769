//! The link proxies against real sockets on 127.0.0.1: bytes flow; a cut
//! blackholes or resets as configured; a heal lets connections through
//! again; delay and bandwidth add at least what they promise (lower bounds
//! only: the machine is noisy); a one-way partition cuts one direction only;
//! nothing keeps listening once the network is dropped.
//!
//! Ports 25900-25999 (this helper's range).

use std::net::SocketAddr;
use std::time::Duration;

use harness::net::{Cut, Grudge, LinkProxy, Network, Shape};
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

    let mut from_target = TcpStream::connect(net.link(0, 1).unwrap().addr())
        .await
        .unwrap();
    let mut to_target = TcpStream::connect(net.link(1, 0).unwrap().addr())
        .await
        .unwrap();
    assert_eq!(
        round_trip(&mut from_target, b"x", SHORT).await,
        Err("timeout".into())
    );
    assert_eq!(round_trip(&mut to_target, b"y", LONG).await.unwrap(), b"y");

    net.heal_partition();
    let mut again = TcpStream::connect(net.link(0, 1).unwrap().addr())
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
