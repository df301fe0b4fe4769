//! Draws the operations of the clients from the workload's mix.
//!
//! Each logical client has its own [`Generator`] seeded from the workload
//! seed and the client's number, so a run's sequence of operations per client
//! is reproducible. Written values are unique (`w<worker>-<n>`, padded to the
//! value size): a read then identifies exactly which write it observed, which
//! keeps the linearizability search small. CAS operations expect the value
//! the client last saw for the key, so that a fair share of them succeed.

use std::collections::HashMap;

use client::Op;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::history::Value as Edn;
use crate::workload::{KeyDistribution, OpSpec};

/// How a [`client::Op`] appears in the history (the `kv` model's shapes).
pub trait HistoryOp {
    /// The history's `:f` (the `kv` model's names).
    fn f(&self) -> &'static str;
    /// The `:value` of the `:invoke` (reads do not know their value yet).
    fn invoke_value(&self) -> Edn;
    /// The `:value` of an `:ok` completion; `read` is what a GET returned.
    fn ok_value(&self, read: Option<String>) -> Edn;
}

impl HistoryOp for Op {
    fn f(&self) -> &'static str {
        match self {
            Op::Get { .. } => "read",
            Op::Put { .. } => "write",
            Op::Delete { .. } => "delete",
            Op::Cas { .. } => "cas",
            Op::Append { .. } => "append",
        }
    }

    fn invoke_value(&self) -> Edn {
        let k = Edn::string(self.key());
        match self {
            Op::Get { .. } | Op::Delete { .. } => Edn::Vector(vec![k, Edn::Nil].into()),
            Op::Put { value, .. } | Op::Append { value, .. } => {
                Edn::Vector(vec![k, Edn::string(value.clone())].into())
            }
            Op::Cas { expected, new, .. } => Edn::Vector(
                vec![
                    k,
                    Edn::Vector(vec![Edn::opt(expected.clone()), Edn::string(new.clone())].into()),
                ]
                .into(),
            ),
        }
    }

    fn ok_value(&self, read: Option<String>) -> Edn {
        match self {
            Op::Get { key } => Edn::Vector(vec![Edn::string(key.clone()), Edn::opt(read)].into()),
            _ => self.invoke_value(),
        }
    }
}

/// Draws keys by the workload's distribution.
#[derive(Debug, Clone)]
pub struct KeyPicker {
    keys: Vec<String>,
    /// Cumulative weights for zipf; empty for uniform.
    cdf: Vec<f64>,
}

impl KeyPicker {
    pub fn new(spec: &OpSpec) -> KeyPicker {
        let keys = (0..spec.keys).map(|i| format!("k{i}")).collect();
        let cdf = match spec.key_distribution {
            KeyDistribution::Uniform => Vec::new(),
            KeyDistribution::Zipf => {
                let mut acc = 0.0;
                (0..spec.keys)
                    .map(|i| {
                        acc += 1.0 / ((i + 1) as f64).powf(spec.zipf_exponent);
                        acc
                    })
                    .collect()
            }
        };
        KeyPicker { keys, cdf }
    }

    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    pub fn pick(&self, rng: &mut impl Rng) -> &str {
        if self.cdf.is_empty() {
            return &self.keys[rng.random_range(0..self.keys.len())];
        }
        let total = *self.cdf.last().unwrap_or(&1.0);
        let x = rng.random::<f64>() * total;
        let i = self
            .cdf
            .partition_point(|&c| c < x)
            .min(self.keys.len() - 1);
        &self.keys[i]
    }
}

/// The operation source of one logical client (worker).
#[derive(Debug)]
pub struct Generator {
    rng: StdRng,
    spec: OpSpec,
    keys: KeyPicker,
    worker: usize,
    counter: u64,
    /// What this worker last saw (or wrote) for each key: CAS expects it.
    last_seen: HashMap<String, Option<String>>,
}

impl Generator {
    pub fn new(spec: &OpSpec, seed: u64, worker: usize) -> Generator {
        // Spread the seeds: distinct workers get unrelated streams.
        let s = seed ^ (worker as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Generator {
            rng: StdRng::seed_from_u64(s),
            spec: spec.clone(),
            keys: KeyPicker::new(spec),
            worker,
            counter: 0,
            last_seen: HashMap::new(),
        }
    }

    fn fresh_value(&mut self, size: usize) -> String {
        self.counter += 1;
        let mut v = format!("w{}-{}", self.worker, self.counter);
        while v.len() < size {
            v.push('.');
        }
        v
    }

    /// The next operation.
    pub fn next_op(&mut self) -> Op {
        let m = &self.spec.mix;
        let weights = [m.get, m.put, m.delete, m.cas, m.append];
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut x = self.rng.random_range(0..total.max(1));
        let mut which = 0;
        for (i, &w) in weights.iter().enumerate() {
            if x < u64::from(w) {
                which = i;
                break;
            }
            x -= u64::from(w);
        }
        let key = self.keys.pick(&mut self.rng).to_string();
        let size = self.spec.value_size;
        match which {
            0 => Op::Get { key },
            1 => Op::Put {
                value: self.fresh_value(size),
                key,
            },
            2 => Op::Delete { key },
            3 => {
                let expected = self.last_seen.get(&key).cloned().flatten();
                Op::Cas {
                    expected,
                    new: self.fresh_value(size),
                    key,
                }
            }
            _ => {
                // Appends stay short: the value grows with every one.
                self.counter += 1;
                Op::Append {
                    value: format!("{}.{};", self.worker, self.counter),
                    key,
                }
            }
        }
    }

    /// Tells the generator the outcome of an op that completed `:ok`
    /// (`value`: what the key holds afterwards, if known).
    pub fn observe(&mut self, op: &Op, value: Option<String>) {
        match op {
            Op::Get { key } => {
                self.last_seen.insert(key.clone(), value);
            }
            Op::Put { key, value: v } => {
                self.last_seen.insert(key.clone(), Some(v.clone()));
            }
            Op::Delete { key } => {
                self.last_seen.insert(key.clone(), None);
            }
            Op::Cas { key, new, .. } => {
                self.last_seen.insert(key.clone(), Some(new.clone()));
            }
            Op::Append { key, .. } => {
                self.last_seen.insert(key.clone(), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Mix;

    fn spec(mix: Mix) -> OpSpec {
        OpSpec {
            keys: 4,
            mix,
            value_size: 12,
            ..OpSpec::default()
        }
    }

    #[test]
    fn same_seed_same_ops_and_mix_respected() {
        let s = spec(Mix {
            get: 1,
            put: 1,
            delete: 0,
            cas: 0,
            append: 0,
        });
        let mut a = Generator::new(&s, 7, 2);
        let mut b = Generator::new(&s, 7, 2);
        let ops: Vec<Op> = (0..200).map(|_| a.next_op()).collect();
        let ops_b: Vec<Op> = (0..200).map(|_| b.next_op()).collect();
        assert_eq!(ops, ops_b);
        let gets = ops.iter().filter(|o| o.f() == "read").count();
        assert!((60..140).contains(&gets), "{gets} gets of 200");
        assert!(ops.iter().all(|o| o.f() == "read" || o.f() == "write"));
        for o in &ops {
            if let Op::Put { value, .. } = o {
                assert!(value.len() >= 12 && value.starts_with("w2-"), "{value}");
            }
        }
    }

    #[test]
    fn zipf_prefers_low_keys() {
        let mut s = spec(Mix::default());
        s.keys = 20;
        s.key_distribution = KeyDistribution::Zipf;
        let p = KeyPicker::new(&s);
        let mut rng = StdRng::seed_from_u64(1);
        let k0 = (0..2000).filter(|_| p.pick(&mut rng) == "k0").count();
        assert!(k0 > 400, "k0 drawn {k0} times of 2000");
    }

    #[test]
    fn history_values_have_kv_shapes() {
        let cas = Op::Cas {
            key: "k1".into(),
            expected: None,
            new: "v".into(),
        };
        assert_eq!(cas.invoke_value().to_string(), "[\"k1\" [nil \"v\"]]");
        let get = Op::Get { key: "k2".into() };
        assert_eq!(get.invoke_value().to_string(), "[\"k2\" nil]");
        assert_eq!(get.ok_value(Some("x".into())).to_string(), "[\"k2\" \"x\"]");
    }
}
