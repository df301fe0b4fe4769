//! Every history in `shared/histories/MANIFEST.tsv` gets its expected verdict.
//!
//! The histories are public test data (Jepsen's etcd runs, Porcupine's kv
//! runs) that nobody here wrote; they live beside the repository in
//! `../shared/histories` and are read at test time.

use std::path::PathBuf;

use harness::checker::{check_file, CheckOptions, ModelKind, Verdict};

/// `shared/histories` beside the repository: the first ancestor of the crate
/// holding it (a worktree may sit deeper than the main checkout).
fn histories_dir() -> PathBuf {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let found = crate_dir
        .ancestors()
        .map(|a| a.join("shared/histories"))
        .find(|d| d.join("MANIFEST.tsv").is_file());
    found.unwrap_or_else(|| {
        panic!(
            "reference histories not found: no shared/histories/MANIFEST.tsv beside any ancestor of {}",
            crate_dir.display()
        )
    })
}

struct Entry {
    file: String,
    model: ModelKind,
    ops: usize,
    linearizable: bool,
}

fn manifest() -> Vec<Entry> {
    let dir = histories_dir();
    let text = std::fs::read_to_string(dir.join("MANIFEST.tsv")).expect("read MANIFEST.tsv");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), 4, "MANIFEST.tsv line `{line}`");
            Entry {
                file: cols[0].to_string(),
                model: cols[1].parse().expect("model"),
                ops: cols[2].parse().expect("ops"),
                linearizable: cols[3] == "true",
            }
        })
        .collect()
}

#[test]
fn every_reference_history_gets_its_expected_verdict() {
    let dir = histories_dir();
    let entries = manifest();
    assert!(
        entries.len() >= 34,
        "manifest lists {} histories",
        entries.len()
    );
    let mut wrong = Vec::new();
    for entry in &entries {
        let options = CheckOptions {
            model: Some(entry.model),
            ..CheckOptions::default()
        };
        let (_, report) = check_file(dir.join(&entry.file), &options)
            .unwrap_or_else(|e| panic!("{}: {e}", entry.file));
        assert_eq!(report.ops, entry.ops, "{}: op count", entry.file);
        let expected = if entry.linearizable {
            Verdict::Linearizable
        } else {
            Verdict::NotLinearizable
        };
        if report.verdict() != expected {
            wrong.push(format!(
                "{}: got {}, expected {}",
                entry.file,
                report.verdict(),
                expected
            ));
        }
        if expected == Verdict::NotLinearizable {
            assert!(
                report.violations().next().is_some(),
                "{}: no violation report",
                entry.file
            );
        }
    }
    assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
}

#[test]
fn the_model_is_inferred_correctly_for_every_reference_history() {
    let dir = histories_dir();
    for entry in manifest() {
        let (_, report) = check_file(dir.join(&entry.file), &CheckOptions::default()).unwrap();
        assert!(report.model_inferred);
        assert_eq!(report.model, entry.model, "{}", entry.file);
        assert_eq!(
            report.verdict() == Verdict::Linearizable,
            entry.linearizable,
            "{}",
            entry.file
        );
    }
}

#[test]
fn reference_histories_round_trip_through_the_writer() {
    let dir = histories_dir();
    for entry in manifest() {
        let path = dir.join(&entry.file);
        let text = std::fs::read_to_string(&path).unwrap();
        let history = harness::history::History::parse(&text).unwrap();
        let written = history.to_edn_string();
        assert_eq!(
            harness::history::History::parse(&written).unwrap().ops,
            history.ops,
            "{}",
            entry.file
        );
        // The reference files are in the writer's own format, byte for byte.
        assert_eq!(written.trim_end(), text.trim_end(), "{}", entry.file);
    }
}
