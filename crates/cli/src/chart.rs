//! `frugal report`: a memory trace (`frugal_engine::trace`) drawn as an SVG chart with `plotters`
//! (SVG backend only: text is written as SVG `<text>`, laid out with plotters' built-in size
//! estimate, so no font files or system libraries are needed).
//!
//! The chart shows RSS, anonymous and file-backed memory over time; each phase mark as a
//! vertical line labelled with the phase that begins there; the budget, the weights' size and the
//! predicted peak (when the trace has them) as horizontal lines; sizes in MiB or GiB, time in
//! seconds; a title with the command and the model.

use anyhow::{Context, Result};
use frugal_engine::memory::human;
use frugal_engine::trace::{Sample, Trace};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// Most points drawn per series; longer traces are reduced to this many buckets, each drawn at
/// its largest value so no peak disappears.
pub const MAX_POINTS: usize = 2000;

/// Chart size in pixels.
const SIZE: (u32, u32) = (1100, 620);

/// Legend names of the three series.
pub const SERIES: [&str; 3] = ["RSS", "anonymous", "file-backed"];

/// Reduces `samples` to at most `max` points: the largest reading of each series per bucket, at
/// the bucket's first time.
fn reduce(samples: &[Sample], max: usize) -> Vec<Sample> {
    if samples.len() <= max || max == 0 {
        return samples.to_vec();
    }
    let per = samples.len().div_ceil(max);
    samples
        .chunks(per)
        .map(|c| Sample {
            t: c[0].t,
            rss: c.iter().map(|s| s.rss).max().unwrap_or(0),
            anon: c.iter().map(|s| s.anon).max().unwrap_or(0),
            file: c.iter().map(|s| s.file).max().unwrap_or(0),
        })
        .collect()
}

/// Draws `trace` as an SVG document.
pub fn svg(trace: &Trace) -> Result<String> {
    let pts = reduce(&trace.samples, MAX_POINTS);
    let info = &trace.info;
    let hlines: Vec<(&str, u64, RGBColor)> = [
        ("budget (--max-memory)", info.budget_bytes, RED),
        ("weights", info.weights_bytes, RGBColor(90, 90, 90)),
        (
            "predicted peak RSS",
            info.predicted_peak_rss_bytes,
            RGBColor(150, 60, 200),
        ),
    ]
    .into_iter()
    .filter_map(|(n, v, c)| v.map(|v| (n, v, c)))
    .collect();
    let data_top = pts
        .iter()
        .map(|s| s.rss.max(s.anon).max(s.file))
        .max()
        .unwrap_or(1)
        .max(1);
    // A line far above the data (a generous budget) would flatten the chart: it is named in the
    // legend instead of drawn.
    let drawn = |v: u64| v <= data_top.saturating_mul(3);
    let top = hlines
        .iter()
        .map(|h| h.1)
        .filter(|&v| drawn(v))
        .fold(data_top, u64::max);
    let (unit, unit_name) = if top >= 1 << 30 {
        ((1u64 << 30) as f64, "GiB")
    } else {
        ((1u64 << 20) as f64, "MiB")
    };
    let ymax = top as f64 / unit * 1.12;
    let t_end = trace
        .samples
        .last()
        .map(|s| s.t)
        .into_iter()
        .chain(trace.marks.iter().map(|m| m.t))
        .fold(0.0f64, f64::max);
    let xmax = if t_end > 0.0 { t_end * 1.02 } else { 1.0 };
    let h = &trace.header;
    let peak = trace
        .end
        .map(|p| p.peak_rss_bytes)
        .unwrap_or_else(|| trace.samples.iter().map(|s| s.rss).max().unwrap_or(0));
    let title = format!(
        "frugal {}: {} (peak RSS {}{})",
        h.command,
        h.model,
        human(peak),
        if trace.truncated {
            ", trace cut short"
        } else {
            ""
        }
    );

    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax)?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc(format!("resident memory ({unit_name})"))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;

        let colors = [
            RGBColor(120, 150, 255),
            RGBColor(230, 120, 0),
            RGBColor(0, 140, 60),
        ];
        let getters: [fn(&Sample) -> u64; 3] = [|s| s.rss, |s| s.anon, |s| s.file];
        // RSS is mostly one of the others: drawn wider underneath, it stays visible.
        let widths = [5, 2, 2];
        for (((name, color), get), width) in SERIES.iter().zip(colors).zip(getters).zip(widths) {
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|s| (s.t, get(s) as f64 / unit)),
                    color.stroke_width(width),
                ))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        for (name, v, color) in &hlines {
            let y = *v as f64 / unit;
            let color = *color;
            let (points, note) = if drawn(*v) {
                (vec![(0.0, y), (xmax, y)], "")
            } else {
                (vec![], " (above the chart)")
            };
            chart
                .draw_series(DashedLineSeries::new(points, 8, 5, color.stroke_width(1)))?
                .label(format!("{name} {}{note}", human(*v)))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        // Phase marks: a vertical line each, labels staggered so close marks stay readable.
        let grey = RGBColor(120, 120, 120);
        for (i, m) in trace.marks.iter().enumerate() {
            chart.draw_series(DashedLineSeries::new(
                [(m.t, 0.0), (m.t, ymax)],
                4,
                4,
                grey.stroke_width(1),
            ))?;
            let y = ymax * (0.985 - 0.04 * (i % 5) as f64);
            // Labels right of their line, or left of it near the right edge.
            let h = if m.t > 0.85 * xmax {
                HPos::Right
            } else {
                HPos::Left
            };
            let style = ("sans-serif", 12)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(h, VPos::Top));
            chart.draw_series(std::iter::once(Text::new(
                format!(" {} ", m.phase),
                (m.t, y),
                style,
            )))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(out)
}

/// Reads the trace at `input` and writes its chart to `output`.
pub fn render(input: &Path, output: &Path) -> Result<Trace> {
    let trace = Trace::read(input)?;
    let doc = svg(&trace).with_context(|| format!("{}: drawing the chart", input.display()))?;
    std::fs::write(output, doc)
        .with_context(|| format!("{}: cannot write the chart", output.display()))?;
    Ok(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduce_keeps_peaks() {
        let s: Vec<Sample> = (0..10_000)
            .map(|i| Sample {
                t: i as f64,
                rss: if i == 5_555 { 1_000_000 } else { i },
                anon: 1,
                file: 2,
            })
            .collect();
        let r = reduce(&s, 100);
        assert!(r.len() <= 100);
        assert_eq!(r.iter().map(|x| x.rss).max(), Some(1_000_000));
    }
}
