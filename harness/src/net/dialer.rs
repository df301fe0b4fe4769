//! Which node dialled a loopback TCP connection, found in `/proc` (Linux).
//!
//! An inbound proxy ([`super::inbound`]) accepts the connections of every
//! node to one destination, and the address they come from does not say who
//! dialled: the kernel gives a connection to any `127.x.y.z` the source
//! address 127.0.0.1 (`ip route get 127.0.0.2` says `src 127.0.0.1`) and
//! etcd does not bind the dialling side of its peer connections, so every
//! member dials from 127.0.0.1 and an ephemeral port. But the client end of
//! an accepted connection is a socket of the dialling process:
//! `/proc/net/tcp` maps the pair (its address, the proxy's address) to the
//! socket's inode, and the process whose `/proc/<pid>/fd` holds
//! `socket:[<inode>]` dialled. Nodes are recognised by one argument of their
//! command line (a marker unique to the run: etcd's `--data-dir=...`), so a
//! restarted node (a new pid) is found again.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Mutex;

/// Finds the node that dialled a connection.
#[derive(Debug)]
pub struct ProcDialers {
    /// `markers[i]`: an argument only node `i`'s command line has.
    markers: Vec<String>,
    /// The pid last seen for each node.
    pids: Mutex<Vec<Option<u32>>>,
}

impl ProcDialers {
    pub fn new(markers: Vec<String>) -> ProcDialers {
        let n = markers.len();
        ProcDialers {
            markers,
            pids: Mutex::new(vec![None; n]),
        }
    }

    /// Checks that this machine's `/proc` can answer (Linux, and the
    /// harness may read its own processes' descriptors); the reason if not.
    pub fn check_available() -> Result<(), String> {
        std::fs::read_to_string("/proc/net/tcp")
            .map_err(|e| format!("cannot read /proc/net/tcp: {e}"))?;
        std::fs::read_dir("/proc/self/fd")
            .map_err(|e| format!("cannot read /proc/self/fd: {e}"))?;
        Ok(())
    }

    /// The node whose process owns the client end of the connection from
    /// `peer` to `local` (as the accepting side sees them), if any. Reads
    /// `/proc`: call it off the async threads.
    pub fn node_of(&self, peer: SocketAddr, local: SocketAddr) -> Option<usize> {
        let inode = socket_inode(peer, local)?;
        let link = format!("socket:[{inode}]");
        let mut pids = self.pids.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(node) = owner(&pids, &link) {
            return Some(node);
        }
        // A node not seen yet, or restarted: look for the markers again.
        *pids = find_pids(&self.markers);
        owner(&pids, &link)
    }
}

/// The node among `pids` whose process holds the file `link` names.
fn owner(pids: &[Option<u32>], link: &str) -> Option<usize> {
    pids.iter()
        .position(|pid| pid.is_some_and(|pid| holds(pid, link)))
}

/// Whether process `pid` has a descriptor on `link` (`socket:[N]`).
fn holds(pid: u32, link: &str) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == Path::new(link)))
}

/// The pid of the (live) process of each marker.
fn find_pids(markers: &[String]) -> Vec<Option<u32>> {
    let mut pids = vec![None; markers.len()];
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for e in procs.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        for arg in cmdline.split(|&b| b == 0) {
            if let Some(i) = markers.iter().position(|m| m.as_bytes() == arg) {
                pids[i] = Some(pid);
            }
        }
    }
    pids
}

/// The inode of the socket whose local address is `from` and remote
/// address `to`, from `/proc/net/tcp` (and `tcp6`, for IPv4-mapped
/// sockets).
fn socket_inode(from: SocketAddr, to: SocketAddr) -> Option<u64> {
    let (from, to) = (proc_addrs(from), proc_addrs(to));
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 {
                continue;
            }
            if from.iter().any(|f| f == fields[1]) && to.iter().any(|t| t == fields[2]) {
                if let Ok(inode) = fields[9].parse::<u64>() {
                    if inode != 0 {
                        return Some(inode);
                    }
                }
            }
        }
    }
    None
}

/// How `/proc/net/tcp{,6}` may write `addr`: the address as 32-bit words in
/// the machine's byte order, `%08X` each, then `:` and the port in `%04X`.
/// An IPv4 address also as its IPv4-mapped IPv6 form.
fn proc_addrs(addr: SocketAddr) -> Vec<String> {
    let words = |octets: &[u8]| -> String {
        octets
            .chunks(4)
            .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
            .collect()
    };
    let port = addr.port();
    match addr.ip() {
        IpAddr::V4(v4) => vec![
            format!("{}:{port:04X}", words(&v4.octets())),
            format!("{}:{port:04X}", words(&v4.to_ipv6_mapped().octets())),
        ],
        IpAddr::V6(v6) => vec![format!("{}:{port:04X}", words(&v6.octets()))],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_proc_writes_them() {
        let a: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let forms = proc_addrs(a);
        if cfg!(target_endian = "little") {
            assert_eq!(forms[0], "0100007F:1F90");
            assert_eq!(forms[1], "0000000000000000FFFF00000100007F:1F90");
        }
    }

    #[test]
    fn the_dialler_of_a_connection_of_this_process_is_found() {
        // This test process dials; it is "node 1", found by an argument of
        // its own command line.
        let me = std::fs::read("/proc/self/cmdline").unwrap();
        let arg0 = String::from_utf8_lossy(me.split(|&b| b == 0).next().unwrap()).into_owned();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        let local = listener.local_addr().unwrap();
        let dialers = ProcDialers::new(vec!["no such argument".into(), arg0]);
        assert_eq!(dialers.node_of(peer, local), Some(1));
        // A connection nobody holds any more is nobody's.
        drop(client);
        drop(_server);
        let nobody = ProcDialers::new(vec!["no such argument".into()]);
        assert_eq!(nobody.node_of(peer, local), None);
    }
}
