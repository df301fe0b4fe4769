//! Small hand-made histories, one per rule of Jepsen's semantics and of the
//! models. Each reads as a little story: `p0 w1 ok` style comments say what
//! happens in real time, top to bottom.

use std::time::Duration;

use harness::checker::{check, Budget, CheckError, CheckOptions, ModelKind, Verdict};
use harness::history::History;

/// Builds a history from compact lines `PROCESS TYPE F VALUE`, e.g.
/// `0 invoke write 1`, `1 ok read 1`, `nemesis info start-pause nil`.
fn history(spec: &str) -> History {
    let mut text = String::new();
    for line in spec
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let mut parts = line.splitn(4, ' ');
        let p = parts.next().unwrap();
        let t = parts.next().unwrap();
        let f = parts.next().unwrap();
        let v = parts.next().unwrap_or("nil");
        let process = if p.parse::<i64>().is_ok() {
            p.to_string()
        } else {
            format!(":{p}")
        };
        text.push_str(&format!(
            "{{:process {process}, :type :{t}, :f :{f}, :value {v}}}\n"
        ));
    }
    History::parse(&text).unwrap()
}

fn verdict(model: ModelKind, spec: &str) -> Verdict {
    let options = CheckOptions {
        model: Some(model),
        ..CheckOptions::default()
    };
    check(&history(spec), &options).unwrap().verdict()
}

fn register(spec: &str) -> Verdict {
    verdict(ModelKind::CasRegister, spec)
}

fn kv(spec: &str) -> Verdict {
    verdict(ModelKind::Kv, spec)
}

use Verdict::{Linearizable as LIN, NotLinearizable as NOT};

#[test]
fn an_empty_history_is_linearizable() {
    assert_eq!(register(""), LIN);
}

#[test]
fn the_register_starts_nil() {
    assert_eq!(register("0 invoke read nil\n0 ok read nil"), LIN);
    assert_eq!(register("0 invoke read nil\n0 ok read 1"), NOT);
}

#[test]
fn a_read_after_a_completed_write_sees_it() {
    let spec = "0 invoke write 1\n0 ok write 1\n1 invoke read nil\n1 ok read {}";
    assert_eq!(register(&spec.replace("{}", "1")), LIN);
    assert_eq!(register(&spec.replace("{}", "nil")), NOT);
}

#[test]
fn a_read_concurrent_with_a_write_may_see_either_value() {
    let spec = "0 invoke write 1\n1 invoke read nil\n1 ok read {}\n0 ok write 1";
    assert_eq!(register(&spec.replace("{}", "1")), LIN);
    assert_eq!(register(&spec.replace("{}", "nil")), LIN);
    assert_eq!(register(&spec.replace("{}", "2")), NOT);
}

#[test]
fn a_stale_read_is_caught() {
    assert_eq!(
        register(
            "0 invoke write 1\n0 ok write 1\n0 invoke write 2\n0 ok write 2
             1 invoke read nil\n1 ok read 1"
        ),
        NOT
    );
}

#[test]
fn reads_must_agree_on_the_order_of_concurrent_writes() {
    // Both writes overlap; p2 sees 1 then 2, p3 sees 2 then 1: impossible.
    assert_eq!(
        register(
            "0 invoke write 1\n1 invoke write 2
             2 invoke read nil\n2 ok read 1\n2 invoke read nil\n2 ok read 2
             3 invoke read nil\n3 ok read 2\n3 invoke read nil\n3 ok read 1
             0 ok write 1\n1 ok write 2"
        ),
        NOT
    );
}

#[test]
fn a_failed_write_did_not_take_effect() {
    let spec = "0 invoke write 1\n0 ok write 1\n1 invoke write 2\n1 fail write 2
                2 invoke read nil\n2 ok read {}";
    assert_eq!(register(&spec.replace("{}", "1")), LIN);
    assert_eq!(register(&spec.replace("{}", "2")), NOT);
}

#[test]
fn a_failed_read_constrains_nothing() {
    assert_eq!(register("0 invoke read nil\n0 fail read 7"), LIN);
}

#[test]
fn an_info_write_may_take_effect_later_or_never() {
    // p1's write times out; later reads may see it...
    let later = "1 invoke write 2\n1 info write 2
                 0 invoke read nil\n0 ok read {a}\n0 invoke read nil\n0 ok read {b}";
    let with = |a: &str, b: &str| later.replace("{a}", a).replace("{b}", b);
    assert_eq!(register(&with("2", "2")), LIN); // took effect early
    assert_eq!(register(&with("nil", "2")), LIN); // took effect between the reads
    assert_eq!(register(&with("nil", "nil")), LIN); // never took effect
                                                    // ...but once seen it stays (nobody else writes):
    assert_eq!(register(&with("2", "nil")), NOT);
}

#[test]
fn an_info_write_cannot_take_effect_before_its_invocation() {
    assert_eq!(
        register("0 invoke read nil\n0 ok read 2\n1 invoke write 2\n1 info write 2"),
        NOT
    );
}

#[test]
fn an_invoke_without_completion_counts_as_info() {
    assert_eq!(
        register("1 invoke write 2\n0 invoke read nil\n0 ok read 2"),
        LIN
    );
    assert_eq!(
        register("1 invoke write 2\n0 invoke read nil\n0 ok read nil"),
        LIN
    );
    assert_eq!(
        register("0 invoke read nil\n0 ok read 2\n1 invoke write 2"),
        NOT
    );
}

#[test]
fn an_info_read_observed_nothing_and_is_dropped() {
    // Even with an impossible value on the :info completion.
    assert_eq!(register("0 invoke read nil\n0 info read 99"), LIN);
}

#[test]
fn an_info_cas_is_optional() {
    // The cas [1 2] can never apply (the register is never 1): fine, it did not happen.
    assert_eq!(
        register("0 invoke cas [1 2]\n0 info cas [1 2]\n1 invoke read nil\n1 ok read nil"),
        LIN
    );
    // It may also have happened, late:
    assert_eq!(
        register(
            "0 invoke write 1\n0 ok write 1\n1 invoke cas [1 2]\n1 info cas [1 2]
             2 invoke read nil\n2 ok read 1\n2 invoke read nil\n2 ok read 2"
        ),
        LIN
    );
}

#[test]
fn several_info_writes_interleave_freely() {
    assert_eq!(
        register(
            "1 invoke write 1\n1 info write 1\n2 invoke write 2\n2 info write 2
             0 invoke read nil\n0 ok read 2\n0 invoke read nil\n0 ok read 1\n0 invoke read nil\n0 ok read 2"
        ),
        NOT, // 2, then 1, then 2 again needs a third write
    );
    assert_eq!(
        register(
            "1 invoke write 1\n1 info write 1\n2 invoke write 2\n2 info write 2
             0 invoke read nil\n0 ok read 2\n0 invoke read nil\n0 ok read 1"
        ),
        LIN
    );
}

#[test]
fn cas_applies_only_on_a_match() {
    assert_eq!(
        register("0 invoke cas [nil 1]\n0 ok cas [nil 1]\n0 invoke read nil\n0 ok read 1"),
        LIN
    );
    assert_eq!(register("0 invoke cas [3 1]\n0 ok cas [3 1]"), NOT);
    assert_eq!(
        register("0 invoke write 3\n0 ok write 3\n0 invoke cas [3 1]\n0 fail cas [3 1]\n0 invoke read nil\n0 ok read 3"),
        LIN
    );
}

#[test]
fn nemesis_ops_are_not_client_ops() {
    assert_eq!(
        register(
            "nemesis info start-pause {\"n1\" :paused}\n0 invoke write 1\n0 ok write 1
             nemesis info stop-pause nil\n0 invoke read nil\n0 ok read 1"
        ),
        LIN
    );
}

#[test]
fn kv_a_missing_key_reads_nil() {
    assert_eq!(kv("0 invoke get [\"a\" nil]\n0 ok get [\"a\" nil]"), LIN);
    assert_eq!(kv("0 invoke put [\"b\" 1]\n0 ok put [\"b\" 1]\n0 invoke get [\"a\" nil]\n0 ok get [\"a\" nil]"), LIN);
    assert_eq!(kv("0 invoke get [\"a\" nil]\n0 ok get [\"a\" 1]"), NOT);
}

#[test]
fn kv_keys_are_independent() {
    // Reads of "a" and "b" are each fine on their own key; "a" sees "b"'s value: not.
    let spec =
        "0 invoke put [\"a\" 1]\n0 ok put [\"a\" 1]\n1 invoke put [\"b\" 2]\n1 ok put [\"b\" 2]
                2 invoke read [\"a\" nil]\n2 ok read [\"a\" {}]";
    assert_eq!(kv(&spec.replace("{}", "1")), LIN);
    assert_eq!(kv(&spec.replace("{}", "2")), NOT);
}

#[test]
fn kv_cas_on_a_missing_key() {
    assert_eq!(
        kv("0 invoke cas [\"a\" [1 2]]\n0 ok cas [\"a\" [1 2]]"),
        NOT
    );
    assert_eq!(
        kv("0 invoke cas [\"a\" [1 2]]\n0 fail cas [\"a\" [1 2]]"),
        LIN
    );
    assert_eq!(
        kv("0 invoke cas [\"a\" [nil 2]]\n0 ok cas [\"a\" [nil 2]]\n0 invoke get [\"a\" nil]\n0 ok get [\"a\" 2]"),
        LIN
    );
}

#[test]
fn kv_append_creates_and_concatenates_in_order() {
    let seq = "0 invoke append [\"a\" \"x\"]\n0 ok append [\"a\" \"x\"]
               0 invoke append [\"a\" \"y\"]\n0 ok append [\"a\" \"y\"]
               1 invoke get [\"a\" nil]\n1 ok get [\"a\" {}]";
    assert_eq!(kv(&seq.replace("{}", "\"xy\"")), LIN);
    assert_eq!(kv(&seq.replace("{}", "\"yx\"")), NOT);
    assert_eq!(kv(&seq.replace("{}", "\"x\"")), NOT);
    // Concurrent appends: either order.
    let conc = "0 invoke append [\"a\" \"x\"]\n2 invoke append [\"a\" \"y\"]
                0 ok append [\"a\" \"x\"]\n2 ok append [\"a\" \"y\"]
                1 invoke get [\"a\" nil]\n1 ok get [\"a\" {}]";
    assert_eq!(kv(&conc.replace("{}", "\"yx\"")), LIN);
    assert_eq!(kv(&conc.replace("{}", "\"xy\"")), LIN);
    assert_eq!(kv(&conc.replace("{}", "\"y\"")), NOT);
}

#[test]
fn kv_append_to_a_vector_pushes() {
    assert_eq!(
        kv("0 invoke append [\"l\" 1]\n0 ok append [\"l\" 1]\n0 invoke append [\"l\" 2]\n0 ok append [\"l\" 2]
            0 invoke read [\"l\" nil]\n0 ok read [\"l\" [1 2]]"),
        LIN
    );
}

#[test]
fn kv_delete_removes_the_key() {
    let spec =
        "0 invoke put [\"a\" 1]\n0 ok put [\"a\" 1]\n0 invoke delete [\"a\"]\n0 ok delete [\"a\"]
                1 invoke get [\"a\" nil]\n1 ok get [\"a\" {}]";
    assert_eq!(kv(&spec.replace("{}", "nil")), LIN);
    assert_eq!(kv(&spec.replace("{}", "1")), NOT);
}

#[test]
fn a_violation_names_the_key_the_op_and_the_prefix() {
    let h = history(
        "0 invoke put [\"a\" 1]\n0 ok put [\"a\" 1]
         0 invoke put [\"b\" 1]\n0 ok put [\"b\" 1]\n0 invoke put [\"b\" 2]\n0 ok put [\"b\" 2]
         1 invoke get [\"b\" nil]\n1 ok get [\"b\" 1]",
    );
    let report = check(&h, &CheckOptions::default()).unwrap();
    assert_eq!(report.model, ModelKind::Kv);
    assert_eq!(report.keys.len(), 2);
    let violations: Vec<_> = report.violations().collect();
    assert_eq!(violations.len(), 1);
    let v = violations[0];
    assert_eq!(v.key, Some("b".into()));
    assert_eq!((v.op.process, v.op.f.as_str(), v.op.invoke), (1, "get", 6));
    assert_eq!(v.prefix.len(), 2, "put 1, put 2");
    assert_eq!(v.state, "2");
    let text = v.render_text(&h);
    assert!(
        text.contains("key \"b\"") && text.contains("lines 7..8"),
        "{text}"
    );
    let html = harness::report::timeline::render(&h, v);
    assert!(html.contains("<svg"));
    // Self-contained: the only URL is the SVG namespace name.
    assert!(
        !html
            .replace("http://www.w3.org/2000/svg", "")
            .contains("http"),
        "{html}"
    );
    assert!(!html.contains("<script src") && !html.contains("<link"));
    assert!(html.contains("CANNOT BE LINEARIZED"));
    let json = report.to_json();
    assert_eq!(json["verdict"], "not-linearizable");
    assert_eq!(json["keys"][1]["violation"]["key"], "\"b\"");
    assert_eq!(json["keys"][1]["violation"]["state"], "2");
}

#[test]
fn the_budget_turns_a_long_search_into_unknown() {
    // 20 concurrent writes, then a read of a value none wrote: every subset
    // of the writes is a state to refute (2^20), far beyond 1000.
    let mut spec = String::new();
    for p in 0..20 {
        spec.push_str(&format!("{p} invoke write {p}\n"));
    }
    for p in 0..20 {
        spec.push_str(&format!("{p} ok write {p}\n"));
    }
    spec.push_str("100 invoke read nil\n100 ok read 1000\n");
    let options = CheckOptions {
        model: Some(ModelKind::CasRegister),
        budget: Budget {
            max_states: 1000,
            time_limit: Some(Duration::from_secs(5)),
            ..Budget::default()
        },
        // The unique-values check would see at once that nobody wrote 1000.
        fast_paths: false,
        ..CheckOptions::default()
    };
    let report = check(&history(&spec), &options).unwrap();
    assert_eq!(report.verdict(), Verdict::Unknown);
    assert!(report.keys[0].exhausted.is_some());
}

#[test]
fn unusable_histories_are_errors_not_panics() {
    let err = |spec: &str, model| {
        check(
            &history(spec),
            &CheckOptions {
                model,
                ..CheckOptions::default()
            },
        )
        .unwrap_err()
    };
    assert!(matches!(err("0 ok read 1", None), CheckError::Pairing(_)));
    let e = err(
        "0 invoke get [\"a\" nil]\n0 ok get [\"a\" 1]",
        Some(ModelKind::CasRegister),
    );
    assert!(
        e.to_string().contains("line 1") && e.to_string().contains("--model kv"),
        "{e}"
    );
    let e = err("0 invoke cas 5\n0 ok cas 5", Some(ModelKind::CasRegister));
    assert!(e.to_string().contains("[old new]"), "{e}");
    let e = err("0 invoke put 5\n0 ok put 5", Some(ModelKind::Kv));
    assert!(e.to_string().contains("[key"), "{e}");
}

// --- Jepsen interop -------------------------------------------------------

/// Knossos' test data and Jepsen's older files: one EDN list of op maps,
/// `;` comments anywhere, tagged literals in extra fields.
#[test]
fn a_history_may_be_one_list_with_comments_and_tags() {
    let text = "; a Knossos-style history\n\
                ({:process 0, :type :invoke, :f :write, :value 1} ; p0 w1\n\
                 {:process 0, :type :ok, :f :write, :value 1, :wall #inst \"2020-01-01T00:00:00Z\"}\n\
                 ;; a read after it\n\
                 {:process 1, :type :invoke, :f :read, :value nil, :id #uuid \"0b0e8f5c-0000-0000-0000-000000000000\"}\n\
                 {:process 1, :type :ok, :f :read, :value 1, :meta #unknown-tag {:a 1}})\n";
    let h = History::parse(text).unwrap();
    assert_eq!(h.ops.len(), 4);
    assert_eq!(h.lines, vec![2, 3, 5, 6]);
    let report = check(&h, &CheckOptions::default()).unwrap();
    assert_eq!(report.verdict(), LIN);
    // The tagged extra fields are kept and written back.
    assert!(h.to_edn_string().contains("#uuid \"0b0e8f5c"));
}

#[test]
fn truncated_histories_name_the_line_where_the_op_started() {
    for (text, line) in [
        (
            "({:process 0, :type :invoke, :f :write, :value 1}\n {:process 0, :type :ok,\n",
            2,
        ),
        ("[{:process 0, :type :invoke, :f :write, :value 1}\n", 2),
        ("{:process 0, :type :invoke, :f :write, :value [1\n2", 1),
    ] {
        let e = History::parse(text).unwrap_err().to_string();
        assert!(
            e.contains(&format!("opened on line {line}")) || e.contains("closing the history"),
            "{text:?}: {e}"
        );
        assert!(e.starts_with("line "), "{e}");
    }
    let e = History::parse("{:process 0, :type :invoke, :f :write, :value 1}\n]").unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
}

/// Knossos checks with a cas register that starts at 0.
#[test]
fn the_initial_value_can_be_given() {
    let spec = "0 invoke read nil\n0 ok read 0\n1 invoke cas [0 1]\n1 ok cas [0 1]";
    assert_eq!(register(spec), NOT);
    let options = CheckOptions {
        model: Some(ModelKind::CasRegister),
        initial: Some(0i64.into()),
        ..CheckOptions::default()
    };
    assert_eq!(check(&history(spec), &options).unwrap().verdict(), LIN);
}

/// Jepsen's `independent` checker writes `[key value]` tuples: a cas-register
/// history of tuples is one register per key.
#[test]
fn independent_tuples_are_split_by_key() {
    let spec = "0 invoke write [1 5]\n0 ok write [1 5]\n\
                1 invoke write [2 6]\n1 ok write [2 6]\n\
                0 invoke read [1 nil]\n0 ok read [1 5]\n\
                1 invoke cas [2 [6 7]]\n1 ok cas [2 [6 7]]\n\
                0 invoke read [2 nil]\n0 ok read [2 6]";
    let options = CheckOptions {
        model: Some(ModelKind::CasRegister),
        all_keys: true,
        ..CheckOptions::default()
    };
    let report = check(&history(spec), &options).unwrap();
    assert_eq!(report.model, ModelKind::CasRegister);
    assert_eq!(report.keys.len(), 2);
    assert_eq!(report.keys[0].verdict, LIN, "key 1");
    assert_eq!(
        report.keys[1].verdict, NOT,
        "key 2 read 6 after the cas to 7"
    );
}

/// One invalid key decides the history; the other keys are stopped (or
/// never started) unless every key's verdict is asked for.
#[test]
fn the_first_invalid_key_decides_unless_all_keys_are_asked_for() {
    use harness::checker::Exhausted;
    let mut spec = String::from("0 invoke get [\"bad\" nil]\n0 ok get [\"bad\" \"never\"]\n");
    for k in 0..50 {
        spec.push_str(&format!(
            "1 invoke put [\"k{k}\" \"v{k}\"]\n1 ok put [\"k{k}\" \"v{k}\"]\n"
        ));
    }
    let h = history(&spec);
    let options = |all_keys| CheckOptions {
        model: Some(ModelKind::Kv),
        all_keys,
        parallel: false,
        ..CheckOptions::default()
    };
    let first = check(&h, &options(false)).unwrap();
    assert_eq!(first.verdict(), NOT);
    let bad = first.keys.iter().find(|k| k.verdict == NOT).unwrap();
    let v = bad.violation.as_ref().unwrap();
    assert!(v.reason.as_ref().unwrap().contains("no op wrote"), "{v:?}");
    // Keys are checked in key order here; "bad" sorts before "k…".
    assert!(first
        .keys
        .iter()
        .skip(1)
        .all(|k| k.exhausted == Some(Exhausted::Cancelled)));
    let all = check(&h, &options(true)).unwrap();
    assert_eq!(all.verdict(), NOT);
    assert_eq!(all.keys.iter().filter(|k| k.verdict == LIN).count(), 50);
}

#[test]
fn the_run_time_limit_leaves_keys_undecided_and_says_so() {
    let mut spec = String::new();
    for k in 0..20 {
        spec.push_str(&format!(
            "1 invoke put [\"k{k}\" \"v{k}\"]\n1 ok put [\"k{k}\" \"v{k}\"]\n"
        ));
    }
    let options = CheckOptions {
        model: Some(ModelKind::Kv),
        budget: Budget {
            time_limit: Some(Duration::ZERO),
            ..Budget::default()
        },
        ..CheckOptions::default()
    };
    let report = check(&history(&spec), &options).unwrap();
    assert_eq!(report.verdict(), Verdict::Unknown);
    let why = report.keys[0].exhausted.as_ref().unwrap().to_string();
    assert!(why.contains("run's time limit"), "{why}");
}

/// Fuzz: random damage to a valid history (truncation, a deleted character,
/// a stray list bracket, comment, tag, discard or value) never panics the
/// reader or the checker, and every error names a line.
#[test]
fn damaged_histories_give_errors_naming_a_line_never_panics() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let base = "; fuzz template\n(\
        {:process 0, :type :invoke, :f :write, :value 1}\n\
        {:process 0, :type :ok, :f :write, :value 1}\n\
        {:process 1, :type :invoke, :f :cas, :value [1 2], :t #inst \"2020\"}\n\
        {:process 2, :type :invoke, :f :append, :value [\"k\" \"x1;\"]}\n\
        {:process 1, :type :info, :f :cas, :value [1 2]}\n\
        {:process 2, :type :ok, :f :append, :value [\"k\" \"x1;\"]}\n\
        {:process 3, :type :invoke, :f :read, :value [\"k\" nil]}\n\
        {:process 3, :type :ok, :f :read, :value [\"k\" \"x1;\"]}\n\
        {:process :nemesis, :type :info, :f :start, :value nil})\n";
    let pieces = [
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        "\"",
        ";",
        ";c\n",
        "#inst \"t\"",
        "#uuid \"u\"",
        "#foo ",
        "#_ ",
        "#",
        ":",
        "nil",
        "[1 2]",
        "[\"k\" [nil \"v\"]]",
        "\n",
        "1.5",
        "-",
        "\\",
    ];
    let mut rng = StdRng::seed_from_u64(17);
    let mut errors = 0;
    for case in 0..3000 {
        let mut text: Vec<char> = base.chars().collect();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..=text.len());
            match rng.random_range(0..3) {
                0 => text.truncate(at),
                1 if at < text.len() => {
                    text.remove(at);
                }
                _ => {
                    let p = pieces[rng.random_range(0..pieces.len())];
                    text.splice(at..at, p.chars());
                }
            }
        }
        let text: String = text.into_iter().collect();
        let outcome = History::parse(&text)
            .map_err(|e| e.to_string())
            .and_then(|h| {
                for model in [None, Some(ModelKind::Kv), Some(ModelKind::CasRegister)] {
                    let options = CheckOptions {
                        model,
                        ..CheckOptions::default()
                    };
                    check(&h, &options).map_err(|e| e.to_string())?;
                }
                Ok(())
            });
        if let Err(e) = outcome {
            errors += 1;
            assert!(e.contains("line "), "case {case}: {e}\n{text}");
        }
    }
    assert!(
        errors > 300,
        "{errors} of 3000 damaged histories were errors"
    );
}
