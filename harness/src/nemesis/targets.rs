//! Which nodes a fault hits: a workload's [`Target`] resolved against the
//! cluster as it is when the fault starts. Shared by every fault family.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::workload::Target;

/// Resolves `target` to sorted node indexes. `eligible[i]`: whether the
/// fault can hit node i now (pause and kill need a running node); `leader`:
/// the current leader, if known (asked only for [`Target::Leader`]).
pub fn resolve(
    target: Target,
    eligible: &[bool],
    leader: Option<usize>,
    rng: &mut StdRng,
) -> Vec<usize> {
    let n = eligible.len();
    let ok = |i: usize| eligible.get(i).copied().unwrap_or(false);
    let mut pick = |k: usize| {
        let mut all: Vec<usize> = (0..n).collect();
        all.shuffle(rng);
        let mut chosen: Vec<usize> = all.into_iter().take(k).filter(|&i| ok(i)).collect();
        chosen.sort_unstable();
        chosen
    };
    match target {
        Target::Leader => leader.filter(|&l| ok(l)).into_iter().collect(),
        Target::Random => {
            let candidates: Vec<usize> = (0..n).filter(|&i| ok(i)).collect();
            if candidates.is_empty() {
                vec![]
            } else {
                vec![candidates[rng.random_range(0..candidates.len())]]
            }
        }
        Target::Minority => pick(n.saturating_sub(1) / 2),
        Target::Majority => pick(n / 2 + 1),
        Target::All => (0..n).filter(|&i| ok(i)).collect(),
        Target::Node(i) => (ok(i)).then_some(i).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn targets_resolve_against_eligible_nodes() {
        let mut rng = StdRng::seed_from_u64(7);
        let all = [true; 5];
        assert_eq!(resolve(Target::Minority, &all, None, &mut rng).len(), 2);
        assert_eq!(resolve(Target::Majority, &all, None, &mut rng).len(), 3);
        assert_eq!(
            resolve(Target::All, &all, None, &mut rng),
            vec![0, 1, 2, 3, 4]
        );
        assert_eq!(resolve(Target::Random, &all, None, &mut rng).len(), 1);
        assert_eq!(resolve(Target::Leader, &all, Some(3), &mut rng), vec![3]);
        assert!(resolve(Target::Leader, &all, None, &mut rng).is_empty());
        let some = [true, false, true];
        assert_eq!(resolve(Target::All, &some, None, &mut rng), vec![0, 2]);
        assert!(resolve(Target::Node(1), &some, None, &mut rng).is_empty());
        assert!(resolve(Target::Leader, &some, Some(1), &mut rng).is_empty());
        assert!(resolve(Target::Node(9), &some, None, &mut rng).is_empty());
        for _ in 0..50 {
            assert_ne!(resolve(Target::Random, &some, None, &mut rng), vec![1]);
            assert!(!resolve(Target::Majority, &some, None, &mut rng).contains(&1));
        }
        assert!(resolve(Target::Random, &[false; 3], None, &mut rng).is_empty());
    }
}
