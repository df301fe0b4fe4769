//! Partitions between remote nodes, with iptables rules on the nodes.
//!
//! Every rule lives in one chain the harness owns, [`CHAIN`], jumped to from
//! the top of `INPUT`. A cut link `from -> to` is a rule on `to` that drops
//! (`cut: blackhole`) or resets (`cut: reset`: TCP RST, other packets
//! dropped) what arrives from `from`'s address; the control host's own
//! traffic (clients, SSH) is never matched. As in Jepsen, a one-way cut also
//! stops TCP connections the other way (their replies are dropped).
//!
//! A heal flushes the chain; the chain and its jump are removed when the
//! cluster goes ([`Firewall::teardown`], also from Drop) and, after a crash
//! of the harness, at the next start on that node ([`teardown_script`] runs
//! in every prepare with privileges). Needs root on the node, or `sudo:
//! true` with passwordless `sudo` for iptables.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::ssh::{quote, Session};
use crate::net::{Cut, Grudge};

/// The chain the harness owns on every node.
pub const CHAIN: &str = "PAXOSKV-HARNESS";

fn ipt(sudo: bool) -> &'static str {
    if sudo {
        "sudo -n iptables -w"
    } else {
        "iptables -w"
    }
}

/// Creates (or empties) the chain and jumps to it from `INPUT`.
pub fn setup_script(sudo: bool) -> String {
    let i = ipt(sudo);
    format!("set -e\n{i} -N {CHAIN} 2>/dev/null || {i} -F {CHAIN}\n{i} -C INPUT -j {CHAIN} 2>/dev/null || {i} -I INPUT 1 -j {CHAIN}\n")
}

/// Removes the jump, the rules and the chain; never fails (nothing there,
/// no iptables: nothing to remove).
pub fn teardown_script(sudo: bool) -> String {
    let i = ipt(sudo);
    format!("n=0; while {i} -D INPUT -j {CHAIN} 2>/dev/null && [ $n -lt 10 ]; do n=$((n+1)); done\n{i} -F {CHAIN} 2>/dev/null; {i} -X {CHAIN} 2>/dev/null; exit 0\n")
}

/// Replaces the chain's rules: everything from `sources` is cut.
pub fn rules_script(sources: &[String], cut: Cut, sudo: bool) -> String {
    let i = ipt(sudo);
    let mut s = format!("set -e\n{i} -F {CHAIN}\n");
    for src in sources {
        let src = quote(src);
        if cut == Cut::Reset {
            s.push_str(&format!(
                "{i} -A {CHAIN} -s {src} -p tcp -j REJECT --reject-with tcp-reset\n"
            ));
        }
        s.push_str(&format!("{i} -A {CHAIN} -s {src} -j DROP\n"));
    }
    s
}

/// One node as the firewall sees it.
pub struct FirewallNode {
    pub session: Arc<Session>,
    /// Its address, as the other nodes' packets carry it.
    pub addr: String,
    /// Whether to prefix iptables with `sudo -n`.
    pub sudo: bool,
}

/// The iptables side of the remote nodes: cuts and heals links.
pub struct Firewall {
    nodes: Vec<FirewallNode>,
    cut: AtomicBool,
}

/// Runs one script per node concurrently; the errors, one line each.
fn on_each(nodes: &[FirewallNode], what: &str, script: impl Fn(usize) -> String) -> Vec<String> {
    std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(k, n)| {
                let script = script(k);
                s.spawn(move || n.session.run(what, &script).err().map(|e| e.to_string()))
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().ok().flatten())
            .collect()
    })
}

impl Firewall {
    /// Installs the chain on every node.
    pub fn setup(nodes: Vec<FirewallNode>) -> Result<Firewall, String> {
        let errors = on_each(&nodes, "iptables setup", |k| setup_script(nodes[k].sudo));
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        Ok(Firewall {
            nodes,
            cut: AtomicBool::new(false),
        })
    }

    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Cuts exactly the links of `grudge`; the errors.
    pub fn partition(&self, grudge: &Grudge, cut: Cut) -> Vec<String> {
        self.cut.store(true, Ordering::SeqCst);
        on_each(&self.nodes, "iptables partition", |to| {
            let sources: Vec<String> = (0..self.nodes.len())
                .filter(|&from| from != to && !grudge.passes(from, to))
                .map(|from| self.nodes[from].addr.clone())
                .collect();
            rules_script(&sources, cut, self.nodes[to].sudo)
        })
    }

    /// Lets every link pass again; the errors.
    pub fn heal(&self) -> Vec<String> {
        let errors = on_each(&self.nodes, "iptables heal", |k| {
            rules_script(&[], Cut::Blackhole, self.nodes[k].sudo)
        });
        if errors.is_empty() {
            self.cut.store(false, Ordering::SeqCst);
        }
        errors
    }

    /// Whether a partition may still be in force.
    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }

    /// Removes the chain from every node (idempotent).
    pub fn teardown(&self) -> Vec<String> {
        on_each(&self.nodes, "iptables teardown", |k| {
            teardown_script(self.nodes[k].sudo)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_cut_only_the_given_sources() {
        let s = rules_script(&["10.0.0.2".into()], Cut::Blackhole, false);
        assert!(s.contains("iptables -w -F PAXOSKV-HARNESS"));
        assert!(s.contains("-A PAXOSKV-HARNESS -s 10.0.0.2 -j DROP"));
        assert!(!s.contains("REJECT"));
        let s = rules_script(&["10.0.0.2".into()], Cut::Reset, true);
        assert!(s.contains("sudo -n iptables -w -A PAXOSKV-HARNESS -s 10.0.0.2 -p tcp -j REJECT --reject-with tcp-reset"));
        let heal = rules_script(&[], Cut::Blackhole, false);
        assert!(!heal.contains("-A "), "{heal}");
        assert!(teardown_script(false).contains("-X PAXOSKV-HARNESS"));
    }
}
