//! `latency.svg` and `rate.svg`, as Jepsen's perf checker draws them.
//!
//! - latency: every client op is a point (time since start, latency on a log
//!   scale), coloured by outcome (ok green, fail red, info orange);
//! - rate: completions per second over time, one line per outcome.
//!
//! In both, the nemesis windows are shaded (pause blue, kill red, fail-rate
//! yellow) so that a latency spike or a throughput dip can be matched with
//! the fault that caused it. Only the SVG backend of plotters is used: no
//! system fonts or image libraries are needed.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::nemesis::Window;
use crate::recorder::OpType;
use crate::report::results::Completed;

const OK: RGBColor = RGBColor(46, 160, 67);
const FAIL: RGBColor = RGBColor(215, 48, 39);
const INFO: RGBColor = RGBColor(245, 150, 30);

fn outcome_color(t: OpType) -> RGBColor {
    match t {
        OpType::Ok => OK,
        OpType::Fail => FAIL,
        _ => INFO,
    }
}

fn fault_color(fault: &str) -> RGBAColor {
    if fault.contains("kill") {
        RGBColor(230, 80, 80).mix(0.15)
    } else if fault.contains("fail-rate") {
        RGBColor(230, 200, 40).mix(0.2)
    } else {
        RGBColor(70, 110, 220).mix(0.15)
    }
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Writes the latency scatter plot.
pub fn latency_svg(
    path: &Path,
    title: &str,
    ops: &[Completed],
    windows: &[Window],
    end_ns: u64,
) -> Result<()> {
    let t_max = secs(end_ns).max(1.0);
    let lat: Vec<(f64, f64, OpType)> = ops
        .iter()
        .filter_map(|o| {
            o.latency_ms()
                .map(|l| (secs(o.invoke), l.max(0.01), o.kind))
        })
        .collect();
    let y_max = lat.iter().map(|p| p.1).fold(1.0f64, f64::max) * 1.5;
    let root = SVGBackend::new(path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title}: latency"), ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..t_max, (0.01..y_max).log_scale())
        .map_err(|e| anyhow!("{e:?}"))?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("latency (ms)")
        .draw()
        .map_err(|e| anyhow!("{e:?}"))?;
    for w in windows {
        let end = w.end.map(secs).unwrap_or(t_max);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(secs(w.start), 0.01), (end, y_max)],
                fault_color(&w.fault).filled(),
            )))
            .map_err(|e| anyhow!("{e:?}"))?;
    }
    for (t, label) in [
        (OpType::Ok, "ok"),
        (OpType::Fail, "fail"),
        (OpType::Info, "info"),
    ] {
        let c = outcome_color(t);
        chart
            .draw_series(
                lat.iter()
                    .filter(|p| p.2 == t)
                    .map(|&(x, y, _)| Circle::new((x, y), 2, c.filled())),
            )
            .map_err(|e| anyhow!("{e:?}"))?
            .label(label)
            .legend(move |(x, y)| Circle::new((x, y), 4, c.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| anyhow!("{e:?}"))?;
    root.present().map_err(|e| anyhow!("{e:?}"))?;
    Ok(())
}

/// Writes the throughput plot (completions per second, per outcome).
pub fn rate_svg(
    path: &Path,
    title: &str,
    ops: &[Completed],
    windows: &[Window],
    end_ns: u64,
) -> Result<()> {
    let t_max = secs(end_ns).max(1.0);
    // About 100 buckets, at least 100 ms each.
    let bucket = (t_max / 100.0).max(0.1);
    let n = (t_max / bucket).ceil() as usize + 1;
    let mut series = [vec![0f64; n], vec![0f64; n], vec![0f64; n]];
    for o in ops {
        let Some(c) = o.complete else { continue };
        let b = ((secs(c) / bucket) as usize).min(n - 1);
        let s = match o.kind {
            OpType::Ok => 0,
            OpType::Fail => 1,
            _ => 2,
        };
        series[s][b] += 1.0 / bucket;
    }
    let y_max = series.iter().flatten().fold(1.0f64, |a, &b| a.max(b)) * 1.1;
    let root = SVGBackend::new(path, (1000, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title}: throughput"), ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)
        .map_err(|e| anyhow!("{e:?}"))?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("ops/s")
        .draw()
        .map_err(|e| anyhow!("{e:?}"))?;
    for w in windows {
        let end = w.end.map(secs).unwrap_or(t_max);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(secs(w.start), 0.0), (end, y_max)],
                fault_color(&w.fault).filled(),
            )))
            .map_err(|e| anyhow!("{e:?}"))?;
    }
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
            .map_err(|e| anyhow!("{e:?}"))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| anyhow!("{e:?}"))?;
    root.present().map_err(|e| anyhow!("{e:?}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_written() {
        let ops: Vec<Completed> = (0..200u64)
            .map(|i| Completed {
                process: i % 4,
                f: "read".into(),
                invoke: i * 10_000_000,
                complete: Some(i * 10_000_000 + (i % 7 + 1) * 300_000),
                kind: if i % 17 == 0 {
                    OpType::Info
                } else {
                    OpType::Ok
                },
                node: None,
            })
            .collect();
        let w = vec![Window {
            fault: "pause".into(),
            nodes: vec!["n0".into()],
            start: 500_000_000,
            end: Some(900_000_000),
        }];
        let dir = std::env::temp_dir().join(format!("harness-plots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        latency_svg(&dir.join("latency.svg"), "t", &ops, &w, 2_000_000_000).unwrap();
        rate_svg(&dir.join("rate.svg"), "t", &ops, &w, 2_000_000_000).unwrap();
        let svg = std::fs::read_to_string(dir.join("latency.svg")).unwrap();
        assert!(svg.contains("<svg") && svg.contains("<circle"));
        let svg = std::fs::read_to_string(dir.join("rate.svg")).unwrap();
        assert!(svg.contains("<polyline") || svg.contains("<path"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
