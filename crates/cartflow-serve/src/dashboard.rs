//! `GET /dashboard`: one server-rendered page (refreshing itself every five
//! seconds) with what an operator looks at first: the model being served
//! and its validation metrics and plots, prediction latency, each pipeline
//! stage's throughput and lag, invalid events by reason, charts of the last
//! ten minutes ([`History`]: events/s and lag per stage, predictions/s,
//! latency p50/p99, freshness), and the conversion funnel and category
//! performance from gold. No JavaScript, so it renders the same in a
//! headless browser, a terminal browser and a screenshot.

use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::response::Html;
use cartflow_http::html::{self, text as esc};
use plotters::prelude::*;
use serde_json::Value;

use crate::Telemetry;
use crate::history::{History, Lines};
use crate::latency::Latency;
use crate::model::{ModelSlot, ServedModel};

/// A small table for the page, already formatted.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// The served version's validation metrics and where its plots are.
#[derive(Debug, Clone, Default)]
pub struct ModelReport {
    pub metrics: Vec<(String, f64)>,
    /// (title, URL the browser can load).
    pub plots: Vec<(String, String)>,
}

/// Why an insight is not there (the lake not built yet, the registry down):
/// the implementation's own error, shown on the page.
pub type InsightsError = Box<dyn std::error::Error + Send + Sync>;

/// What the page shows beyond this process's own state: gold tables and
/// the registry's record of the model. Blocking; called off the runtime.
pub trait Insights: Send + Sync {
    /// The funnel and category performance (or why they are not there).
    fn gold(&self) -> Result<Vec<Table>, InsightsError>;
    fn model_report(&self, model: &ServedModel) -> Result<ModelReport, InsightsError>;
}

#[derive(Clone)]
pub struct Dashboard {
    pub telemetry: Telemetry,
    pub latency: Arc<Latency>,
    pub model: Arc<ModelSlot>,
    pub insights: Arc<dyn Insights>,
    /// The previous look at the stages, for rates.
    pub previous: Arc<Mutex<Option<(Instant, Value)>>>,
    /// This process's metrics over the last minutes, for the charts.
    pub history: Arc<History>,
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// A time-series chart as inline SVG: one line per series over the last
/// minutes (x: seconds before now); a note instead when there is no point yet.
fn chart(id: &str, title: &str, unit: &str, lines: &Lines) -> String {
    let points = || lines.iter().flat_map(|(_, p)| p.iter());
    if points().next().is_none() {
        return format!(
            "<figure {}><figcaption>{}: no data yet</figcaption></figure>",
            html::attr("id", id),
            esc(title)
        );
    }
    let highest = points().map(|p| p.1).fold(0.0_f64, f64::max);
    let top = if highest > 0.0 { highest * 1.1 } else { 1.0 };
    let left = points().map(|p| p.0).fold(0.0_f64, f64::min).min(-super::history::EVERY.as_secs_f64());
    let mut svg = String::new();
    let drawn = (|| -> Result<(), String> {
        let root = SVGBackend::with_string(&mut svg, (420, 220)).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<_>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let mut c = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 14))
            .margin(6)
            .x_label_area_size(24)
            .y_label_area_size(48)
            .build_cartesian_2d(left..0.0, 0.0..top)
            .map_err(e)?;
        c.configure_mesh().x_desc("seconds ago").y_desc(unit).x_labels(5).y_labels(5).draw().map_err(e)?;
        for (i, (name, pts)) in lines.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            c.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(e)?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2)));
        }
        c.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(e)?;
        root.present().map_err(e)
    })();
    match drawn {
        Ok(()) => format!("<figure {}>{svg}</figure>", html::attr("id", id)),
        Err(why) => format!("<figure><figcaption>{}: {}</figcaption></figure>", esc(title), esc(&why)),
    }
}

fn table(t: &Table) -> String {
    let mut html = format!("<h3>{}</h3><table><tr>", esc(&t.title));
    for c in &t.columns {
        let _ = write!(html, "<th>{}</th>", esc(c));
    }
    html.push_str("</tr>");
    for row in &t.rows {
        html.push_str("<tr>");
        for cell in row {
            let _ = write!(html, "<td>{}</td>", esc(cell));
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
    html
}

/// A stage's processed count, whichever name its stats give it.
fn processed(stats: &Value) -> u64 {
    stats.get("read").or_else(|| stats.get("records")).and_then(Value::as_u64).unwrap_or(0)
}

impl Dashboard {
    fn charts(&self) -> String {
        let h = &self.history;
        format!(
            "<h2>Last ten minutes</h2><div class=\"charts\">{}{}{}{}{}</div>",
            chart("chart-events", "events/s by stage", "events/s", &h.events_per_sec()),
            chart("chart-lag", "lag by stage", "records", &h.lag()),
            chart("chart-predictions", "predictions/s", "requests/s", &h.predictions_per_sec()),
            chart("chart-latency", "/predict latency", "ms", &h.latency_ms()),
            chart("chart-freshness", "freshness p99 by stage", "ms", &h.freshness_p99_ms()),
        )
    }

    fn stages(&self) -> String {
        let status = (self.telemetry.status)();
        let stages = status.get("stages").cloned().unwrap_or(Value::Null);
        let now = Instant::now();
        let previous = self.previous.lock().expect("dashboard lock").replace((now, stages.clone()));
        let mut rows = Vec::new();
        let mut reasons = Vec::new();
        for (stage, stats) in stages.as_object().into_iter().flatten() {
            let rate = previous.as_ref().and_then(|(then, before)| {
                let secs = now.duration_since(*then).as_secs_f64();
                let delta = processed(stats).saturating_sub(processed(&before[stage]));
                (secs > 0.0).then(|| format!("{:.0}", delta as f64 / secs))
            });
            let lag = stats.get("lag").and_then(Value::as_u64).map_or("—".into(), |l| l.to_string());
            rows.push(vec![stage.clone(), processed(stats).to_string(), rate.unwrap_or("—".into()), lag]);
            if let (Some(by_reason), Some(read)) =
                (stats.get("by_reason").and_then(Value::as_object), stats.get("read"))
            {
                let read = read.as_u64().unwrap_or(0).max(1) as f64;
                for (reason, n) in by_reason {
                    let n = n.as_u64().unwrap_or(0);
                    reasons.push(vec![reason.clone(), n.to_string(), format!("{:.2}%", 100.0 * n as f64 / read)]);
                }
            }
        }
        if rows.is_empty() {
            return "<h2>Pipeline</h2><p>No stage runs in this process.</p>".into();
        }
        let columns = |c: &[&str]| c.iter().map(|s| s.to_string()).collect();
        let mut html = String::from("<h2>Pipeline</h2>");
        html +=
            &table(&Table { title: "Stages".into(), columns: columns(&["stage", "events", "events/s", "lag"]), rows });
        if reasons.is_empty() {
            html += "<p>No invalid events in this process's stages.</p>";
        } else {
            html += &table(&Table {
                title: "Invalid events by reason".into(),
                columns: columns(&["reason", "events", "share of read"]),
                rows: reasons,
            });
        }
        html
    }

    fn model(&self, served: Option<&ServedModel>, report: Option<Result<ModelReport, InsightsError>>) -> String {
        let Some(m) = served else {
            return format!(
                "<h2>Model</h2><p id=\"model\">No model served yet: waiting for {}@{}.</p>",
                esc(&self.model.name),
                esc(&self.model.alias)
            );
        };
        let mut html = format!(
            "<h2>Model</h2><p id=\"model\">{} <b>v{}</b> @{} · {} trees · {} · loaded {}</p>",
            esc(&m.name),
            esc(&m.version),
            esc(&m.alias),
            m.scorer.trees(),
            m.model.feature_set.service_name(),
            cartflow_core::time::rfc3339(m.loaded_at)
        );
        match report {
            Some(Ok(r)) => {
                html += &table(&Table {
                    title: "Validation metrics".into(),
                    columns: vec!["metric".into(), "value".into()],
                    rows: r.metrics.iter().map(|(k, v)| vec![k.clone(), format!("{v:.4}")]).collect(),
                });
                for (title, url) in &r.plots {
                    let _ = write!(html, "<img alt=\"{t}\" title=\"{t}\" src=\"{}\">", esc(url), t = esc(title));
                }
            }
            Some(Err(e)) => html += &format!("<p>The registry's record of this version: {}</p>", esc(&e.to_string())),
            None => {}
        }
        html
    }

    fn latency(&self) -> String {
        let ms = |q| self.latency.quantile_ms(q).map_or("—".into(), |v| format!("{v:.2} ms"));
        format!(
            "<h2>Predictions</h2><p>Answered requests since start, time in the server.</p>\
             <table><tr><th>requests</th><th>p50</th><th>p99</th></tr>\
             <tr><td id=\"requests\">{}</td><td>{}</td><td>{}</td></tr></table>",
            self.latency.count(),
            ms(0.5),
            ms(0.99)
        )
    }
}

/// `GET /dashboard`.
pub async fn page(State(d): State<Dashboard>) -> Html<String> {
    let served = d.model.current();
    let (gold, report) = {
        let (insights, served) = (d.insights.clone(), served.clone());
        tokio::task::spawn_blocking(move || (insights.gold(), served.map(|m| insights.model_report(&m))))
            .await
            .unwrap_or_else(|e| (Err(format!("dashboard task failed: {e}").into()), None))
    };
    let gold = match gold {
        Ok(tables) if tables.is_empty() => "<p>Gold is empty: run `cartflow warehouse build`.</p>".to_owned(),
        Ok(tables) => tables.iter().map(table).collect(),
        Err(e) => format!("<p>Gold is not readable yet: {}</p>", esc(&e.to_string())),
    };
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">\
         <title>cartflow dashboard</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:.5em 0 1em}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}th{{background:#f3f3f3}}\
         img{{max-width:420px;border:1px solid #ddd;margin:4px}}section{{margin-bottom:1.5em}}\
         nav a{{margin-right:1em}}.charts figure{{display:inline-block;margin:4px}}</style></head><body>\
         <nav><a href=\"/dashboard\">Dashboard</a><a href=\"/ui/\">Registry</a><a href=\"/metrics\">Metrics</a></nav>\
         <h1>cartflow</h1><section>{}</section><section>{}</section><section>{}</section><section>{}</section>\
         <section><h2>Shoppers (gold)</h2>{gold}</section></body></html>",
        d.model(served.as_deref(), report),
        d.latency(),
        d.charts(),
        d.stages(),
    ))
}
