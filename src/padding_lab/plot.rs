//! The SVG chart of `dotstub padding eval --plot`: beta against phi, one
//! point per policy, the Pareto front marked; beside it the padded size
//! histograms of the unpadded trace and of the policies on the front.
//!
//! Points are the chart's only circles (filled on the front, hollow off
//! it), so a reader or a test can count them.

use std::path::Path;

use plotters::{
    coord::{Shift, types::RangedCoordf64},
    prelude::{
        BLACK, ChartBuilder, Circle, Color, DrawingArea, IntoDrawingArea, IntoFont, IntoLogRange,
        LineSeries, LogCoord, PathElement, RGBColor, SVGBackend, Text, WHITE,
    },
};

use super::{Evaluation, LabError, Trace, evaluate, policy::PolicyPair};

/// Chart size in pixels.
const SIZE: (u32, u32) = (1200, 640);
/// Histograms drawn besides the unpadded one: the cheapest front policies.
const MAX_HISTOGRAMS: usize = 5;
/// Blue of the front.
const FRONT: RGBColor = RGBColor(31, 119, 180);
/// Grey of the points off the front.
const OFF_FRONT: RGBColor = RGBColor(120, 120, 120);
/// Histogram colours: dark grey for the unpadded trace, then dark,
/// distinct hues that stay readable as text on white.
const HISTOGRAM: [RGBColor; 1 + MAX_HISTOGRAMS] = [
    RGBColor(60, 60, 60),
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 140, 44),
    RGBColor(148, 103, 189),
    RGBColor(200, 100, 0),
];

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Why plotters could not draw: its errors, whichever backend or area.
type DrawError = Box<dyn std::error::Error>;

/// Draws `evaluations` of `trace` into the SVG file at `path`.
pub fn write_svg(path: &Path, trace: &Trace, evaluations: &[Evaluation]) -> Result<(), LabError> {
    draw(path, trace, evaluations).map_err(|error| LabError::Plot {
        path: path.to_owned(),
        reason: error.to_string(),
    })
}

fn draw(path: &Path, trace: &Trace, evaluations: &[Evaluation]) -> Result<(), DrawError> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(SIZE.0 / 2);
    let (top, bottom) = right.split_vertically(SIZE.1 / 2);
    let front = pareto_front(evaluations);
    scatter(&left, evaluations, &front)?;
    let unpadded = evaluate(trace, &PolicyPair::NONE, &Default::default());
    let mut shown: Vec<&Evaluation> = vec![&unpadded];
    shown.extend(
        front
            .iter()
            .map(|&i| &evaluations[i])
            .filter(|e| e.policy != PolicyPair::NONE)
            .take(MAX_HISTOGRAMS),
    );
    histogram(&top, "padded query sizes", &shown, |e| &e.query_sizes)?;
    histogram(&bottom, "padded response sizes", &shown, |e| {
        &e.response_sizes
    })?;
    root.present()?;
    Ok(())
}

/// Indices of the policies no other beats on both counts (lower or equal
/// beta and higher or equal phi, one strictly), by ascending beta.
pub(super) fn pareto_front(evaluations: &[Evaluation]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..evaluations.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&evaluations[a], &evaluations[b]);
        a.beta.total_cmp(&b.beta).then(b.phi.total_cmp(&a.phi))
    });
    let mut best_phi = f64::NEG_INFINITY;
    order
        .into_iter()
        .filter(|&i| {
            let on_front = evaluations[i].phi > best_phi;
            best_phi = best_phi.max(evaluations[i].phi);
            on_front
        })
        .collect()
}

fn scatter(area: &Area<'_>, evaluations: &[Evaluation], front: &[usize]) -> Result<(), DrawError> {
    let max_beta = evaluations.iter().map(|e| e.beta).fold(1.0, f64::max);
    let min_phi = evaluations.iter().map(|e| e.phi).fold(1.0, f64::min);
    let mut chart = ChartBuilder::on(area)
        .caption(
            "cost (beta) against attacker's cost (phi)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.95..max_beta * 1.08, (min_phi / 1.5..1.2).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("beta: padded / unpadded octets")
        .y_desc("phi (log scale)")
        .x_label_formatter(&|beta| format!("{beta:.1}"))
        .y_label_formatter(&|phi| format!("{phi:.3}"))
        .draw()?;
    let point = |e: &Evaluation| (e.beta, e.phi);
    chart.draw_series(LineSeries::new(
        front.iter().map(|&i| point(&evaluations[i])),
        FRONT.stroke_width(2),
    ))?;
    chart.draw_series(evaluations.iter().enumerate().map(|(i, e)| {
        let style = match front.contains(&i) {
            true => FRONT.filled(),
            false => OFF_FRONT.stroke_width(1),
        };
        Circle::new(point(e), 4, style)
    }))?;
    label_front(&mut chart, evaluations, front)
}

fn label_front(
    chart: &mut plotters::chart::ChartContext<
        '_,
        SVGBackend<'_>,
        plotters::coord::cartesian::Cartesian2d<RangedCoordf64, LogCoord<f64>>,
    >,
    evaluations: &[Evaluation],
    front: &[usize],
) -> Result<(), DrawError> {
    let font = ("sans-serif", 12).into_font().color(&BLACK);
    chart.draw_series(front.iter().map(|&i| {
        let e = &evaluations[i];
        Text::new(format!(" {}", e.policy), (e.beta, e.phi), font.clone())
    }))?;
    Ok(())
}

fn histogram(
    area: &Area<'_>,
    caption: &str,
    shown: &[&Evaluation],
    sizes: impl Fn(&Evaluation) -> &Vec<(usize, f64)>,
) -> Result<(), DrawError> {
    let max_size = shown
        .iter()
        .flat_map(|e| sizes(e).iter().map(|(size, _)| *size))
        .max()
        .unwrap_or(1);
    let max_count = shown
        .iter()
        .flat_map(|e| sizes(e).iter().map(|(_, count)| *count))
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max_size as f64 * 1.05, 0.0..max_count * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("octets")
        .y_desc("messages")
        .x_label_formatter(&|size| format!("{size:.0}"))
        .y_label_formatter(&|count| format!("{count:.0}"))
        .draw()?;
    for (index, evaluation) in shown.iter().enumerate() {
        let colour = HISTOGRAM[index % HISTOGRAM.len()];
        // Needles: one vertical line per padded size.
        chart.draw_series(sizes(evaluation).iter().map(|&(size, count)| {
            let needle = vec![(size as f64, 0.0), (size as f64, count)];
            PathElement::new(needle, colour.stroke_width(2))
        }))?;
        let name = match index {
            0 => "unpadded".to_owned(),
            _ => evaluation.policy.to_string(),
        };
        let (x, y) = (10, 30 + 16 * i32::try_from(index).unwrap_or(0));
        area.draw(&Text::new(
            name,
            (area.dim_in_pixel().0 as i32 - 180 + x, y),
            ("sans-serif", 12).into_font().color(&colour),
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(beta: f64, phi: f64) -> Evaluation {
        Evaluation {
            policy: "none".parse().unwrap(),
            n: 1,
            beta,
            beta_q: beta,
            beta_r: beta,
            phi,
            distinct: 1.0,
            entropy_bits: 0.0,
            unique_share: 0.0,
            runs: 1,
            query_sizes: Vec::new(),
            response_sizes: Vec::new(),
        }
    }

    #[test]
    fn the_front_keeps_only_policies_nothing_beats_on_both_counts() {
        let points = [
            at(1.0, 0.01),
            at(2.0, 0.5),
            at(2.5, 0.4),
            at(3.0, 0.5),
            at(4.0, 0.9),
            at(1.5, 0.01),
        ];
        assert_eq!(pareto_front(&points), [0, 1, 4]);
    }
}
