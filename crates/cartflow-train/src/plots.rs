//! The validation plots as SVG (plotters' SVG backend: no fonts or image
//! libraries to build): ROC and precision–recall curves with the logistic
//! baseline beside the model, calibration, and feature importance.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::metrics::CalibrationBin;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// plotters could not draw a plot (its errors are generic over the backend: kept as their text).
#[derive(Debug, thiserror::Error)]
#[error("drawing a plot: {0}")]
pub struct PlotError(String);

fn drawing<E: std::fmt::Display>(e: E) -> PlotError {
    PlotError(e.to_string())
}

const SIZE: (u32, u32) = (640, 480);

/// A named curve in a color.
type Curve<'a> = (&'a str, RGBColor, &'a [(f64, f64)]);
const MODEL: RGBColor = RGBColor(31, 119, 180);
const BASELINE: RGBColor = RGBColor(255, 127, 14);

fn svg(draw: impl FnOnce(&Area<'_>) -> Result<(), PlotError>) -> Result<String, PlotError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        draw(&root)?;
        root.present().map_err(drawing)?;
    }
    Ok(out)
}

/// A unit-square chart of named curves, with a dashed reference line.
fn curves(title: &str, x: &str, y: &str, lines: &[Curve<'_>], reference: [(f64, f64); 2]) -> Result<String, PlotError> {
    svg(|root| {
        let e = |e: DrawingAreaErrorKind<_>| drawing(e);
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(e)?;
        chart.configure_mesh().x_desc(x).y_desc(y).draw().map_err(e)?;
        chart.draw_series(DashedLineSeries::new(reference, 5, 5, BLACK.mix(0.4).stroke_width(1))).map_err(e)?;
        for &(name, color, points) in lines {
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
                .map_err(e)?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(e)
    })
}

pub fn roc(
    model: &[(f64, f64)],
    model_auc: f64,
    baseline: &[(f64, f64)],
    baseline_auc: f64,
) -> Result<String, PlotError> {
    let m = format!("model (AUC {model_auc:.3})");
    let b = format!("logistic regression (AUC {baseline_auc:.3})");
    curves(
        "ROC curve, validation window",
        "false positive rate",
        "true positive rate",
        &[(&m, MODEL, model), (&b, BASELINE, baseline)],
        [(0.0, 0.0), (1.0, 1.0)],
    )
}

pub fn precision_recall(
    model: &[(f64, f64)],
    model_ap: f64,
    baseline: &[(f64, f64)],
    baseline_ap: f64,
    base_rate: f64,
) -> Result<String, PlotError> {
    let m = format!("model (AP {model_ap:.3})");
    let b = format!("logistic regression (AP {baseline_ap:.3})");
    curves(
        "Precision–recall, validation window",
        "recall",
        "precision",
        &[(&m, MODEL, model), (&b, BASELINE, baseline)],
        [(0.0, base_rate), (1.0, base_rate)],
    )
}

pub fn calibration(bins: &[CalibrationBin]) -> Result<String, PlotError> {
    let points: Vec<(f64, f64)> =
        bins.iter().filter(|b| b.count > 0).map(|b| (b.mean_predicted, b.observed_rate)).collect();
    curves(
        "Calibration, validation window",
        "mean predicted probability",
        "share bought",
        &[("model", MODEL, &points)],
        [(0.0, 0.0), (1.0, 1.0)],
    )
}

/// Horizontal bars, largest on top.
pub fn importance(named: &[(String, f64)]) -> Result<String, PlotError> {
    let mut named = named.to_vec();
    named.sort_by(|a, b| a.1.total_cmp(&b.1));
    let top = named.iter().map(|(_, v)| *v).fold(0.0f64, f64::max).max(1e-9);
    svg(|root| {
        let e = |e: DrawingAreaErrorKind<_>| drawing(e);
        let n = named.len();
        let mut chart = ChartBuilder::on(root)
            .caption("Feature importance (share of split gain)", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(200)
            .build_cartesian_2d(0f64..top * 1.05, (0..n).into_segmented())
            .map_err(e)?;
        let label = |y: &SegmentValue<usize>| match y {
            SegmentValue::CenterOf(i) => named.get(*i).map(|(name, _)| name.clone()).unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&label)
            .x_desc("share of total gain")
            .draw()
            .map_err(e)?;
        chart
            .draw_series(named.iter().enumerate().map(|(i, (_, v))| {
                Rectangle::new([(0.0, SegmentValue::Exact(i)), (*v, SegmentValue::Exact(i + 1))], MODEL.filled())
            }))
            .map_err(e)?;
        Ok(())
    })
}
