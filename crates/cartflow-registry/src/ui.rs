//! The registry's web pages, rendered on the server from the store: plain
//! HTML tables with links, no script needed, so they load anywhere and a
//! headless browser test reads them as a person would.
//!
//! `/ui/` experiments · `/ui/experiments/{id}` runs (sortable by any
//! column, two or more ticked to compare) · `/ui/runs/{id}` a run with its
//! plots and, for a study, charts of its trials · `/ui/compare?runs=…&runs=…`
//! runs side by side · `/ui/models` registered models, versions and aliases.

use std::collections::BTreeSet;
use std::fmt::Write;

use axum::Router;
use axum::extract::{Path, Query, RawQuery, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use cartflow_http::Scope;
use cartflow_http::auth::scoped;
use cartflow_http::html::{attr, text as esc, url_part as enc};
use serde::Deserialize;

use crate::RegistryError;
use crate::api::Registry;
use crate::charts::{self, Trial};
use crate::filter::{self, Field, Key, Searchable};
use crate::proto::Run;

/// A link: `<a href="…">text</a>`, both escaped.
fn link(href: &str, text: &str) -> String {
    format!("<a {}>{}</a>", attr("href", href), esc(text))
}

fn run_link(run_id: &str, text: &str) -> String {
    link(&format!("/ui/runs/{}", enc(run_id)), text)
}

fn time(ms: i64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60)
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t} · cartflow registry</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}th{{background:#f3f3f3}}\
         nav a{{margin-right:1em}}img{{max-width:640px;border:1px solid #ddd;margin:4px}}.num{{text-align:right}}\
         tr.diff td{{background:#fff4d6}}.small figure{{display:inline-block;margin:4px}}\
         </style></head><body><nav><a href=\"/ui/\">Experiments</a><a href=\"/ui/models\">Models</a></nav><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    ))
}

struct UiError(RegistryError);

impl From<RegistryError> for UiError {
    fn from(e: RegistryError) -> Self {
        Self(e)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = match self.0.code {
            crate::ErrorCode::ResourceDoesNotExist => axum::http::StatusCode::NOT_FOUND,
            crate::ErrorCode::InternalError => axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            crate::ErrorCode::TemporarilyUnavailable => axum::http::StatusCode::SERVICE_UNAVAILABLE,
            _ => axum::http::StatusCode::BAD_REQUEST,
        };
        (status, page("Error", &format!("<p>{}</p>", esc(&self.0.message)))).into_response()
    }
}

type PageResult = std::result::Result<Html<String>, UiError>;

async fn experiments(State(r): State<Registry>) -> PageResult {
    let mut rows = String::new();
    for e in r.store.experiments(&["active"]).await? {
        let runs = r.store.runs(std::slice::from_ref(&e.experiment_id), &["active"]).await?.len();
        let _ = write!(
            rows,
            "<tr><td>{name}</td><td>{id}</td><td class=\"num\">{runs}</td><td>{created}</td></tr>",
            name = link(&format!("/ui/experiments/{}", enc(&e.experiment_id)), &e.name),
            id = esc(&e.experiment_id),
            created = time(e.creation_time)
        );
    }
    Ok(page(
        "Experiments",
        &format!(
            "<table id=\"experiments\"><tr><th>Name</th><th>ID</th><th>Runs</th><th>Created</th></tr>{rows}</table>"
        ),
    ))
}

#[derive(Deserialize)]
struct Sort {
    sort: Option<String>,
    desc: Option<u8>,
}

fn cell(run: &Run, key: &Key) -> String {
    match run.field(key) {
        Some(Field::Number(n)) => {
            format!("<td class=\"num\">{}</td>", if n.fract() == 0.0 { format!("{n}") } else { format!("{n:.4}") })
        }
        Some(Field::Text(t)) => format!("<td>{}</td>", esc(t)),
        None => "<td></td>".into(),
    }
}

async fn runs(State(r): State<Registry>, Path(id): Path<String>, Query(sort): Query<Sort>) -> PageResult {
    let experiment = r.store.experiment(&id).await?;
    let mut runs = r.store.runs(std::slice::from_ref(&id), &["active"]).await?;
    let by = sort.sort.unwrap_or_else(|| "attributes.start_time".into());
    let desc = sort.desc.unwrap_or(1) == 1;
    filter::order(&mut runs, &[format!("{by} {}", if desc { "DESC" } else { "ASC" })])?;
    let metrics: BTreeSet<&str> = runs.iter().flat_map(|r| r.data.metrics.iter().map(|m| m.key.as_str())).collect();
    let params: BTreeSet<&str> = runs.iter().flat_map(|r| r.data.params.iter().map(|p| p.key.as_str())).collect();
    let columns: Vec<(String, Key)> = [("run_name", "Run"), ("status", "Status"), ("start_time", "Started")]
        .iter()
        .map(|(k, label)| (format!("attributes.{k}|{label}"), Key::Attribute((*k).into())))
        .chain(metrics.iter().map(|m| (format!("metrics.{m}|{m}"), Key::Metric((*m).into()))))
        .chain(params.iter().map(|p| (format!("params.{p}|{p}"), Key::Param((*p).into()))))
        .collect();
    let mut head = String::new();
    for (spec, _) in &columns {
        let (key, label) = spec.split_once('|').expect("spec has a label");
        let flip = if key == by && desc { 0 } else { 1 };
        let arrow = if key == by { if desc { " ▼" } else { " ▲" } } else { "" };
        let _ =
            write!(head, "<th>{}</th>", link(&format!("?sort={}&desc={flip}", enc(key)), &format!("{label}{arrow}")));
    }
    let mut rows = String::new();
    for run in &runs {
        let _ = write!(
            rows,
            "<tr {}><td><input type=\"checkbox\" name=\"runs\" {}></td>",
            attr("data-run", &run.info.run_id),
            attr("value", &run.info.run_id)
        );
        for (_, key) in &columns {
            match key {
                Key::Attribute(a) if a == "run_name" => {
                    let child = run.tag(crate::client::PARENT_RUN_TAG).map_or("", |_| "↳ ");
                    let _ = write!(rows, "<td>{child}{}</td>", run_link(&run.info.run_id, &run.info.run_name));
                }
                Key::Attribute(a) if a == "start_time" => {
                    let _ = write!(rows, "<td>{}</td>", time(run.info.start_time));
                }
                _ => rows.push_str(&cell(run, key)),
            }
        }
        rows.push_str("</tr>");
    }
    Ok(page(
        &format!("Experiment {}", experiment.name),
        &format!(
            "<p>{} runs. Click a column to sort; tick runs to compare them.</p>\
             <form action=\"/ui/compare\" method=\"get\"><button type=\"submit\">Compare ticked runs</button>\
             <table id=\"runs\"><tr><th></th>{head}</tr>{rows}</table></form>",
            runs.len()
        ),
    ))
}

fn kv_table(id: &str, rows: impl Iterator<Item = (String, String)>) -> String {
    let body: String = rows.map(|(k, v)| format!("<tr><td>{}</td><td>{}</td></tr>", esc(&k), esc(&v))).collect();
    format!("<table {}><tr><th>Key</th><th>Value</th></tr>{body}</table>", attr("id", id))
}

async fn run(State(r): State<Registry>, Path(id): Path<String>) -> PageResult {
    let run = r.store.run(&id).await?;
    let root = run
        .info
        .artifact_uri
        .strip_prefix("mlflow-artifacts:")
        .unwrap_or(&run.info.artifact_uri)
        .trim_start_matches('/')
        .to_owned();
    let files = r.list_artifacts(&root).await.unwrap_or_default();
    let mut artifacts = String::new();
    let mut plots = String::new();
    for (name, is_dir, size) in &files {
        let root: Vec<String> = root.split('/').map(enc).collect();
        let url = format!("/api/2.0/mlflow-artifacts/artifacts/{}/{}", root.join("/"), enc(name));
        let _ = write!(
            artifacts,
            "<li>{}{}</li>",
            link(&url, name),
            if *is_dir { "/".into() } else { format!(" ({size} bytes)") }
        );
        if name.ends_with(".svg") || name.ends_with(".png") {
            let _ = write!(
                plots,
                "<figure><img {} {}><figcaption>{}</figcaption></figure>",
                attr("src", &url),
                attr("alt", name),
                esc(name)
            );
        }
    }
    let info = [
        ("Run ID", run.info.run_id.clone()),
        ("Status", run.info.status.clone()),
        ("Started", time(run.info.start_time)),
        ("Ended", run.info.end_time.map(time).unwrap_or_default()),
        ("Artifacts", run.info.artifact_uri.clone()),
    ];
    let parent = run
        .tag(crate::client::PARENT_RUN_TAG)
        .map(|p| format!("<p>Child of {}</p>", run_link(p, p)))
        .unwrap_or_default();
    let children: Vec<Run> = r
        .store
        .runs(std::slice::from_ref(&run.info.experiment_id), &["active"])
        .await?
        .into_iter()
        .filter(|c| c.tag(crate::client::PARENT_RUN_TAG) == Some(run.info.run_id.as_str()))
        .collect();
    let trials = trials_section(&children);
    Ok(page(
        &format!("Run {}", run.info.run_name),
        &format!(
            "{parent}<p>{back}</p>{info}<h2>Metrics</h2>{metrics}<h2>Parameters</h2>{params}{trials}\
             <h2>Plots</h2><div id=\"plots\">{plots}</div><h2>Artifacts</h2><ul id=\"artifacts\">{artifacts}</ul><h2>Tags</h2>{tags}",
            back = link(&format!("/ui/experiments/{}", enc(&run.info.experiment_id)), "Back to the experiment"),
            info = kv_table("info", info.iter().map(|(k, v)| (k.to_string(), v.clone()))),
            metrics = kv_table("metrics", run.data.metrics.iter().map(|m| (m.key.clone(), m.value.to_string()))),
            params = kv_table("params", run.data.params.iter().map(|p| (p.key.clone(), p.value.clone()))),
            tags = kv_table("tags", run.data.tags.iter().map(|t| (t.key.clone(), t.value.clone()))),
        ),
    ))
}

/// A study's trials as charts: the metric by trial with the best so far,
/// and each numeric hyperparameter against it. Empty for a run without children.
fn trials_section(children: &[Run]) -> String {
    let Some(metric) = children
        .iter()
        .flat_map(|c| c.data.metrics.iter().map(|m| m.key.as_str()))
        .find(|k| *k == "valid_roc_auc")
        .or_else(|| children.iter().find_map(|c| c.data.metrics.first().map(|m| m.key.as_str())))
    else {
        return String::new();
    };
    let lower_is_better = ["loss", "error", "rmse", "mae"].iter().any(|w| metric.contains(w));
    let trials: Vec<Trial> = children
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let value = c.data.metrics.iter().find(|m| m.key == metric)?.value;
            // `trial-07` is trial 7; otherwise the order the store gave.
            let digits = c.info.run_name.trim_start_matches(|ch: char| !ch.is_ascii_digit());
            Some(Trial {
                number: digits.parse().unwrap_or(i as f64),
                metric: value,
                stopped: c.info.status == "KILLED",
                params: c.data.params.iter().filter_map(|p| Some((p.key.clone(), p.value.parse().ok()?))).collect(),
            })
        })
        .collect();
    let drawn = charts::trials(&trials, metric, !lower_is_better)
        .and_then(|main| Ok((main, charts::params_against(&trials, metric)?)));
    match drawn {
        Ok((main, per_param)) => {
            let small: String = per_param
                .iter()
                .map(|(name, svg)| format!("<figure {}>{svg}</figure>", attr("data-param", name)))
                .collect();
            format!(
                "<h2>Trials</h2><p>{} child runs; hollow points stopped early.</p>\
                 <div id=\"trials-chart\">{main}</div><div id=\"params-charts\" class=\"small\">{small}</div>",
                trials.len()
            )
        }
        Err(e) => format!("<h2>Trials</h2><p>The charts could not be drawn: {}</p>", esc(&e)),
    }
}

/// `GET /ui/compare?runs=A&runs=B…`: runs side by side, metrics then
/// parameters, a row shaded where the runs differ.
async fn compare(State(r): State<Registry>, RawQuery(query): RawQuery) -> PageResult {
    let ids: Vec<String> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "runs")
        .map(|(_, v)| v.into_owned())
        .collect();
    if !(2..=10).contains(&ids.len()) {
        return Err(RegistryError::invalid(format!("tick 2 to 10 runs to compare, not {}", ids.len())).into());
    }
    let mut runs = Vec::with_capacity(ids.len());
    for id in &ids {
        runs.push(r.store.run(id).await?);
    }
    let mut head = String::from("<tr><th></th>");
    for run in &runs {
        let _ = write!(head, "<th>{}</th>", run_link(&run.info.run_id, &run.info.run_name));
    }
    head.push_str("</tr>");
    let metric = |run: &Run, k: &str| run.data.metrics.iter().find(|m| m.key == k).map(|m| format!("{:.4}", m.value));
    let param = |run: &Run, k: &str| run.data.params.iter().find(|p| p.key == k).map(|p| p.value.clone());
    let mut body = String::new();
    for (title, keys, value) in [
        (
            "Metrics",
            keys(&runs, |run| run.data.metrics.iter().map(|m| m.key.clone()).collect()),
            &metric as &dyn Fn(&Run, &str) -> Option<String>,
        ),
        ("Parameters", keys(&runs, |run| run.data.params.iter().map(|p| p.key.clone()).collect()), &param),
    ] {
        let _ = write!(body, "<tr><th colspan=\"{}\">{title}</th></tr>", runs.len() + 1);
        for key in keys {
            let cells: Vec<Option<String>> = runs.iter().map(|run| value(run, &key)).collect();
            let differs = cells.windows(2).any(|w| w[0] != w[1]);
            let _ = write!(body, "<tr{}><td>{}</td>", if differs { " class=\"diff\"" } else { "" }, esc(&key));
            for c in cells {
                let _ = write!(body, "<td class=\"num\">{}</td>", esc(c.as_deref().unwrap_or("")));
            }
            body.push_str("</tr>");
        }
    }
    Ok(page(
        &format!("Comparing {} runs", runs.len()),
        &format!("<p>Shaded rows differ.</p><table id=\"compare\">{head}{body}</table>"),
    ))
}

/// The union of each run's keys, sorted.
fn keys(runs: &[Run], of: impl Fn(&Run) -> Vec<String>) -> BTreeSet<String> {
    runs.iter().flat_map(of).collect()
}

async fn models(State(r): State<Registry>) -> PageResult {
    let mut body = String::new();
    let all = r.store.registered_models().await?;
    if all.is_empty() {
        body.push_str("<p>No registered models yet: `cartflow train` registers one.</p>");
    }
    for model in all {
        let mut rows = String::new();
        for v in r.store.model_versions(Some(&model.name)).await? {
            let _ = write!(
                rows,
                "<tr><td>{ver}</td><td>{aliases}</td><td>{created}</td><td>{run}</td><td>{src}</td><td>{desc}</td></tr>",
                ver = esc(&v.version),
                aliases = v
                    .aliases
                    .iter()
                    .map(|a| format!("<b class=\"alias\">@{}</b>", esc(a)))
                    .collect::<Vec<_>>()
                    .join(" "),
                created = time(v.creation_timestamp),
                run = run_link(&v.run_id, &v.run_id),
                src = esc(&v.source),
                desc = esc(&v.description)
            );
        }
        let _ = write!(
            body,
            "<h2 {id}>{name}</h2><p>{desc}</p><table class=\"versions\"><tr><th>Version</th><th>Aliases</th><th>Created</th><th>Run</th><th>Source</th><th>Description</th></tr>{rows}</table>",
            id = attr("id", &model.name),
            name = esc(&model.name),
            desc = esc(&model.description)
        );
    }
    Ok(page("Registered models", &body))
}

/// The pages, over the same registry state as the API, behind `registry:read`
/// and the page headers (no script, no framing).
pub fn router(registry: Registry) -> Router {
    let page = |route| scoped(Scope::RegistryRead, route);
    cartflow_http::headers::pages(
        Router::new()
            .route("/ui", get(|| async { Redirect::to("/ui/") }))
            .route("/ui/", page(get(experiments)))
            .route("/ui/experiments/{id}", page(get(runs)))
            .route("/ui/runs/{id}", page(get(run)))
            .route("/ui/compare", page(get(compare)))
            .route("/ui/models", page(get(models)))
            .with_state(registry),
    )
}
