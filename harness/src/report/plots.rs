//! `latency.svg` and `rate.svg`, as Jepsen's perf checker draws them.
//!
//! - latency: every client op is a point (time since start, latency on a log
//!   scale), coloured by outcome (ok green, fail red, info orange);
//! - rate: completions per second over time, one line per outcome.
//!
//! In both, the nemesis windows are shaded (pause blue, kill red, fail-rate
//! yellow, partition purple, delay teal, slow grey, lose-unsynced magenta,
//! corrupt brown) so that a latency spike or a throughput dip can be matched with
//! the fault that caused it. Only the SVG backend of plotters is used: no
//! system fonts or image libraries are needed.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::history::pairing::{ClientOp, Outcome};
use crate::history::History;
use crate::nemesis::Window;
use crate::report::results::{complete_ns, invoke_ns, latency_ms};

const OK: RGBColor = RGBColor(46, 160, 67);
const FAIL: RGBColor = RGBColor(215, 48, 39);
const INFO: RGBColor = RGBColor(245, 150, 30);

fn outcome_color(t: Outcome) -> RGBColor {
    match t {
        Outcome::Ok => OK,
        Outcome::Fail => FAIL,
        Outcome::Info => INFO,
    }
}

/// The kind of fault a nemesis window shows, as named in the legend.
fn fault_kind(fault: &str) -> &'static str {
    if fault.contains("lose-unsynced") {
        "lose-unsynced"
    } else if fault.contains("corrupt") {
        "corrupt"
    } else if fault.contains("kill") {
        "kill"
    } else if fault.contains("fail-rate") {
        "fail-rate"
    } else if let Some(k) = network_kind(fault) {
        k
    } else {
        "pause"
    }
}

/// Network faults (link proxies): their own legend entries and colours.
fn network_kind(fault: &str) -> Option<&'static str> {
    ["partition", "delay", "slow"]
        .into_iter()
        .find(|k| fault.contains(k))
}

fn fault_color(fault: &str) -> RGBAColor {
    match fault_kind(fault) {
        "kill" => RGBColor(230, 80, 80).mix(0.15),
        "fail-rate" => RGBColor(230, 200, 40).mix(0.2),
        // Network faults.
        "partition" => RGBColor(150, 70, 200).mix(0.15),
        "delay" => RGBColor(40, 170, 170).mix(0.15),
        "slow" => RGBColor(120, 120, 120).mix(0.18),
        // Disk faults.
        "lose-unsynced" => RGBColor(200, 60, 160).mix(0.15),
        "corrupt" => RGBColor(140, 90, 40).mix(0.15),
        _ => RGBColor(70, 110, 220).mix(0.15),
    }
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// A plotters error as an [`anyhow::Error`].
fn plot_err(e: impl std::fmt::Debug) -> anyhow::Error {
    anyhow!("{e:?}")
}

/// Draws one chart into the SVG file `path`: time (s) on x from 0 to
/// `t_max`, `y_range` on y (`y_min..y_max`, labelled `y_desc`), the nemesis
/// windows shaded behind what `draw` adds, and the legend of its series.
#[allow(clippy::too_many_arguments)]
fn draw_chart<'p, Y>(
    path: &'p Path,
    size: (u32, u32),
    caption: String,
    y_desc: &str,
    y_range: Y,
    (y_min, y_max): (f64, f64),
    windows: &[Window],
    t_max: f64,
    draw: impl FnOnce(
        &mut ChartContext<'_, SVGBackend<'p>, Cartesian2d<RangedCoordf64, Y::CoordDescType>>,
    ) -> Result<()>,
) -> Result<()>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..t_max, y_range)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc(y_desc)
        .draw()
        .map_err(plot_err)?;
    for w in windows {
        let end = w.end.map(secs).unwrap_or(t_max);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(secs(w.start), y_min), (end, y_max)],
                fault_color(&w.fault).filled(),
            )))
            .map_err(plot_err)?;
    }
    draw(&mut chart)?;
    // One legend entry per kind of fault shown (no data: the shading above).
    let mut kinds: Vec<&'static str> = windows.iter().map(|w| fault_kind(&w.fault)).collect();
    kinds.sort_unstable();
    kinds.dedup();
    for kind in kinds {
        let color = fault_color(kind).mix(3.0);
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), u32>>())
            .map_err(plot_err)?
            .label(kind)
            .legend(move |(x, y)| Rectangle::new([(x - 6, y - 5), (x + 6, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// Writes the latency scatter plot.
pub fn latency_svg(
    path: &Path,
    title: &str,
    history: &History,
    ops: &[ClientOp<'_>],
    windows: &[Window],
    end_ns: u64,
) -> Result<()> {
    let t_max = secs(end_ns).max(1.0);
    let lat: Vec<(f64, f64, Outcome)> = ops
        .iter()
        .filter_map(|o| {
            latency_ms(history, o).map(|l| (secs(invoke_ns(history, o)), l.max(0.01), o.outcome))
        })
        .collect();
    let y_max = lat.iter().map(|p| p.1).fold(1.0f64, f64::max) * 1.5;
    draw_chart(
        path,
        (1000, 500),
        format!("{title}: latency"),
        "latency (ms)",
        (0.01..y_max).log_scale(),
        (0.01, y_max),
        windows,
        t_max,
        |chart| {
            for (t, label) in [
                (Outcome::Ok, "ok"),
                (Outcome::Fail, "fail"),
                (Outcome::Info, "info"),
            ] {
                let c = outcome_color(t);
                chart
                    .draw_series(
                        lat.iter()
                            .filter(|p| p.2 == t)
                            .map(|&(x, y, _)| Circle::new((x, y), 2, c.filled())),
                    )
                    .map_err(plot_err)?
                    .label(label)
                    .legend(move |(x, y)| Circle::new((x, y), 4, c.filled()));
            }
            Ok(())
        },
    )
}

/// Writes the throughput plot (completions per second, per outcome).
pub fn rate_svg(
    path: &Path,
    title: &str,
    history: &History,
    ops: &[ClientOp<'_>],
    windows: &[Window],
    end_ns: u64,
) -> Result<()> {
    let t_max = secs(end_ns).max(1.0);
    // About 100 buckets, at least 100 ms each.
    let bucket = (t_max / 100.0).max(0.1);
    let n = (t_max / bucket).ceil() as usize + 1;
    let mut series = [vec![0f64; n], vec![0f64; n], vec![0f64; n]];
    for o in ops {
        let Some(c) = complete_ns(history, o) else {
            continue;
        };
        let b = ((secs(c) / bucket) as usize).min(n - 1);
        let s = match o.outcome {
            Outcome::Ok => 0,
            Outcome::Fail => 1,
            Outcome::Info => 2,
        };
        series[s][b] += 1.0 / bucket;
    }
    let y_max = series.iter().flatten().fold(1.0f64, |a, &b| a.max(b)) * 1.1;
    draw_chart(
        path,
        (1000, 400),
        format!("{title}: throughput"),
        "ops/s",
        0.0..y_max,
        (0.0, y_max),
        windows,
        t_max,
        |chart| {
            for (i, (label, c)) in [("ok", OK), ("fail", FAIL), ("info", INFO)]
                .into_iter()
                .enumerate()
            {
                chart
                    .draw_series(LineSeries::new(
                        series[i]
                            .iter()
                            .enumerate()
                            .map(|(b, &v)| (b as f64 * bucket, v)),
                        c.stroke_width(2),
                    ))
                    .map_err(plot_err)?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 15, y)], c.stroke_width(2))
                    });
            }
            Ok(())
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_written() {
        use crate::history::{Op, OpType};
        let mut h = History::new();
        for i in 0..200i64 {
            let invoke = Op::invoke(i % 4, "read", 1i64).at(i * 10_000_000);
            let kind = if i % 17 == 0 {
                OpType::Info
            } else {
                OpType::Ok
            };
            let done = invoke
                .complete(kind, 1i64)
                .at(i * 10_000_000 + (i % 7 + 1) * 300_000);
            h.push(invoke);
            h.push(done);
        }
        let ops = crate::history::pairing::pair(&h).unwrap();
        let w: Vec<Window> = ["pause", "lose-unsynced", "corrupt"]
            .iter()
            .enumerate()
            .map(|(k, f)| Window {
                fault: f.to_string(),
                nodes: vec!["n0".into()],
                start: 300_000_000 * k as u64 + 100_000_000,
                end: Some(300_000_000 * k as u64 + 300_000_000),
            })
            .collect();
        let dir = std::env::temp_dir().join(format!("harness-plots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        latency_svg(&dir.join("latency.svg"), "t", &h, &ops, &w, 2_000_000_000).unwrap();
        rate_svg(&dir.join("rate.svg"), "t", &h, &ops, &w, 2_000_000_000).unwrap();
        let svg = std::fs::read_to_string(dir.join("latency.svg")).unwrap();
        assert!(svg.contains("<svg") && svg.contains("<circle"));
        // The legend names each kind of fault shown.
        for kind in ["pause", "lose-unsynced", "corrupt"] {
            assert!(svg.contains(&format!("\n{kind}\n")), "no legend for {kind}");
        }
        let svg = std::fs::read_to_string(dir.join("rate.svg")).unwrap();
        assert!(svg.contains("<polyline") || svg.contains("<path"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn network_faults_have_their_own_legend_entries() {
        assert_eq!(fault_kind("partition"), "partition");
        assert_eq!(fault_kind("delay"), "delay");
        assert_eq!(fault_kind("slow"), "slow");
        assert_eq!(fault_kind("pause"), "pause");
        assert_ne!(fault_color("partition"), fault_color("pause"));
        assert_ne!(fault_color("delay"), fault_color("slow"));
    }
}
