//! `--plot FILE.svg`: throughput over time above, the latency histogram below, one line per
//! report (plotters, SVG backend, no font files needed).

use std::error::Error;
use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::Report;

pub fn draw(path: &Path, reports: &[Report]) -> Result<(), Box<dyn Error>> {
    let root = SVGBackend::new(path, (1000, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(400);

    let seconds = max_of(
        reports
            .iter()
            .flat_map(|r| r.throughput.iter().map(|p| p.0)),
    );
    let rate = max_of(
        reports
            .iter()
            .flat_map(|r| r.throughput.iter().map(|p| p.1)),
    );
    let mut chart = ChartBuilder::on(&upper)
        .caption("Throughput", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..seconds.max(1.0), 0f64..rate.max(1.0) * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("operations/s")
        .draw()?;
    draw_lines(&mut chart, reports, |r| r.throughput.clone())?;

    let slowest = max_of(reports.iter().map(|r| r.max_ms));
    let fastest = reports
        .iter()
        .flat_map(|r| r.latency_histogram.iter().filter(|b| b.1 > 0).map(|b| b.0))
        .fold(slowest, f64::min);
    let most = max_of(
        reports
            .iter()
            .flat_map(|r| r.latency_histogram.iter().map(|b| b.1 as f64)),
    );
    let mut chart = ChartBuilder::on(&lower)
        .caption("Latency histogram", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(
            ((fastest / 1.5).max(0.001)..slowest.max(0.01) * 1.25).log_scale(),
            0f64..most.max(1.0) * 1.1,
        )?;
    chart
        .configure_mesh()
        .x_desc("latency, ms (log scale)")
        .y_desc("operations")
        .draw()?;
    draw_lines(&mut chart, reports, |r| {
        r.latency_histogram
            .iter()
            .map(|&(ms, count)| (ms.max(0.001), count as f64))
            .collect()
    })?;
    root.present()?;
    Ok(())
}

/// One line per report, `points` picking its series, and the legend naming them.
fn draw_lines<'a, X: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, RangedCoordf64>>,
    reports: &[Report],
    points: impl Fn(&Report) -> Vec<(f64, f64)>,
) -> Result<(), Box<dyn Error>> {
    for (i, report) in reports.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points(report), color.stroke_width(2)))?
            .label(report.workload.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn max_of(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0, f64::max)
}
