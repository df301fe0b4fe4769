//! `harness serve`: a local, read-only web page over the store.
//!
//! - `/`: every run of the store ([`crate::store::list_runs`]), newest first,
//!   with its workload, start time, verdict, ops, throughput and faults;
//!   `?verdict=anomaly&workload=stale-reads` filters it ([`pages::Filter`]).
//!   Half-written or foreign runs are listed as incomplete with what is
//!   missing.
//! - `/run/<workload>/<run>`: that run's verdict and reasons, the invalid keys
//!   with their explanation and a link to their timeline, the summary, the
//!   plots and a link to every file (results.json, history.edn, node logs).
//! - `/files/<workload>/<run>/<file>`: one file of a run dir, as it is, with
//!   the content type of its extension.
//!
//! Anything else, and any path leading outside the store (see [`paths`]), is
//! 404. Only `GET` and `HEAD` are answered; nothing is ever written.

pub mod pages;
pub mod paths;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::net::TcpListener;

/// Why `harness serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the store {0} is not a directory (run a workload first: `harness run WORKLOAD.yaml --store {0}`)")]
    NoStore(PathBuf),
    #[error("cannot listen on {0}: the port is in use (another `harness serve`?); choose another with --port")]
    PortInUse(SocketAddr),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("serving failed: {0}")]
    Serve(std::io::Error),
}

/// Opens the listening socket of `harness serve` on `addr`, after checking
/// that `store` is a directory.
pub async fn bind(store: &Path, addr: SocketAddr) -> Result<TcpListener, ServeError> {
    if !store.is_dir() {
        return Err(ServeError::NoStore(store.to_path_buf()));
    }
    TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            ServeError::PortInUse(addr)
        } else {
            ServeError::Listen(addr, e)
        }
    })
}

/// Serves `store` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    store: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    axum::serve(listener, router(store))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServeError::Serve)
}

/// The whole site: one handler that routes by path.
pub fn router(store: PathBuf) -> Router {
    Router::new().fallback(handle).with_state(Arc::new(store))
}

async fn handle(State(store): State<Arc<PathBuf>>, method: Method, uri: Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            "read-only: GET and HEAD only\n",
        )
            .into_response();
    }
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    tokio::task::spawn_blocking(move || respond(&store, &path, &query))
        .await
        .unwrap_or_else(|_| (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response())
}

/// The answer to `GET path?query` over `store` (blocking: reads files).
fn respond(store: &Path, path: &str, query: &str) -> Response {
    let not_found = || html(StatusCode::NOT_FOUND, pages::not_found(path));
    let Some(segs) = paths::segments(path) else {
        return not_found();
    };
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match segs.as_slice() {
        [] => match crate::store::list_runs(store) {
            Ok(runs) => html(
                StatusCode::OK,
                pages::list(
                    &store.display().to_string(),
                    &runs,
                    &pages::Filter::from_query(query),
                ),
            ),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response(),
        },
        ["run", workload, name] => {
            let owned = [workload.to_string(), name.to_string()];
            match paths::inside(store, &owned) {
                Some(dir) if dir.is_dir() => html(
                    StatusCode::OK,
                    pages::run_page(&crate::store::read_run(store, workload, name)),
                ),
                _ => not_found(),
            }
        }
        ["files", workload, name, file] => {
            let owned = [workload.to_string(), name.to_string(), file.to_string()];
            let Some(real) = paths::inside(store, &owned).filter(|p| p.is_file()) else {
                return not_found();
            };
            match std::fs::read(&real) {
                Ok(bytes) => (
                    StatusCode::OK,
                    [
                        (header::CONTENT_TYPE, paths::content_type(file)),
                        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                    ],
                    Body::from(bytes),
                )
                    .into_response(),
                Err(_) => not_found(),
            }
        }
        _ => not_found(),
    }
}

fn html(status: StatusCode, page: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const RESULTS_VALID: &str = r#"{"workload":"smoke","seed":3,"verdict":"valid","exit_code":0,
      "reasons":[],"started_at":"20261125T130501.123Z","history_ops":40,
      "stats":{"duration_s":2.0,"overall":{"ops":20,"ok":18,"fail":1,"info":1,"throughput":9.0,
        "latency_ok":{"count":18,"mean_ms":1.0,"p50_ms":1.0,"p90_ms":1.0,"p99_ms":1.0,"p999_ms":1.0,"max_ms":1.0},
        "latency_all":{"count":19,"mean_ms":1.0,"p50_ms":1.0,"p90_ms":1.0,"p99_ms":1.0,"p999_ms":1.0,"max_ms":1.0}},
        "by_f":{}},
      "faults":[{"fault":"pause","nodes":["n0"],"start":1,"end":2},{"fault":"pause","nodes":["n1"],"start":3,"end":4}]}"#;
    const RESULTS_ANOMALY: &str = r#"{"workload":"stale","verdict":"anomaly",
      "reasons":["key k0 is not linearizable"],
      "linearizability":{"verdict":"not-linearizable","keys_checked":2,"elapsed_ms":5,
        "unknown_keys":[],"error":null,"report":null,
        "invalid":[{"key":"k0","anomaly":"stale read","why":"read <missed> w1","explanation":"",
                    "timeline":"timeline-k0.html"}]}}"#;

    /// A store with a complete run, a half-written one, one with broken
    /// JSON, an anomaly whose timeline and a plot are missing, and foreign
    /// files, links and dirs around them.
    fn hand_made_store() -> tempfile::TempDir {
        let tmp = tempfile::Builder::new()
            .prefix("harness-serve-test-")
            .tempdir()
            .unwrap();
        let root = tmp.path().join("store");
        let run = |w: &str, r: &str, files: &[(&str, &str)]| {
            let d = root.join(w).join(r);
            std::fs::create_dir_all(&d).unwrap();
            for (f, text) in files {
                std::fs::write(d.join(f), text).unwrap();
            }
            d
        };
        let basics = [
            ("workload.yaml", "not: a workload"),
            ("history.edn", "{:type :invoke}\n"),
            ("summary.txt", "== smoke <summary>\n"),
        ];
        let ok = run(
            "smoke",
            "20261125T130501.123Z",
            &[
                basics[0],
                basics[1],
                basics[2],
                ("results.json", RESULTS_VALID),
                ("latency.svg", "<svg/>"),
                ("rate.svg", "<svg/>"),
                ("n0.log", "started\n"),
            ],
        );
        std::fs::create_dir_all(ok.join("n0")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", ok.join("passwd")).unwrap();
        run("smoke", "20261125T120000.000Z", &[basics[1]]);
        run(
            "stale",
            "20261126T000000.000Z",
            &[
                basics[0],
                basics[1],
                basics[2],
                ("results.json", "{\"verdict\": "),
            ],
        );
        run(
            "stale",
            "20261127T000000.000Z",
            &[
                basics[0],
                basics[1],
                basics[2],
                ("results.json", RESULTS_ANOMALY),
                ("latency.svg", "<svg/>"),
            ],
        );
        std::os::unix::fs::symlink("smoke/20261125T130501.123Z", root.join("latest")).unwrap();
        std::os::unix::fs::symlink("20261125T130501.123Z", root.join("smoke/latest")).unwrap();
        std::fs::write(root.join("README"), "not a workload dir").unwrap();
        std::fs::write(root.join("smoke/notes.txt"), "not a run dir").unwrap();
        std::fs::create_dir_all(root.join("foreign/zzz-not-a-run")).unwrap();
        std::fs::write(tmp.path().join("secret.txt"), "outside").unwrap();
        tmp
    }

    #[test]
    fn the_listing_marks_incomplete_runs_with_what_is_missing() {
        let tmp = hand_made_store();
        let runs = crate::store::list_runs(&tmp.path().join("store")).unwrap();
        let names: Vec<(&str, &str, &str)> = runs
            .iter()
            .map(|r| (r.workload.as_str(), r.name.as_str(), r.verdict_name()))
            .collect();
        assert_eq!(
            names,
            [
                ("stale", "20261127T000000.000Z", "anomaly"),
                ("stale", "20261126T000000.000Z", "incomplete"),
                ("smoke", "20261125T130501.123Z", "valid"),
                ("smoke", "20261125T120000.000Z", "incomplete"),
                ("foreign", "zzz-not-a-run", "incomplete"),
            ]
        );
        assert!(runs[2].is_complete(), "{:?}", runs[2].problems);
        assert_eq!(runs[2].results.as_ref().unwrap().faults.len(), 2);
        assert_eq!(runs[0].problems, ["no rate.svg", "no timeline-k0.html"]);
        assert_eq!(runs[1].problems.len(), 1);
        assert!(
            runs[1].problems[0].starts_with("results.json: EOF"),
            "{:?}",
            runs[1].problems
        );
        assert_eq!(
            runs[3].problems,
            ["no workload.yaml", "no results.json", "no summary.txt"]
        );
        assert!(
            !runs[2].files.contains(&"n0".to_string()),
            "data dirs are not files"
        );
        assert!(crate::store::list_runs(&tmp.path().join("nope")).is_err());
    }

    /// `GET raw` (sent as it is, not normalized) from `addr`: status, the
    /// Content-Type and the body.
    async fn get(addr: SocketAddr, raw: &str) -> (u16, String, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {raw} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let ctype = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-type: ")
                    .map(String::from)
            })
            .unwrap_or_default();
        (status, ctype, body.to_string())
    }

    #[tokio::test]
    async fn serves_the_store_and_nothing_outside_it() {
        let tmp = hand_made_store();
        let store = tmp.path().join("store");
        let listener = bind(&store, "127.0.0.1:31100".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(serve(listener, store, stop.clone().cancelled_owned()));

        let (code, ctype, body) = get(addr, "/").await;
        assert_eq!((code, ctype.as_str()), (200, "text/html; charset=utf-8"));
        assert_eq!(body.matches("<tr class=\"run\"").count(), 5);
        assert!(body.contains("incomplete: no workload.yaml, no results.json, no summary.txt"));
        assert!(body.contains("pause ×2") && body.contains(">9.0<"));
        let newest = body.find("20261127T000000.000Z").unwrap();
        assert!(
            newest < body.find("20261125T130501.123Z").unwrap(),
            "newest first"
        );

        let (_, _, body) = get(addr, "/?verdict=anomaly").await;
        assert_eq!(body.matches("<tr class=\"run\"").count(), 1);
        let (_, _, body) = get(addr, "/?workload=smoke&verdict=").await;
        assert_eq!(body.matches("<tr class=\"run\"").count(), 2);
        let (_, _, body) = get(addr, "/?verdict=incomplete&workload=stale").await;
        assert_eq!(body.matches("<tr class=\"run\"").count(), 1);

        let (code, _, body) = get(addr, "/run/smoke/20261125T130501.123Z/").await;
        assert_eq!(code, 200);
        assert!(body.contains("== smoke &lt;summary&gt;"), "escaped summary");
        assert!(body.contains(r#"<img src="/files/smoke/20261125T130501.123Z/latency.svg""#));
        assert!(body.contains(r#"href="/files/smoke/20261125T130501.123Z/n0.log""#));
        let (code, _, body) = get(addr, "/run/stale/20261127T000000.000Z").await;
        assert_eq!(code, 200);
        assert!(body.contains("stale read: read &lt;missed&gt; w1"));
        assert!(body.contains("<li>no timeline-k0.html</li>"));
        assert!(
            !body.contains("class=\"timeline\""),
            "no link to a missing timeline"
        );
        let (code, _, _) = get(addr, "/run/stale/20261126T000000.000Z").await;
        assert_eq!(code, 200, "a run with broken JSON has a page");

        for (file, want) in [
            ("results.json", "application/json"),
            ("latency.svg", "image/svg+xml"),
            ("n0.log", "text/plain; charset=utf-8"),
            ("history.edn", "text/plain; charset=utf-8"),
        ] {
            let (code, ctype, _) =
                get(addr, &format!("/files/smoke/20261125T130501.123Z/{file}")).await;
            assert_eq!((code, ctype.as_str()), (200, want), "{file}");
        }
        let (_, _, body) = get(addr, "/files/latest/20261125T130501.123Z/n0.log").await;
        assert!(!body.contains("started"), "no such workload");
        for raw in [
            "/files/../secret.txt",
            "/files/smoke/../../secret.txt",
            "/files/%2e%2e/store/secret.txt",
            "/files/smoke/20261125T130501.123Z/..%2f..%2f..%2fsecret.txt",
            "/files/smoke/20261125T130501.123Z/passwd",
            "/files/smoke/20261125T130501.123Z/n0",
            "/files//etc/passwd",
            "/run/../store",
            "/run/smoke/..",
            "/run/smoke/nope",
            "/files/smoke/20261125T130501.123Z/nope.txt",
            "/etc/passwd",
            "/store/smoke",
        ] {
            let (code, _, body) = get(addr, raw).await;
            assert_eq!(code, 404, "{raw}");
            assert!(
                !body.contains("outside") && !body.contains("root:"),
                "{raw}"
            );
        }
        stop.cancel();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_port_in_use_and_a_missing_store_are_clear_errors() {
        let tmp = hand_made_store();
        let store = tmp.path().join("store");
        let addr: SocketAddr = "127.0.0.1:31101".parse().unwrap();
        let _first = bind(&store, addr).await.unwrap();
        let e = bind(&store, addr).await.unwrap_err();
        assert!(matches!(e, ServeError::PortInUse(_)));
        assert_eq!(
            e.to_string(),
            "cannot listen on 127.0.0.1:31101: the port is in use (another `harness serve`?); choose another with --port"
        );
        let e = bind(&tmp.path().join("nope"), addr).await.unwrap_err();
        assert!(e.to_string().contains("is not a directory"), "{e}");
    }
}
