//! Partition shapes: which directed links a partition cuts.
//!
//! A [`Grudge`] is the set of cut directed links of a cluster of `n` nodes:
//! `(from, to)` in it means that what `from` sends never reaches `to`
//! (Jepsen's word: `to` holds a grudge against `from`). A node always hears
//! itself. [`Shape::grudge`] turns a partition shape, the nodes it targets
//! (resolved at fault time: the leader, a random node, ...) and a random
//! source into the grudge; it is a pure function, so the shapes are tested
//! with tables below and the proxies ([`super::proxy`]) only apply the
//! result.
//!
//! The shapes, for `n` nodes (`m = n / 2 + 1` is a majority):
//! - `isolate`: every target is cut off from every other node, both ways.
//! - `halves`: a minority of `(n - 1) / 2` nodes (the targets first, then
//!   random ones) and the majority of the rest, cut from each other.
//! - `bridge`: the first target (else a random node) sees everyone; the
//!   others are split into two halves that do not see each other. With 5
//!   nodes each half plus the bridge is a majority, and the two majorities
//!   share only the bridge.
//! - `majorities-ring`: the nodes in a random ring; each node hears the `m`
//!   consecutive ring nodes of its own window (itself included), so every
//!   node sees a majority and no two see the same one.
//! - `one-way`: what the targets send is cut; what they receive is not.
//! - `groups`: explicit groups; two nodes see each other iff some group holds
//!   both (groups may overlap: `[[n0, n1, n2], [n2, n3, n4]]` is a bridge).

use std::collections::BTreeSet;
use std::fmt;

use rand::seq::SliceRandom;
use rand::Rng;

/// A partition's shape, as written in the workload (`shape:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    Isolate,
    Halves,
    Bridge,
    MajoritiesRing,
    OneWay,
    /// Node indexes per group.
    Groups(Vec<Vec<usize>>),
}

/// A shape that cannot be applied to a cluster of this size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("a partition needs at least 2 replicas (the cluster has {n})")]
    TooFewNodes { n: usize },
    #[error("shape {shape} needs at least {min} replicas (the cluster has {n})")]
    ShapeTooSmall {
        shape: &'static str,
        min: usize,
        n: usize,
    },
    #[error("group {group} names n{node}, but the replicas are n0..n{last}")]
    MissingNode {
        group: usize,
        node: usize,
        last: usize,
    },
    #[error("group {group} names n{node} twice")]
    DuplicateNode { group: usize, node: usize },
    #[error("the groups leave out {nodes}: name every replica in at least one group")]
    LeftOut { nodes: String },
    #[error("the groups cut no link: every pair of replicas shares a group")]
    CutsNothing,
    #[error("there are no groups")]
    NoGroups,
}

impl Shape {
    /// The name as written in the workload.
    pub fn name(&self) -> &'static str {
        match self {
            Shape::Isolate => "isolate",
            Shape::Halves => "halves",
            Shape::Bridge => "bridge",
            Shape::MajoritiesRing => "majorities-ring",
            Shape::OneWay => "one-way",
            Shape::Groups(_) => "groups",
        }
    }

    /// The names of the shapes that have one.
    pub const NAMES: &'static [&'static str] =
        &["isolate", "halves", "bridge", "majorities-ring", "one-way"];

    /// Parses a shape name (not `groups`, which is a list).
    pub fn from_name(s: &str) -> Option<Shape> {
        Some(match s {
            "isolate" => Shape::Isolate,
            "halves" => Shape::Halves,
            "bridge" => Shape::Bridge,
            "majorities-ring" => Shape::MajoritiesRing,
            "one-way" => Shape::OneWay,
            _ => return None,
        })
    }

    /// Whether the shape uses the fault's targets (the others ignore them).
    pub fn uses_targets(&self) -> bool {
        !matches!(self, Shape::MajoritiesRing | Shape::Groups(_))
    }

    /// Checks that the shape can be applied to `n` nodes at all, whatever
    /// the targets turn out to be (for workload validation).
    pub fn check(&self, n: usize) -> Result<(), ShapeError> {
        if n < 2 {
            return Err(ShapeError::TooFewNodes { n });
        }
        let min = match self {
            Shape::Bridge | Shape::MajoritiesRing => 3,
            _ => 2,
        };
        if n < min {
            return Err(ShapeError::ShapeTooSmall {
                shape: self.name(),
                min,
                n,
            });
        }
        if let Shape::Groups(groups) = self {
            if groups.is_empty() {
                return Err(ShapeError::NoGroups);
            }
            let mut seen = vec![false; n];
            for (g, members) in groups.iter().enumerate() {
                let mut in_group = BTreeSet::new();
                for &node in members {
                    if node >= n {
                        return Err(ShapeError::MissingNode {
                            group: g,
                            node,
                            last: n - 1,
                        });
                    }
                    if !in_group.insert(node) {
                        return Err(ShapeError::DuplicateNode { group: g, node });
                    }
                    seen[node] = true;
                }
            }
            let left: Vec<String> = (0..n)
                .filter(|&i| !seen[i])
                .map(|i| format!("n{i}"))
                .collect();
            if !left.is_empty() {
                return Err(ShapeError::LeftOut {
                    nodes: left.join(", "),
                });
            }
            if groups_grudge(n, groups).is_empty() {
                return Err(ShapeError::CutsNothing);
            }
        }
        Ok(())
    }

    /// The links this shape cuts in a cluster of `n` nodes, `targets` being
    /// the fault's resolved targets (ignored by some shapes; a shape that
    /// needs one picks a random node when there is none).
    pub fn grudge<R: Rng>(
        &self,
        n: usize,
        targets: &[usize],
        rng: &mut R,
    ) -> Result<Grudge, ShapeError> {
        self.check(n)?;
        let targets: Vec<usize> = {
            let mut seen = BTreeSet::new();
            targets
                .iter()
                .copied()
                .filter(|&t| t < n && seen.insert(t))
                .collect()
        };
        // The targets first, then the other nodes in random order.
        let ordered = |rng: &mut R| {
            let mut rest: Vec<usize> = (0..n).filter(|i| !targets.contains(i)).collect();
            rest.shuffle(rng);
            let mut all = targets.clone();
            all.extend(rest);
            all
        };
        Ok(match self {
            Shape::Isolate => {
                let isolated = if targets.is_empty() {
                    vec![ordered(rng)[0]]
                } else {
                    targets.clone()
                };
                let mut g = Grudge::new(n);
                for &t in &isolated {
                    for o in (0..n).filter(|&o| o != t) {
                        g.cut(t, o);
                        g.cut(o, t);
                    }
                }
                g
            }
            Shape::Halves => {
                let all = ordered(rng);
                let (minority, majority) = all.split_at((n - 1) / 2);
                Grudge::between(n, minority, majority)
            }
            Shape::Bridge => {
                let all = ordered(rng);
                let others = &all[1..];
                let (a, b) = others.split_at(others.len() / 2);
                Grudge::between(n, a, b)
            }
            Shape::MajoritiesRing => {
                let mut ring: Vec<usize> = (0..n).collect();
                ring.shuffle(rng);
                let m = n / 2 + 1;
                let mut g = Grudge::new(n);
                // Window k is ring[k..k+m] (wrapping); its middle node hears
                // only the window.
                for k in 0..n {
                    let window: Vec<usize> = (0..m).map(|d| ring[(k + d) % n]).collect();
                    let node = window[m / 2];
                    for from in (0..n).filter(|f| !window.contains(f)) {
                        g.cut(from, node);
                    }
                }
                g
            }
            Shape::OneWay => {
                let senders = if targets.is_empty() {
                    vec![ordered(rng)[0]]
                } else {
                    targets.clone()
                };
                let mut g = Grudge::new(n);
                for &t in &senders {
                    for o in (0..n).filter(|&o| o != t) {
                        g.cut(t, o);
                    }
                }
                g
            }
            Shape::Groups(groups) => groups_grudge(n, groups),
        })
    }
}

fn groups_grudge(n: usize, groups: &[Vec<usize>]) -> Grudge {
    let mut g = Grudge::new(n);
    for a in 0..n {
        for b in 0..n {
            if a != b && !groups.iter().any(|gr| gr.contains(&a) && gr.contains(&b)) {
                g.cut(a, b);
            }
        }
    }
    g
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Shape::Groups(groups) => {
                let gs: Vec<String> = groups
                    .iter()
                    .map(|g| {
                        let ns: Vec<String> = g.iter().map(|i| format!("n{i}")).collect();
                        format!("[{}]", ns.join(", "))
                    })
                    .collect();
                write!(f, "[{}]", gs.join(", "))
            }
            other => f.write_str(other.name()),
        }
    }
}

/// The cut directed links of a cluster of `n` nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grudge {
    n: usize,
    cut: BTreeSet<(usize, usize)>,
}

impl Grudge {
    /// No link cut.
    pub fn new(n: usize) -> Grudge {
        Grudge {
            n,
            cut: BTreeSet::new(),
        }
    }

    /// Every link between a node of `a` and a node of `b` cut, both ways.
    pub fn between(n: usize, a: &[usize], b: &[usize]) -> Grudge {
        let mut g = Grudge::new(n);
        for &x in a {
            for &y in b {
                g.cut(x, y);
                g.cut(y, x);
            }
        }
        g
    }

    /// Cuts the link `from -> to` (a node's link to itself cannot be cut).
    pub fn cut(&mut self, from: usize, to: usize) {
        if from != to && from < self.n && to < self.n {
            self.cut.insert((from, to));
        }
    }

    pub fn nodes(&self) -> usize {
        self.n
    }

    /// Whether what `from` sends reaches `to`.
    pub fn passes(&self, from: usize, to: usize) -> bool {
        !self.cut.contains(&(from, to))
    }

    /// The cut links, ordered.
    pub fn links(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.cut.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.cut.is_empty()
    }

    /// The nodes `to` hears (itself included).
    pub fn heard_by(&self, to: usize) -> BTreeSet<usize> {
        (0..self.n).filter(|&f| self.passes(f, to)).collect()
    }

    /// For each node that holds a grudge, the nodes it does not hear: the
    /// form of the history's `:value` (Jepsen's grudge map).
    pub fn by_receiver(&self) -> Vec<(usize, Vec<usize>)> {
        (0..self.n)
            .map(|to| {
                let deaf: Vec<usize> = (0..self.n).filter(|&f| !self.passes(f, to)).collect();
                (to, deaf)
            })
            .filter(|(_, deaf)| !deaf.is_empty())
            .collect()
    }
}

impl fmt::Display for Grudge {
    /// `n1 <- n0 n2; n0 <- n1`: each node and the nodes it does not hear.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let parts: Vec<String> = self
            .by_receiver()
            .into_iter()
            .map(|(to, deaf)| {
                let ds: Vec<String> = deaf.iter().map(|d| format!("n{d}")).collect();
                format!("n{to} <- {}", ds.join(" "))
            })
            .collect();
        if parts.is_empty() {
            f.write_str("(nothing cut)")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn majority(n: usize) -> usize {
        n / 2 + 1
    }

    /// Two-way connectivity: a and b hear each other.
    fn sees(g: &Grudge, a: usize, b: usize) -> bool {
        g.passes(a, b) && g.passes(b, a)
    }

    #[test]
    fn majorities_ring_every_node_hears_a_distinct_majority() {
        for n in [3, 5, 7] {
            for seed in 0..50 {
                let mut rng = StdRng::seed_from_u64(seed);
                let g = Shape::MajoritiesRing.grudge(n, &[], &mut rng).unwrap();
                let views: Vec<BTreeSet<usize>> = (0..n).map(|i| g.heard_by(i)).collect();
                for (i, v) in views.iter().enumerate() {
                    assert_eq!(v.len(), majority(n), "n={n} seed={seed} node {i}: {g}");
                    assert!(v.contains(&i));
                }
                let distinct: BTreeSet<_> = views.iter().collect();
                assert_eq!(
                    distinct.len(),
                    n,
                    "n={n} seed={seed}: two nodes share a view"
                );
                // No node hears everyone: it is a real partition.
                assert!(views.iter().all(|v| v.len() < n));
            }
        }
    }

    #[test]
    fn bridge_one_node_sees_all_and_the_halves_do_not_see_each_other() {
        // (n, size of each half)
        for (n, half) in [(3, 1), (5, 2), (7, 3)] {
            for seed in 0..50 {
                let mut rng = StdRng::seed_from_u64(seed);
                let target = (seed as usize) % n;
                let g = Shape::Bridge.grudge(n, &[target], &mut rng).unwrap();
                // The target is the bridge.
                for o in 0..n {
                    assert!(sees(&g, target, o), "n={n}: bridge n{target} must see n{o}");
                }
                let others: Vec<usize> = (0..n).filter(|&o| o != target).collect();
                // Each other node sees exactly its half (and the bridge).
                for &o in &others {
                    let seen = (0..n).filter(|&p| sees(&g, o, p)).count();
                    assert_eq!(seen, half + 1, "n={n} seed={seed} n{o}: {g}");
                    // Links are cut symmetrically.
                    for p in 0..n {
                        assert_eq!(g.passes(o, p), g.passes(p, o));
                    }
                }
                if n == 5 {
                    // Bridge + each half is a majority.
                    for &o in &others {
                        assert_eq!(g.heard_by(o).len(), majority(n));
                    }
                }
            }
        }
    }

    #[test]
    fn halves_a_minority_with_the_targets_and_a_majority() {
        // (n, minority size)
        for (n, minority) in [(3, 1), (5, 2), (7, 3)] {
            for seed in 0..50 {
                let mut rng = StdRng::seed_from_u64(seed);
                let target = (seed as usize) % n;
                let g = Shape::Halves.grudge(n, &[target], &mut rng).unwrap();
                let side = |i: usize| g.heard_by(i);
                // The target's side is the minority, the rest the majority.
                assert_eq!(side(target).len(), minority, "n={n}: {g}");
                let other = (0..n).find(|i| !side(target).contains(i)).unwrap();
                assert_eq!(side(other).len(), n - minority);
                assert!(n - minority >= majority(n));
                // Two sides, each a clique, cut symmetrically.
                for a in 0..n {
                    for b in 0..n {
                        let same = side(a).contains(&b);
                        assert_eq!(sees(&g, a, b), same);
                        assert_eq!(g.passes(a, b), g.passes(b, a));
                    }
                }
            }
        }
    }

    #[test]
    fn halves_without_target_is_random_but_seeded() {
        let a = Shape::Halves
            .grudge(5, &[], &mut StdRng::seed_from_u64(1))
            .unwrap();
        let b = Shape::Halves
            .grudge(5, &[], &mut StdRng::seed_from_u64(1))
            .unwrap();
        assert_eq!(a, b);
        let sides: BTreeSet<_> = (0..20)
            .map(|s| {
                Shape::Halves
                    .grudge(5, &[], &mut StdRng::seed_from_u64(s))
                    .unwrap()
                    .heard_by(0)
            })
            .collect();
        assert!(sides.len() > 1, "the split must vary with the seed");
    }

    #[test]
    fn isolate_and_one_way() {
        let mut rng = StdRng::seed_from_u64(0);
        for n in [3, 5, 7] {
            let g = Shape::Isolate.grudge(n, &[1], &mut rng).unwrap();
            assert_eq!(g.links().count(), 2 * (n - 1));
            for o in (0..n).filter(|&o| o != 1) {
                assert!(!g.passes(1, o) && !g.passes(o, 1));
                assert_eq!(g.heard_by(o).len(), n - 1);
            }
            let g = Shape::OneWay.grudge(n, &[1], &mut rng).unwrap();
            assert_eq!(g.links().count(), n - 1);
            for o in (0..n).filter(|&o| o != 1) {
                assert!(!g.passes(1, o), "n1's outgoing link to n{o} is cut");
                assert!(g.passes(o, 1), "n1 still hears n{o}");
            }
            // Two targets: each isolated from everyone, also each other.
            let g = Shape::Isolate.grudge(n, &[0, 2], &mut rng).unwrap();
            assert!(!g.passes(0, 2) && !g.passes(2, 0));
            assert_eq!(g.heard_by(0).len(), 1);
        }
    }

    #[test]
    fn explicit_groups_may_overlap() {
        let mut rng = StdRng::seed_from_u64(0);
        let bridge = Shape::Groups(vec![vec![0, 1, 2], vec![2, 3, 4]]);
        let g = bridge.grudge(5, &[], &mut rng).unwrap();
        assert!(sees(&g, 0, 2) && sees(&g, 2, 4) && sees(&g, 0, 1));
        assert!(!g.passes(0, 3) && !g.passes(4, 1));
        assert_eq!(g.heard_by(2).len(), 5);
        assert_eq!(g.to_string().matches("<-").count(), 4);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let groups = |g: Vec<Vec<usize>>| Shape::Groups(g).check(3);
        assert_eq!(
            groups(vec![vec![0, 1], vec![3]]),
            Err(ShapeError::MissingNode {
                group: 1,
                node: 3,
                last: 2
            })
        );
        assert!(matches!(
            groups(vec![vec![0, 1]]),
            Err(ShapeError::LeftOut { nodes }) if nodes == "n2"
        ));
        assert!(matches!(
            groups(vec![vec![0, 0], vec![1, 2]]),
            Err(ShapeError::DuplicateNode { group: 0, node: 0 })
        ));
        assert_eq!(groups(vec![vec![0, 1, 2]]), Err(ShapeError::CutsNothing));
        assert_eq!(groups(vec![]), Err(ShapeError::NoGroups));
        assert_eq!(
            Shape::Isolate.check(1),
            Err(ShapeError::TooFewNodes { n: 1 })
        );
        assert!(matches!(
            Shape::Bridge.check(2),
            Err(ShapeError::ShapeTooSmall { min: 3, .. })
        ));
        assert!(Shape::Halves.check(2).is_ok());
    }

    #[test]
    fn display_names_each_deaf_node() {
        let g = Grudge::between(3, &[0], &[1, 2]);
        assert_eq!(g.to_string(), "n0 <- n1 n2; n1 <- n0; n2 <- n0");
        assert_eq!(Grudge::new(3).to_string(), "(nothing cut)");
    }
}
