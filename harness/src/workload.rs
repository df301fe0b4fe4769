//! Workload files: what `harness run` does, described in YAML.
//!
//! A workload names the cluster to start, the clients to run against it, the
//! operation mix, the faults to inject and the checks to perform. Parsing is
//! strict: every struct denies unknown fields, so a typo (`replica:` instead
//! of `replicas:`) is an error that names the field and its line instead of a
//! silently ignored setting. After parsing, `Workload::validate` checks the
//! values (ranges, mix weights, nemesis targets) and reports the offending key
//! with its line, found by scanning the YAML text (serde only locates syntax
//! and type errors).
//!
//! The full schema with defaults is documented in `README.md ("Workload YAML")`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::net::{Cut, Shape};
pub use crate::units::{format_duration, parse_bandwidth, parse_duration, Bandwidth, Dur};

/// A problem with a workload file: what is wrong, and where.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// The file could not be read.
    #[error("cannot read workload {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// YAML syntax, an unknown field or a value of the wrong type.
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    /// A well-formed value that is out of range or inconsistent.
    #[error("{file}:{line}: `{field}`: {message}")]
    Invalid {
        file: String,
        field: String,
        line: usize,
        message: String,
    },
}

/// A whole workload file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Name of the workload: the store directory `store/<name>/...`.
    /// Defaults to the file name without extension.
    #[serde(default)]
    pub name: Option<String>,
    /// Free text, shown in the summary.
    #[serde(default)]
    pub description: Option<String>,
    /// Seed of every random choice of the run (ops, keys, values, nemesis
    /// targets). Absent: a random seed, written into the workload as run.
    #[serde(default)]
    pub seed: Option<u64>,
    /// The system under test.
    #[serde(default)]
    pub db: DbSpec,
    /// How long the clients run (the final phase comes on top).
    pub duration: Dur,
    #[serde(default)]
    pub cluster: ClusterSpec,
    #[serde(default)]
    pub clients: ClientSpec,
    #[serde(default)]
    pub operations: OpSpec,
    /// Faults, each with its own schedule; they may overlap.
    #[serde(default)]
    pub nemesis: Vec<FaultSpec>,
    #[serde(default, rename = "final")]
    pub final_phase: FinalSpec,
    #[serde(default)]
    pub checkers: CheckerSpec,
}

/// The system under test (`db:`): one adapter in [`crate::db`] per variant.
/// Written as a name (`db: etcd`) or, with options, as a map with one key
/// (`db: {etcd: {read_mode: serializable}}`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(try_from = "serde_yaml::Value", into = "serde_yaml::Value")]
pub enum DbSpec {
    /// This repository's `server` ([`crate::db::paxoskv`]).
    #[default]
    Paxoskv,
    /// etcd 3.4 ([`crate::db::etcd`]).
    Etcd(EtcdSpec),
    /// Any system, through command templates and JSON lines
    /// ([`crate::db::exec`]).
    Exec(ExecSpec),
}

impl DbSpec {
    /// The adapter's name, as written in workload files.
    pub fn name(&self) -> &'static str {
        match self {
            DbSpec::Paxoskv => "paxoskv",
            DbSpec::Etcd(_) => "etcd",
            DbSpec::Exec(_) => "exec",
        }
    }
}

impl TryFrom<serde_yaml::Value> for DbSpec {
    type Error = String;

    fn try_from(v: serde_yaml::Value) -> Result<DbSpec, String> {
        use serde_yaml::Value as Y;
        let (name, options) = match v {
            Y::String(name) => (name, Y::Null),
            Y::Mapping(m) if m.len() == 1 => {
                let (k, v) = m.into_iter().next().expect("one entry");
                match k {
                    Y::String(name) => (name, v),
                    other => return Err(format!("db: {other:?} is not an adapter name")),
                }
            }
            _ => {
                return Err(
                    "db: expected an adapter name (paxoskv, etcd, exec) or a map with one of them as its only key"
                        .into(),
                )
            }
        };
        let options = if options.is_null() {
            Y::Mapping(Default::default())
        } else {
            options
        };
        match name.as_str() {
            "paxoskv" if options.as_mapping().is_some_and(|m| m.is_empty()) => Ok(DbSpec::Paxoskv),
            "paxoskv" => Err("db.paxoskv takes no options (see cluster:)".into()),
            "etcd" => serde_yaml::from_value(options)
                .map(DbSpec::Etcd)
                .map_err(|e| format!("db.etcd: {e}")),
            "exec" => {
                let spec: ExecSpec =
                    serde_yaml::from_value(options).map_err(|e| format!("db.exec: {e}"))?;
                crate::db::exec::check_template(&spec.start)
                    .map_err(|e| format!("db.exec.start: {e}"))?;
                crate::db::exec::check_template(&spec.client)
                    .map_err(|e| format!("db.exec.client: {e}"))?;
                Ok(DbSpec::Exec(spec))
            }
            other => Err(format!(
                "db: unknown adapter `{other}` (known: paxoskv, etcd, exec)"
            )),
        }
    }
}

impl From<DbSpec> for serde_yaml::Value {
    fn from(d: DbSpec) -> serde_yaml::Value {
        let name = serde_yaml::Value::String(d.name().into());
        let options = match &d {
            DbSpec::Paxoskv => return name,
            DbSpec::Etcd(e) => serde_yaml::to_value(e),
            DbSpec::Exec(e) => serde_yaml::to_value(e),
        };
        let mut m = serde_yaml::Mapping::new();
        m.insert(name, options.unwrap_or_default());
        serde_yaml::Value::Mapping(m)
    }
}

/// Options of the etcd adapter (`db: {etcd: {...}}`). Its members use the
/// ports of `cluster:` (client `base_client_port + i`, peer
/// `base_paxos_port + i`) and `cluster.replicas`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EtcdSpec {
    /// The `etcd` binary; default: `etcd` on PATH.
    pub bin: Option<PathBuf>,
    pub read_mode: EtcdReadMode,
    /// Extra flags for every member, e.g. `["--heartbeat-interval", "50"]`.
    pub flags: Vec<String>,
}

/// Options of the exec adapter (`db: {exec: {start: [...], client: [...]}}`):
/// command lines with placeholders ([`crate::db::exec`]).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExecSpec {
    /// Starts one node.
    pub start: Vec<String>,
    /// Runs one client process (JSON lines on stdin/stdout).
    pub client: Vec<String>,
}

/// How the etcd adapter reads (etcd's Range `serializable` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EtcdReadMode {
    /// Through a quorum (ReadIndex): etcd's default.
    #[default]
    Linearizable,
    /// From the member's local state: may be stale.
    Serializable,
}

/// How reads are served by the cluster (`--read-mode`): the type all crates
/// share, written `quorum` or `local` in workload files.
pub use paxoskv::ReadMode;

/// The replicas to start.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSpec {
    /// Number of replicas (1..=15).
    pub replicas: usize,
    /// Acceptor fail_rate of every replica at start, in [0, 1].
    pub fail_rate: f64,
    pub read_mode: ReadMode,
    /// Address every replica listens on.
    pub host: String,
    /// Client port of replica i is `base_client_port + i`.
    pub base_client_port: u16,
    /// Paxos port of replica i is `base_paxos_port + i`.
    pub base_paxos_port: u16,
    /// With network faults, replica i reaches replica j through a proxy on
    /// port `base_proxy_port + i * replicas + j` (range: `replicas²` ports;
    /// etcd: every member reaches member j through `base_proxy_port + j`).
    pub base_proxy_port: u16,
    /// Extra flags passed to every `server`, e.g. `["--tick-ms", "10"]`.
    pub server_flags: Vec<String>,
    /// How long to wait for the cluster to elect a coordinator at start.
    pub startup_timeout: Dur,
    /// Remote hosts reached over SSH, one per replica (node `n<i>` on
    /// `hosts[i]`); empty: local processes on `host` ([`crate::remote`]).
    pub hosts: Vec<crate::remote::HostSpec>,
    /// Deadline of every remote command (connect, signal, start, stop).
    pub ssh_timeout: Dur,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            replicas: 3,
            fail_rate: 0.0,
            read_mode: ReadMode::Quorum,
            host: "127.0.0.1".into(),
            base_client_port: 8000,
            base_paxos_port: 9000,
            base_proxy_port: 10000,
            server_flags: Vec::new(),
            startup_timeout: Dur::secs(30),
            hosts: Vec::new(),
            ssh_timeout: Dur::secs(10),
        }
    }
}

/// The logical client processes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientSpec {
    /// Number of logical processes, each with one op in flight. Process i
    /// talks to replica `i % replicas`.
    pub concurrency: usize,
    /// Total target rate in ops/s over all processes. Absent or 0: closed
    /// loop (each process issues its next op as soon as the last completes).
    pub rate: Option<f64>,
    /// A request that takes longer completes as `:info` (outcome unknown).
    pub request_timeout: Dur,
    /// Pause of a process after a `:fail` or `:info`, so that a process bound
    /// to a dead replica does not spin.
    pub backoff: Dur,
}

impl Default for ClientSpec {
    fn default() -> Self {
        ClientSpec {
            concurrency: 6,
            rate: None,
            request_timeout: Dur::secs(2),
            backoff: Dur::millis(50),
        }
    }
}

/// Relative weights of the operations; they need not add up to 100. An
/// operation left out of a `mix:` has weight 0 (without `mix:` at all, the
/// default is get 50, put 40, cas 10).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    #[serde(default)]
    pub get: u32,
    #[serde(default)]
    pub put: u32,
    #[serde(default)]
    pub delete: u32,
    #[serde(default)]
    pub cas: u32,
    #[serde(default)]
    pub append: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            get: 50,
            put: 40,
            delete: 0,
            cas: 10,
            append: 0,
        }
    }
}

impl Mix {
    pub fn total(&self) -> u64 {
        [self.get, self.put, self.delete, self.cas, self.append]
            .iter()
            .map(|&w| u64::from(w))
            .sum()
    }
}

/// How keys are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KeyDistribution {
    #[default]
    Uniform,
    /// Key i drawn with probability proportional to 1/(i+1)^zipf_exponent.
    Zipf,
}

/// What the clients do.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpSpec {
    /// Number of distinct keys (`k0` .. `k{keys-1}`).
    pub keys: usize,
    pub mix: Mix,
    /// Length in bytes of written values (padded unique strings, >= 8).
    pub value_size: usize,
    pub key_distribution: KeyDistribution,
    pub zipf_exponent: f64,
}

impl Default for OpSpec {
    fn default() -> Self {
        OpSpec {
            keys: 5,
            mix: Mix::default(),
            value_size: 8,
            key_distribution: KeyDistribution::Uniform,
            zipf_exponent: 1.0,
        }
    }
}

/// The kinds of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGSTOP, healed by SIGCONT.
    Pause,
    /// SIGKILL, healed by restarting on the same data dir.
    Kill,
    /// Sets the acceptor fail_rate, healed by restoring the cluster's.
    FailRate,
    // Network faults (through the link proxies, `crate::net`):
    /// Cuts the links of a `shape` (or explicit `groups`), healed by
    /// restoring every link.
    Partition,
    /// Adds `latency` (and `jitter`) to the links of the targets.
    Delay,
    /// Limits the links of the targets to `bandwidth`.
    Slow,
    /// SIGKILL, drop every write the node had not fsynced (its data dir is a
    /// lazyfs mount), healed by restarting on the same data dir.
    LoseUnsynced,
    /// With the node SIGKILLed, damage one record of its WAL or checkpoint
    /// (see [`CorruptMode`]) and restart it: it must refuse to start. Healed
    /// by restoring the bytes and restarting.
    Corrupt,
}

impl FaultKind {
    /// Whether the fault acts on links (needs the link proxies).
    pub fn is_network(self) -> bool {
        matches!(
            self,
            FaultKind::Partition | FaultKind::Delay | FaultKind::Slow
        )
    }
}

/// How `corrupt` damages a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CorruptMode {
    /// Flip one bit at a random byte of the record.
    #[default]
    Bitflip,
    /// Cut the file at a random byte of the record.
    Truncate,
}

impl CorruptMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CorruptMode::Bitflip => "bitflip",
            CorruptMode::Truncate => "truncate",
        }
    }
}

/// Which replicas a fault hits; resolved anew each time the fault starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// The current coordinator.
    Leader,
    /// One replica chosen at random.
    #[default]
    Random,
    /// A random minority (floor((n-1)/2) replicas); includes the leader
    /// half of the time.
    Minority,
    /// A random majority (floor(n/2)+1 replicas).
    Majority,
    All,
    /// One named replica, by index (`node 2`, `n2`, or `2`).
    Node(usize),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Target::Leader => f.write_str("leader"),
            Target::Random => f.write_str("random"),
            Target::Minority => f.write_str("minority"),
            Target::Majority => f.write_str("majority"),
            Target::All => f.write_str("all"),
            Target::Node(i) => write!(f, "n{i}"),
        }
    }
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        Ok(match t.as_str() {
            "leader" | "coordinator" => Target::Leader,
            "random" => Target::Random,
            "minority" => Target::Minority,
            "majority" => Target::Majority,
            "all" => Target::All,
            _ => {
                let digits = t
                    .strip_prefix("node")
                    .or_else(|| t.strip_prefix('n'))
                    .unwrap_or(&t)
                    .trim();
                digits.parse::<usize>().map(Target::Node).map_err(|_| {
                    format!(
                        "unknown target {s:?} (expected leader, random, minority, majority, all or a node such as n1)"
                    )
                })?
            }
        })
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Target;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("leader, random, minority, majority, all or a node such as n1")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Target, E> {
                Ok(Target::Node(v as usize))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Target, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// One scheduled fault: first at `start`, healed `duration` later, repeated
/// every `interval` (measured start to start) until the end of the run or
/// `count` times.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub fault: FaultKind,
    /// Default: a random node.
    #[serde(default)]
    pub target: Target,
    #[serde(default)]
    pub start: Dur,
    /// Time from one start to the next; absent: the fault happens once.
    #[serde(default)]
    pub interval: Option<Dur>,
    /// Time from the fault to its heal.
    pub duration: Dur,
    /// Maximum number of times the fault happens.
    #[serde(default)]
    pub count: Option<u32>,
    /// For `fail-rate`: the acceptor fail_rate to set, in [0, 1].
    #[serde(default)]
    pub fail_rate: Option<f64>,
    /// For `partition`: `isolate` (default), `halves`, `bridge`,
    /// `majorities-ring` or `one-way` ([`crate::net::grudge`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Shape>,
    /// For `partition`, instead of a shape: node groups, e.g.
    /// `[[n0, n1], [n2]]`; two nodes see each other iff a group holds both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<Vec<Target>>>,
    /// For `partition`: how cut links behave, `blackhole` (default) or
    /// `reset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut: Option<Cut>,
    /// For `corrupt`: how to damage the record (default bitflip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<CorruptMode>,
    /// For `delay`: added to every message on the links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Dur>,
    /// For `delay`: a random extra delay in [0, jitter] per message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<Dur>,
    /// For `slow`: bytes per second per link direction, e.g. `100kB/s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
}

impl FaultSpec {
    /// An entry of `kind` with every optional setting at its default.
    pub fn of_kind(kind: FaultKind) -> FaultSpec {
        FaultSpec {
            fault: kind,
            target: Target::default(),
            start: Dur::default(),
            interval: None,
            duration: Dur::secs(1),
            count: None,
            fail_rate: None,
            shape: None,
            groups: None,
            cut: None,
            mode: None,
            latency: None,
            jitter: None,
            bandwidth: None,
        }
    }

    /// The partition's shape: `groups` if given, else `shape`, else
    /// `isolate`.
    pub fn partition_shape(&self) -> Shape {
        match (&self.groups, &self.shape) {
            (Some(groups), _) => Shape::Groups(
                groups
                    .iter()
                    .map(|g| {
                        g.iter()
                            .filter_map(|t| match t {
                                Target::Node(i) => Some(*i),
                                _ => None,
                            })
                            .collect()
                    })
                    .collect(),
            ),
            (None, Some(shape)) => shape.clone(),
            (None, None) => Shape::Isolate,
        }
    }
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Shape::from_name(name.trim()).ok_or_else(|| {
            de::Error::custom(format!(
                "unknown shape {name:?} (expected {}; or give `groups:` instead)",
                Shape::NAMES.join(", ")
            ))
        })
    }
}

impl Serialize for Shape {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// The phase after the clients stop.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinalSpec {
    /// After healing, how long to wait for every replica to serve again.
    pub recovery_timeout: Dur,
    /// Read every key through every replica.
    pub reads: bool,
    /// How long to wait for the replicas' applied index and digest to agree.
    pub convergence_timeout: Dur,
}

impl Default for FinalSpec {
    fn default() -> Self {
        FinalSpec {
            recovery_timeout: Dur::secs(30),
            reads: true,
            convergence_timeout: Dur::secs(20),
        }
    }
}

/// Which checks decide the verdict.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckerSpec {
    /// Linearizability of each key under the `kv` model.
    pub linearizable: bool,
    /// Replicas agree on applied index and digest after the final phase.
    pub convergence: bool,
    /// Throughput and latency report (never affects the verdict).
    pub perf: bool,
    /// Time limit of the linearizability check (each key, and the whole
    /// history); exceeded: exit 2.
    pub time_limit: Dur,
    /// Decide every key's linearizability; by default the first invalid key
    /// decides the verdict and the other keys are not checked further.
    pub all_keys: bool,
}

impl Default for CheckerSpec {
    fn default() -> Self {
        CheckerSpec {
            linearizable: true,
            convergence: true,
            perf: true,
            time_limit: Dur::secs(120),
            all_keys: false,
        }
    }
}

impl Workload {
    /// Reads, parses and validates a workload file.
    pub fn load(path: &Path) -> Result<Workload, WorkloadError> {
        let text = std::fs::read_to_string(path).map_err(|source| WorkloadError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mut w = Workload::parse(&text, &path.display().to_string())?;
        if w.name.is_none() {
            w.name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        }
        Ok(w)
    }

    /// Parses and validates workload text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Workload, WorkloadError> {
        let w: Workload = serde_yaml::from_str(text).map_err(|e| {
            let mut message = e.to_string();
            // serde_yaml puts the location in its message for most errors;
            // add it when it does not.
            if let Some(loc) = e.location() {
                if !message.contains("line") {
                    message = format!("line {}: {message}", loc.line());
                }
            }
            WorkloadError::Parse {
                file: file.to_string(),
                message,
            }
        })?;
        w.validate(text, file)?;
        Ok(w)
    }

    /// The workload's name (set by [`Workload::load`] from the file name).
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("workload")
    }

    /// Checks values that parse but make no sense.
    fn validate(&self, text: &str, file: &str) -> Result<(), WorkloadError> {
        let bad = |path: &[&str], message: String| WorkloadError::Invalid {
            file: file.to_string(),
            field: path.join("."),
            line: line_of(text, path),
            message,
        };
        let c = &self.cluster;
        if c.replicas == 0 || c.replicas > 15 {
            return Err(bad(
                &["cluster", "replicas"],
                format!("{} replicas: must be between 1 and 15", c.replicas),
            ));
        }
        if !(0.0..=1.0).contains(&c.fail_rate) {
            return Err(bad(
                &["cluster", "fail_rate"],
                format!("{} is not in [0, 1]", c.fail_rate),
            ));
        }
        if usize::from(c.base_client_port) + c.replicas > 65536 || c.base_client_port == 0 {
            return Err(bad(
                &["cluster", "base_client_port"],
                format!(
                    "port {} leaves no room for {} replicas",
                    c.base_client_port, c.replicas
                ),
            ));
        }
        if usize::from(c.base_paxos_port) + c.replicas > 65536 || c.base_paxos_port == 0 {
            return Err(bad(
                &["cluster", "base_paxos_port"],
                format!(
                    "port {} leaves no room for {} replicas",
                    c.base_paxos_port, c.replicas
                ),
            ));
        }
        let (cb, pb) = (
            usize::from(c.base_client_port),
            usize::from(c.base_paxos_port),
        );
        if cb < pb + c.replicas && pb < cb + c.replicas {
            return Err(bad(
                &["cluster", "base_paxos_port"],
                format!("Paxos ports {pb}.. overlap client ports {cb}..",),
            ));
        }
        if self.uses_network() {
            let (xb, xn) = (usize::from(c.base_proxy_port), c.replicas * c.replicas);
            if xb + xn > 65536 || xb == 0 {
                return Err(bad(
                    &["cluster", "base_proxy_port"],
                    format!(
                        "port {xb} leaves no room for the {xn} proxy ports of {} replicas",
                        c.replicas
                    ),
                ));
            }
            for (name, base) in [("client", cb), ("Paxos", pb)] {
                if xb < base + c.replicas && base < xb + xn {
                    return Err(bad(
                        &["cluster", "base_proxy_port"],
                        format!(
                            "proxy ports {xb}..{} overlap {name} ports {base}..{}",
                            xb + xn - 1,
                            base + c.replicas - 1
                        ),
                    ));
                }
            }
        }
        if c.host.trim().is_empty() {
            return Err(bad(&["cluster", "host"], "empty host".into()));
        }
        crate::remote::validate(self).map_err(|(field, message)| {
            let path: Vec<&str> = field.split('.').collect();
            bad(&path, message)
        })?;
        if self.duration.0.is_zero() {
            return Err(bad(&["duration"], "must be greater than 0".into()));
        }
        let cl = &self.clients;
        if cl.concurrency == 0 || cl.concurrency > 10_000 {
            return Err(bad(
                &["clients", "concurrency"],
                format!("{}: must be between 1 and 10000", cl.concurrency),
            ));
        }
        if let Some(r) = cl.rate {
            if !r.is_finite() || r < 0.0 {
                return Err(bad(&["clients", "rate"], format!("{r}: must be >= 0")));
            }
        }
        if cl.request_timeout.0.is_zero() {
            return Err(bad(
                &["clients", "request_timeout"],
                "must be greater than 0".into(),
            ));
        }
        let o = &self.operations;
        if o.keys == 0 {
            return Err(bad(&["operations", "keys"], "must be at least 1".into()));
        }
        if o.mix.total() == 0 {
            return Err(bad(
                &["operations", "mix"],
                "the weights add up to 0: give at least one operation a weight".into(),
            ));
        }
        if o.value_size < 8 || o.value_size > 1 << 20 {
            return Err(bad(
                &["operations", "value_size"],
                format!("{}: must be between 8 and 1048576", o.value_size),
            ));
        }
        if !o.zipf_exponent.is_finite() || o.zipf_exponent <= 0.0 {
            return Err(bad(
                &["operations", "zipf_exponent"],
                format!("{}: must be > 0", o.zipf_exponent),
            ));
        }
        for (i, f) in self.nemesis.iter().enumerate() {
            let idx = i.to_string();
            let at = |key: &'static str| -> Vec<&str> { vec!["nemesis", idx.as_str(), key] };
            if let Target::Node(n) = f.target {
                if n >= c.replicas {
                    return Err(bad(
                        &at("target"),
                        format!(
                            "node n{n} does not exist (replicas are n0..n{})",
                            c.replicas - 1
                        ),
                    ));
                }
            }
            if f.duration.0.is_zero() {
                return Err(bad(&at("duration"), "must be greater than 0".into()));
            }
            if let Some(iv) = f.interval {
                if iv.0 < f.duration.0 {
                    return Err(bad(
                        &at("interval"),
                        format!(
                            "{} is shorter than the fault's duration {}: faults of one entry must not overlap",
                            format_duration(iv.0),
                            format_duration(f.duration.0)
                        ),
                    ));
                }
            }
            let bad_at = |key: &str, message: String| bad(&["nemesis", idx.as_str(), key], message);
            self.validate_network(f, &bad_at)?;
            match (f.fault, f.fail_rate) {
                (FaultKind::FailRate, None) => {
                    return Err(bad(
                        &at("fault"),
                        "fault fail-rate needs a `fail_rate` value in [0, 1]".into(),
                    ))
                }
                (FaultKind::FailRate, Some(r)) if !(0.0..=1.0).contains(&r) => {
                    return Err(bad(&at("fail_rate"), format!("{r} is not in [0, 1]")))
                }
                (kind, Some(_)) if kind != FaultKind::FailRate => {
                    return Err(bad(
                        &at("fail_rate"),
                        "only a fail-rate fault takes a fail_rate".into(),
                    ))
                }
                _ => {}
            }
            if f.mode.is_some() && f.fault != FaultKind::Corrupt {
                return Err(bad(
                    &at("mode"),
                    "only a corrupt fault takes a mode (bitflip or truncate)".into(),
                ));
            }
            if f.start.0 >= self.duration.0 {
                return Err(bad(
                    &at("start"),
                    format!(
                        "{} is not before the end of the run ({})",
                        format_duration(f.start.0),
                        format_duration(self.duration.0)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether a fault acts on links: the cluster then runs behind link
    /// proxies ([`crate::net::Network`]).
    pub fn uses_network(&self) -> bool {
        self.nemesis.iter().any(|f| f.fault.is_network())
    }

    /// Checks the network fields of one nemesis entry: each belongs to one
    /// fault kind, and the partition's shape fits the cluster.
    fn validate_network(
        &self,
        f: &FaultSpec,
        bad: &dyn Fn(&str, String) -> WorkloadError,
    ) -> Result<(), WorkloadError> {
        let fields: [(&'static str, bool, FaultKind); 6] = [
            ("shape", f.shape.is_some(), FaultKind::Partition),
            ("groups", f.groups.is_some(), FaultKind::Partition),
            ("cut", f.cut.is_some(), FaultKind::Partition),
            ("latency", f.latency.is_some(), FaultKind::Delay),
            ("jitter", f.jitter.is_some(), FaultKind::Delay),
            ("bandwidth", f.bandwidth.is_some(), FaultKind::Slow),
        ];
        for (field, given, kind) in fields {
            if given && f.fault != kind {
                let kind = serde_yaml::to_string(&kind).unwrap_or_default();
                return Err(bad(
                    field,
                    format!("only a {} fault takes a {field}", kind.trim()),
                ));
            }
        }
        let n = self.cluster.replicas;
        if f.fault.is_network() && n < 2 {
            return Err(bad(
                "fault",
                format!("a network fault needs at least 2 replicas (the cluster has {n})"),
            ));
        }
        match f.fault {
            FaultKind::Partition => {
                if let Some(groups) = &f.groups {
                    if f.shape.is_some() {
                        return Err(bad(
                            "shape",
                            "give either a shape or groups, not both".into(),
                        ));
                    }
                    for g in groups.iter().flatten() {
                        if !matches!(g, Target::Node(_)) {
                            return Err(bad(
                                "groups",
                                format!("groups name nodes such as n0, not {g}"),
                            ));
                        }
                    }
                }
                let field = if f.groups.is_some() {
                    "groups"
                } else {
                    "shape"
                };
                f.partition_shape()
                    .check(n)
                    .map_err(|e| bad(field, e.to_string()))?;
            }
            FaultKind::Delay if f.latency.is_none() => {
                return Err(bad(
                    "fault",
                    "fault delay needs a `latency` (e.g. latency: 50ms)".into(),
                ))
            }
            FaultKind::Slow if f.bandwidth.is_none() => {
                return Err(bad(
                    "fault",
                    "fault slow needs a `bandwidth` (e.g. bandwidth: 100kB/s)".into(),
                ))
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether the replicas must run on lazyfs mounts (a `lose-unsynced`
    /// fault is scheduled).
    pub fn needs_lazyfs(&self) -> bool {
        self.nemesis
            .iter()
            .any(|f| f.fault == FaultKind::LoseUnsynced)
    }

    /// The workload as YAML (with the seed actually used filled in).
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_else(|e| format!("# cannot serialize: {e}\n"))
    }
}

/// Best-effort line (1-based) of a key path such as `["nemesis", "2",
/// "target"]` in YAML text: walks down by indentation, a numeric segment
/// selecting the n-th `- ` item of a sequence. Returns the line of the deepest
/// segment found (1 if none).
pub fn line_of(text: &str, path: &[&str]) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let is_blank = |l: &str| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    };
    // The block being searched: lines [from, to) whose indent is > parent.
    let (mut from, mut to) = (0usize, lines.len());
    let mut parent_indent: isize = -1;
    let mut found = 1usize;
    for seg in path {
        let mut hit = None;
        if let Ok(n) = seg.parse::<usize>() {
            // The n-th sequence item at the first item's indentation.
            let mut seen = 0usize;
            let mut item_indent = None;
            for (i, l) in lines.iter().enumerate().take(to).skip(from) {
                if is_blank(l) {
                    continue;
                }
                let t = l.trim_start();
                if t.starts_with("- ") || t == "-" {
                    let ind = indent(l);
                    if item_indent.is_none() {
                        item_indent = Some(ind);
                    }
                    if Some(ind) == item_indent {
                        if seen == n {
                            hit = Some((i, ind as isize));
                            break;
                        }
                        seen += 1;
                    }
                }
            }
        } else {
            for (i, l) in lines.iter().enumerate().take(to).skip(from) {
                if is_blank(l) {
                    continue;
                }
                let t = l.trim_start().trim_start_matches("- ");
                let ind = indent(l) as isize;
                if ind <= parent_indent {
                    continue;
                }
                if t.starts_with(&format!("{seg}:")) {
                    hit = Some((i, ind));
                    break;
                }
            }
        }
        let Some((i, ind)) = hit else { break };
        found = i + 1;
        // The new block: following lines indented deeper than this one
        // (a sequence item's own keys sit at the item indent + 2).
        parent_indent = ind;
        let mut end = i + 1;
        while end < to {
            let l = lines[end];
            if !is_blank(l)
                && (indent(l) as isize) <= ind
                && !(seg.parse::<usize>().is_err()
                    && l.trim_start().starts_with("- ")
                    && indent(l) as isize == ind)
            {
                break;
            }
            end += 1;
        }
        to = end;
        if seg.parse::<usize>().is_ok() {
            // Keys of this item may sit on the item's line itself.
            parent_indent = ind - 1;
            from = i;
        } else {
            from = i + 1;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_of_walks_nested_keys_and_items() {
        let y = "duration: 5s\ncluster:\n  replicas: 3\nnemesis:\n  - fault: pause\n    target: leader\n  - fault: kill\n    target: n7\n";
        assert_eq!(line_of(y, &["cluster", "replicas"]), 3);
        assert_eq!(line_of(y, &["nemesis", "1", "target"]), 8);
        assert_eq!(line_of(y, &["nemesis", "0", "fault"]), 5);
        assert_eq!(line_of(y, &["nemesis", "0", "target"]), 6);
    }
}
