//! The exec adapter of the database seam: any system, through command
//! templates and a JSON-lines client protocol (README, "Testing another
//! system: db: exec").
//!
//! The workload gives two command lines (`db: {exec: {start: [...],
//! client: [...]}}`) whose words may hold placeholders, filled in per node
//! ([`expand`]; an unknown one is an error when the workload is read):
//! `{id}` (0, 1...), `{name}` (n0...), `{dir}` (the node's data dir),
//! `{host}`, `{client_port}`, `{peer_port}`, `{client_addr}`, `{peer_addr}`,
//! and every node's `{client_ports}`, `{peer_ports}`, `{client_addrs}`,
//! `{peer_addrs}` (comma-separated).
//!
//! `start` runs one node (an OS process managed like paxoskv's servers:
//! paused, killed, restarted on its data dir). `client` runs one client
//! process per worker, bound to the worker's node: one op per line on its
//! stdin (`{"f":"put","key":"k1","value":"v3"}`), one result per line on its
//! stdout (`{"type":"ok"}`, `{"type":"ok","value":"v3"}` for a get,
//! `{"type":"fail","error":"..."}` when surely not applied, `"info"` when
//! unknown). A client that prints garbage, exits or does not answer in time
//! is killed and replaced by a fresh one; that op is `:info`, never `:ok`.
//! Its stderr goes to `exec-clients.log` in the run's dir.
//!
//! The system has no leader the harness knows of (`target: leader` finds
//! none) and no digest: it is checked by the final reads through every node.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use client::Op;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::time::Instant;

use super::{Api, BoxFuture, Completion, Db, DbClient, NodeStatus};
use crate::cluster::{spawn_child, unregister, Cluster, ClusterConfig};
use crate::generator::HistoryOp;
use crate::history::OpType;
use crate::workload::{ExecSpec, Workload};

/// The placeholders a template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "id",
    "name",
    "dir",
    "host",
    "client_port",
    "peer_port",
    "client_addr",
    "peer_addr",
    "client_ports",
    "peer_ports",
    "client_addrs",
    "peer_addrs",
];

/// Fills in the placeholders of one template word; `value` answers each
/// placeholder name. An unknown placeholder or an unclosed `{` is an error.
pub fn expand(word: &str, value: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = word;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!("`{word}`: unclosed `{{`"));
        };
        let name = &after[..close];
        match value(name) {
            Some(v) => out.push_str(&v),
            None => {
                return Err(format!(
                    "`{word}`: unknown placeholder {{{name}}} (known: {})",
                    PLACEHOLDERS.join(", ")
                ))
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks a template (for the workload parser): every placeholder known.
pub fn check_template(words: &[String]) -> Result<(), String> {
    if words.is_empty() {
        return Err("empty command line".into());
    }
    let known = |n: &str| PLACEHOLDERS.contains(&n).then(String::new);
    for w in words {
        expand(w, &known)?;
    }
    Ok(())
}

/// Where each node of an exec cluster runs: its host and data dir (local:
/// every node on `cluster.host`, dirs in the run's dir; remote: one host
/// each, dirs on the hosts).
#[derive(Debug, Clone)]
pub struct Placement {
    pub hosts: Vec<String>,
    pub dirs: Vec<String>,
    pub base_client_port: u16,
    pub base_paxos_port: u16,
}

impl Placement {
    /// Every node of `c` on its one host.
    pub fn local(c: &ClusterConfig) -> Placement {
        Placement {
            hosts: vec![c.host.clone(); c.replicas],
            dirs: (0..c.replicas)
                .map(|i| c.dir.join(format!("n{i}")).display().to_string())
                .collect(),
            base_client_port: c.base_client_port,
            base_paxos_port: c.base_paxos_port,
        }
    }

    fn addr(&self, i: usize, base: u16) -> String {
        format!("{}:{}", self.hosts[i], usize::from(base) + i)
    }
    pub fn client_addr(&self, i: usize) -> String {
        self.addr(i, self.base_client_port)
    }
    pub fn peer_addr(&self, i: usize) -> String {
        self.addr(i, self.base_paxos_port)
    }
}

/// The command line `template` for node `i` of the cluster `c`.
pub fn command_line(template: &[String], c: &ClusterConfig, i: usize) -> Result<Vec<String>> {
    command_line_at(template, &Placement::local(c), i)
}

/// The command line `template` for node `i` placed by `p`.
pub fn command_line_at(template: &[String], p: &Placement, i: usize) -> Result<Vec<String>> {
    let n = p.hosts.len();
    let all = |f: &dyn Fn(usize) -> String| (0..n).map(f).collect::<Vec<_>>().join(",");
    let port = |addr: String| addr.rsplit(':').next().unwrap_or_default().to_string();
    let value = |name: &str| -> Option<String> {
        Some(match name {
            "id" => i.to_string(),
            "name" => format!("n{i}"),
            "dir" => p.dirs[i].clone(),
            "host" => p.hosts[i].clone(),
            "client_port" => port(p.client_addr(i)),
            "peer_port" => port(p.peer_addr(i)),
            "client_addr" => p.client_addr(i),
            "peer_addr" => p.peer_addr(i),
            "client_ports" => all(&|r| port(p.client_addr(r))),
            "peer_ports" => all(&|r| port(p.peer_addr(r))),
            "client_addrs" => all(&|r| p.client_addr(r)),
            "peer_addrs" => all(&|r| p.peer_addr(r)),
            _ => return None,
        })
    };
    template
        .iter()
        .map(|w| expand(w, &value).map_err(anyhow::Error::msg))
        .collect()
}

/// The start program of `spec` (its first word), for the report. Both the
/// start and the client program must exist, as a path or on PATH: a clear
/// error before anything starts.
pub fn find_program(spec: &ExecSpec) -> Result<PathBuf> {
    find_executable("db.exec.client", &spec.client)?;
    find_executable("db.exec.start", &spec.start)
}

/// The program of command line `words` (`field` names it in the error): a
/// path if it has a `/`, else the first match on PATH.
fn find_executable(field: &str, words: &[String]) -> Result<PathBuf> {
    let Some(program) = words.first() else {
        bail!("{field}: empty command line");
    };
    if program.contains('/') {
        if Path::new(program).is_file() {
            return Ok(PathBuf::from(program));
        }
        bail!("{field}: {program}: no such file");
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| dir.join(program).is_file()) {
        return Ok(PathBuf::from(program));
    }
    bail!("{field}: cannot find `{program}` on PATH")
}

/// The nodes of workload `w`, laid out in `dir` (nothing started).
pub fn open(w: &Workload, spec: &ExecSpec, dir: &Path) -> Result<Db> {
    let c = &w.cluster;
    let mut config = ClusterConfig {
        server_bin: find_program(spec)?,
        replicas: c.replicas,
        host: c.host.clone(),
        base_client_port: c.base_client_port,
        base_paxos_port: c.base_paxos_port,
        fail_rate: 0.0,
        read_mode: c.read_mode,
        extra_flags: Vec::new(),
        dir: dir.to_path_buf(),
        command_lines: None,
    };
    let start = (0..c.replicas)
        .map(|i| command_line(&spec.start, &config, i))
        .collect::<Result<Vec<_>>>()?;
    let clients = (0..c.replicas)
        .map(|i| command_line(&spec.client, &config, i))
        .collect::<Result<Vec<_>>>()?;
    config.command_lines = Some(start);
    let cluster = Cluster::new(config)?;
    let api = ExecApi {
        addrs: cluster.client_addrs(),
        clients,
        client_log: dir.join("exec-clients.log"),
    };
    Ok(Db::new(Box::new(cluster), Arc::new(api)))
}

/// What the harness can ask a system it knows only by its commands.
pub struct ExecApi {
    addrs: Vec<String>,
    /// The client command line of each node.
    clients: Vec<Vec<String>>,
    client_log: PathBuf,
}

impl ExecApi {
    /// Nodes serving clients at `addrs`; `clients[i]` runs a client of node
    /// `i`; their stderr goes to `client_log`.
    pub fn new(addrs: Vec<String>, clients: Vec<Vec<String>>, client_log: PathBuf) -> ExecApi {
        ExecApi {
            addrs,
            clients,
            client_log,
        }
    }
}

impl Api for ExecApi {
    /// Ready when every node accepts connections on its client port.
    fn wait_ready(&self, timeout: Duration) -> BoxFuture<'_, Result<usize>> {
        Box::pin(async move {
            let deadline = Instant::now() + timeout;
            for (i, a) in self.addrs.iter().enumerate() {
                loop {
                    let c = tokio::time::timeout(
                        Duration::from_millis(500),
                        tokio::net::TcpStream::connect(a.as_str()),
                    );
                    if matches!(c.await, Ok(Ok(_))) {
                        break;
                    }
                    if Instant::now() >= deadline {
                        bail!("n{i} does not accept connections on {a} after {timeout:?}");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Ok(0)
        })
    }

    fn leader(&self, _up: Vec<bool>, _timeout: Duration) -> BoxFuture<'_, Option<usize>> {
        Box::pin(async { None })
    }

    fn client(&self, node: usize, _connect_timeout: Duration) -> Result<Box<dyn DbClient>> {
        Ok(Box::new(ExecClient {
            node,
            argv: self.clients[node].clone(),
            log: self.client_log.clone(),
            proc: None,
        }))
    }

    fn statuses(&self, _timeout: Duration) -> BoxFuture<'_, Vec<Option<NodeStatus>>> {
        let n = self.addrs.len();
        Box::pin(async move { vec![None; n] })
    }
}

/// One running client program.
struct ClientProc {
    child: Child,
    stdin: tokio::process::ChildStdin,
    stdout: BufReader<tokio::process::ChildStdout>,
}

impl Drop for ClientProc {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        let _ = self.child.kill();
        let _ = self.child.wait();
        unregister(pid);
    }
}

/// A worker's client program, restarted after it misbehaves.
pub struct ExecClient {
    /// The node it is bound to.
    node: usize,
    argv: Vec<String>,
    log: PathBuf,
    proc: Option<ClientProc>,
}

/// One result line of the client program.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultLine {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// The op as one line of JSON.
pub fn op_line(op: &Op) -> String {
    let v = match op {
        Op::Get { key } => serde_json::json!({"f": "get", "key": key}),
        Op::Put { key, value } => serde_json::json!({"f": "put", "key": key, "value": value}),
        Op::Delete { key } => serde_json::json!({"f": "delete", "key": key}),
        Op::Cas { key, expected, new } => {
            serde_json::json!({"f": "cas", "key": key, "expected": expected, "new": new})
        }
        Op::Append { key, value } => {
            serde_json::json!({"f": "append", "key": key, "value": value})
        }
    };
    format!("{v}\n")
}

/// The completion a result line stands for; Err: not a valid result.
fn parse_result(op: &Op, line: &str) -> Result<Completion, String> {
    let r: ResultLine = serde_json::from_str(line.trim()).map_err(|e| e.to_string())?;
    let kind = match r.kind.as_str() {
        "ok" => OpType::Ok,
        "fail" => OpType::Fail,
        "info" => OpType::Info,
        other => return Err(format!("unknown type {other:?}")),
    };
    Ok(match (kind, op) {
        (OpType::Ok, Op::Get { .. }) => Completion {
            kind,
            value: op.ok_value(r.value.clone()),
            error: None,
            observed: Some(r.value),
        },
        (OpType::Ok, _) => Completion {
            kind,
            value: op.invoke_value(),
            error: None,
            observed: None,
        },
        _ => Completion {
            kind,
            value: op.invoke_value(),
            error: Some(r.error.unwrap_or_else(|| "no error given".into())),
            observed: None,
        },
    })
}

impl ExecClient {
    fn spawn(&self) -> Result<ClientProc> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = spawn_child(cmd)
            .with_context(|| format!("cannot start the client program {}", self.argv[0]))?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = child.stdout.take().context("no stdout")?;
        Ok(ClientProc {
            stdin: tokio::process::ChildStdin::from_std(stdin)?,
            stdout: BufReader::new(tokio::process::ChildStdout::from_std(stdout)?),
            child,
        })
    }

    /// A line of the harness's own in the clients' log.
    fn note(&self, what: &str) {
        use std::io::Write as _;
        if let Ok(mut log) = OpenOptions::new().create(true).append(true).open(&self.log) {
            let _ = writeln!(log, "=== harness: {what}");
        }
    }

    async fn run(&mut self, op: &Op, timeout: Duration) -> Completion {
        let info = |error: String| Completion {
            kind: OpType::Info,
            value: op.invoke_value(),
            error: Some(error),
            observed: None,
        };
        if self.proc.is_none() {
            match self.spawn() {
                Ok(p) => self.proc = Some(p),
                // Nothing was sent.
                Err(e) => {
                    return Completion {
                        kind: OpType::Fail,
                        value: op.invoke_value(),
                        error: Some(format!("{e:#}")),
                        observed: None,
                    }
                }
            }
        }
        let p = self.proc.as_mut().expect("spawned");
        let exchange = async {
            p.stdin.write_all(op_line(op).as_bytes()).await?;
            p.stdin.flush().await?;
            let mut line = String::new();
            p.stdout.read_line(&mut line).await?;
            Ok::<_, std::io::Error>(line)
        };
        let outcome = match tokio::time::timeout(timeout, exchange).await {
            Err(_) => Err(format!("client program gave no result within {timeout:?}")),
            Ok(Err(e)) => Err(format!("client program: {e}")),
            Ok(Ok(line)) if line.is_empty() => Err("client program exited".into()),
            Ok(Ok(line)) => parse_result(op, &line)
                .map_err(|e| format!("client program printed garbage ({e}): {:?}", line.trim())),
        };
        match outcome {
            Ok(c) => c,
            Err(e) => {
                // Killed and replaced by a fresh one at the next op; said in
                // the clients' log too, beside what the program wrote.
                self.proc = None;
                self.note(&format!(
                    "client program of n{} replaced: {e} (op {})",
                    self.node,
                    op_line(op).trim()
                ));
                info(format!("{e}; client replaced"))
            }
        }
    }
}

impl DbClient for ExecClient {
    fn invoke<'a>(&'a mut self, op: &'a Op, timeout: Duration) -> BoxFuture<'a, Completion> {
        Box::pin(self.run(op, timeout))
    }

    /// After an `:info` the worker continues with a fresh client program.
    fn new_session(&mut self) {
        self.proc = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(n: &str) -> Option<String> {
        (n == "id").then(|| "7".into())
    }

    #[test]
    fn placeholders_are_filled_and_unknown_ones_named() {
        assert_eq!(expand("--id={id}/{id}", &known).unwrap(), "--id=7/7");
        let e = expand("{nope}", &known).unwrap_err();
        assert!(e.contains("unknown placeholder {nope}"), "{e}");
        assert!(expand("{id", &known).unwrap_err().contains("unclosed"));
        assert!(check_template(&["x".into(), "{peer_ports}".into()]).is_ok());
        assert!(check_template(&[]).is_err());
    }

    #[test]
    fn results_never_turn_garbage_into_ok() {
        let get = Op::Get { key: "k".into() };
        let c = parse_result(&get, r#"{"type":"ok","value":"v"}"#).unwrap();
        assert_eq!((c.kind, c.observed), (OpType::Ok, Some(Some("v".into()))));
        let c = parse_result(&get, r#"{"type":"ok"}"#).unwrap();
        assert_eq!(c.observed, Some(None));
        let c = parse_result(&get, r#"{"type":"fail","error":"x"}"#).unwrap();
        assert_eq!(c.kind, OpType::Fail);
        assert!(parse_result(&get, "OK").is_err());
        assert!(parse_result(&get, r#"{"type":"yes"}"#).is_err());
        assert!(parse_result(&get, r#"{"type":"ok","vlaue":"v"}"#).is_err());
    }

    #[tokio::test]
    async fn a_client_that_exits_or_hangs_gives_info_and_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let put = Op::Put {
            key: "k".into(),
            value: "v".into(),
        };
        for script in ["exit 0", "read l; echo garbage", "read l; sleep 30"] {
            let mut c = ExecClient {
                node: 0,
                argv: vec!["sh".into(), "-c".into(), script.into()],
                log: dir.path().join("log"),
                proc: None,
            };
            let done = c.invoke(&put, Duration::from_millis(500)).await;
            assert_eq!(done.kind, OpType::Info, "{script}: {:?}", done.error);
            assert!(c.proc.is_none(), "{script}: not replaced");
        }
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        assert_eq!(
            log.matches("client program of n0 replaced").count(),
            3,
            "{log}"
        );
        let mut ok = ExecClient {
            node: 0,
            argv: vec![
                "sh".into(),
                "-c".into(),
                r#"while read l; do echo '{"type":"ok"}'; done"#.into(),
            ],
            log: dir.path().join("log"),
            proc: None,
        };
        for _ in 0..3 {
            assert_eq!(
                ok.invoke(&put, Duration::from_secs(5)).await.kind,
                OpType::Ok
            );
        }
    }
}
