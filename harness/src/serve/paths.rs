//! Request paths to store files, refusing anything outside the store.
//!
//! A request path is split on `/` and each segment percent-decoded; a
//! segment that is empty, `.` or `..`, or that decodes to something holding
//! `/`, `\` or NUL, or to invalid UTF-8, refuses the whole path (so
//! `%2e%2e`, `..%2f` and `//etc` are refused like `../`). What is left is
//! joined to the store's root and canonicalized: a path whose canonical form
//! is not inside the root's (a symlink pointing out) is refused too.

use std::path::{Path, PathBuf};

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The decoded segments of `raw` (a request path without its query, still
/// percent-encoded, starting with `/`), or `None` if any is refused. One
/// trailing `/` is ignored; `/` alone has no segments.
pub fn segments(raw: &str) -> Option<Vec<String>> {
    let rest = raw.strip_prefix('/')?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Some(Vec::new());
    }
    rest.split('/').map(segment).collect()
}

fn segment(raw: &str) -> Option<String> {
    let s = percent_decode_str(raw).decode_utf8().ok()?;
    let refused = s.is_empty() || s == "." || s == ".." || s.contains(['/', '\\', '\0']);
    (!refused).then(|| s.into_owned())
}

/// `root/segs...` if it exists and is inside `root` once every symlink is
/// resolved.
pub fn inside(root: &Path, segs: &[String]) -> Option<PathBuf> {
    let root = std::fs::canonicalize(root).ok()?;
    let mut path = root.clone();
    for s in segs {
        path.push(s);
    }
    let real = std::fs::canonicalize(&path).ok()?;
    real.starts_with(&root).then_some(real)
}

/// Characters a path segment or query value keeps as they are.
const KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `s` percent-encoded for use as one path segment or query value.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, KEEP).to_string()
}

/// The value of `name` in the query string `query` (`a=1&b=x+y`), decoded;
/// `None` if absent or empty.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = v.replace('+', " ");
        let v = percent_decode_str(&v).decode_utf8_lossy().into_owned();
        (k == name && !v.is_empty()).then_some(v)
    })
}

/// The `Content-Type` of a store file, by its extension.
pub fn content_type(file: &str) -> &'static str {
    match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("txt" | "log" | "edn" | "yaml" | "yml") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_in_any_spelling_is_refused() {
        for raw in [
            "/files/../etc/passwd",
            "/files/%2e%2e/etc",
            "/files/%2E%2E/etc",
            "/files/a/..%2fb",
            "/files/a%2f..%2f..%2fetc",
            "/files//etc/passwd",
            "/files/./x",
            "/files/a%5c..",
            "/files/a%00",
            "/files/%ff",
            "files/x",
        ] {
            assert_eq!(segments(raw), None, "{raw}");
        }
        assert_eq!(
            segments("/files/smoke/20261125T130501.123Z/n0.log"),
            Some(vec![
                "files".into(),
                "smoke".into(),
                "20261125T130501.123Z".into(),
                "n0.log".into()
            ])
        );
        assert_eq!(
            segments("/run/a%20b/"),
            Some(vec!["run".into(), "a b".into()])
        );
        assert_eq!(segments("/"), Some(vec![]));
    }

    #[test]
    fn symlinks_out_of_the_root_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("store");
        std::fs::create_dir_all(root.join("w/r")).unwrap();
        std::fs::write(root.join("w/r/a.txt"), "a").unwrap();
        std::fs::write(tmp.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret"), root.join("w/r/out")).unwrap();
        std::os::unix::fs::symlink("r", root.join("w/latest")).unwrap();
        let segs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(inside(&root, &segs(&["w", "r", "a.txt"])).is_some());
        assert!(inside(&root, &segs(&["w", "latest", "a.txt"])).is_some());
        assert_eq!(inside(&root, &segs(&["w", "r", "out"])), None);
        assert_eq!(inside(&root, &segs(&["w", "r", "nope"])), None);
    }

    #[test]
    fn queries_and_encoding() {
        assert_eq!(
            query_param("verdict=anomaly&workload=stale+reads", "workload").as_deref(),
            Some("stale reads")
        );
        assert_eq!(query_param("verdict=&x=1", "verdict"), None);
        assert_eq!(query_param("", "verdict"), None);
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(encode("20261125T130501.123Z"), "20261125T130501.123Z");
        assert_eq!(content_type("timeline-k0.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("latency.svg"), "image/svg+xml");
        assert_eq!(content_type("n0.log"), "text/plain; charset=utf-8");
        assert_eq!(content_type("data"), "application/octet-stream");
    }
}
