//! The registry UI's charts, drawn on the server as SVG (plotters' SVG
//! backend, as the trainer's plots): a study's trials by their metric with
//! the best so far, and each hyperparameter against the metric — the
//! charts MLflow's UI draws from a parent run's children.

use plotters::prelude::*;

/// One child run: its number in the study, its metric, its numeric params.
#[derive(Debug, Clone)]
pub struct Trial {
    pub number: f64,
    pub metric: f64,
    /// Stopped early (MLflow status `KILLED`): drawn hollow.
    pub stopped: bool,
    pub params: Vec<(String, f64)>,
}

const DONE: RGBColor = RGBColor(31, 119, 180);
const BEST: RGBColor = RGBColor(214, 39, 40);

/// Axis bounds with a margin, never empty.
fn span(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.08).max(1e-3);
    lo - pad..hi + pad
}

/// A scatter of `points` (hollow where stopped), with an optional line.
fn scatter(
    size: (u32, u32),
    title: &str,
    x_desc: &str,
    y_desc: &str,
    points: &[(f64, f64, bool)],
    line: Option<&[(f64, f64)]>,
) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<_>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(34)
            .y_label_area_size(54)
            .build_cartesian_2d(span(points.iter().map(|p| p.0)), span(points.iter().map(|p| p.1)))
            .map_err(e)?;
        chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).x_labels(6).y_labels(6).draw().map_err(e)?;
        if let Some(line) = line {
            chart.draw_series(LineSeries::new(line.iter().copied(), BEST.stroke_width(2))).map_err(e)?;
        }
        chart
            .draw_series(points.iter().map(|&(x, y, stopped)| {
                let style = if stopped { DONE.stroke_width(1) } else { DONE.filled() };
                Circle::new((x, y), 4, style)
            }))
            .map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(out)
}

/// The metric of each trial by its number, and the best so far as a line
/// (`higher_is_better` says which way best is).
pub fn trials(trials: &[Trial], metric: &str, higher_is_better: bool) -> Result<String, String> {
    let mut sorted = trials.to_vec();
    sorted.sort_by(|a, b| a.number.total_cmp(&b.number));
    let mut best = Vec::with_capacity(sorted.len());
    for t in sorted.iter().filter(|t| !t.stopped) {
        let so_far = best.last().map_or(
            t.metric,
            |&(_, b): &(f64, f64)| {
                if higher_is_better { b.max(t.metric) } else { b.min(t.metric) }
            },
        );
        best.push((t.number, so_far));
    }
    let points: Vec<_> = sorted.iter().map(|t| (t.number, t.metric, t.stopped)).collect();
    scatter((640, 360), &format!("{metric} by trial (line: best so far)"), "trial", metric, &points, Some(&best))
}

/// One small chart per numeric hyperparameter: its value against the metric.
pub fn params_against(trials: &[Trial], metric: &str) -> Result<Vec<(String, String)>, String> {
    let mut names: Vec<&str> = trials.iter().flat_map(|t| t.params.iter().map(|(k, _)| k.as_str())).collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let points: Vec<_> = trials
                .iter()
                .filter_map(|t| t.params.iter().find(|(k, _)| k == name).map(|(_, v)| (*v, t.metric, t.stopped)))
                .collect();
            scatter((320, 240), name, name, metric, &points, None).map(|svg| (name.to_owned(), svg))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(number: f64, metric: f64, depth: f64) -> Trial {
        Trial { number, metric, stopped: false, params: vec![("max_depth".into(), depth)] }
    }

    #[test]
    fn the_trials_chart_draws_every_trial_and_the_best_line() {
        let t = [trial(2.0, 0.70, 4.0), trial(0.0, 0.60, 6.0), trial(1.0, 0.65, 8.0)];
        let svg = trials(&t, "valid_roc_auc", true).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("valid_roc_auc by trial"), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 3, "{svg}");
        assert!(svg.contains("<polyline"), "{svg}");
        let per_param = params_against(&t, "valid_roc_auc").unwrap();
        assert_eq!(per_param.len(), 1);
        assert_eq!(per_param[0].1.matches("<circle").count(), 3);
        // One trial, or none: still a chart, never a panic on an empty range.
        assert!(trials(&t[..1], "m", false).unwrap().contains("<circle"));
        assert!(trials(&[], "m", true).unwrap().starts_with("<svg"));
    }
}
