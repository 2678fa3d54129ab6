//! What the dashboard shows beyond the server's own state: the funnel and
//! category performance from gold (DataFusion over the lake, cached for 30
//! seconds), and the served version's validation metrics and plots from the
//! registry.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use cartflow_registry::Client;
use cartflow_serve::dashboard::{Insights, InsightsError, ModelReport, Table};
use cartflow_serve::model::ServedModel;
use cartflow_warehouse::Warehouse;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

const GOLD_TTL: Duration = Duration::from_secs(30);

/// Validation metrics the trainer logs, in the order the dashboard lists them.
const METRICS: [&str; 8] = [
    "valid_roc_auc",
    "valid_pr_auc",
    "valid_log_loss",
    "valid_brier",
    "valid_f1",
    "valid_threshold",
    "logistic_regression_roc_auc",
    "base_rate_roc_auc",
];
const PLOTS: [(&str, &str); 4] = [
    ("ROC curve", "roc.svg"),
    ("Precision–recall curve", "pr.svg"),
    ("Calibration", "calibration.svg"),
    ("Feature importance", "importance.svg"),
];

pub struct LakeInsights {
    location: String,
    client: Client,
    /// The registry is mounted on the dashboard's own address: plot links are paths.
    mounted: bool,
    gold: Mutex<Option<(Instant, Vec<Table>)>>,
}

impl LakeInsights {
    pub fn new(location: String, client: Client, mounted: bool) -> Self {
        Self { location, client, mounted, gold: Mutex::new(None) }
    }

    fn query(&self) -> anyhow::Result<Vec<Table>> {
        let warehouse = Warehouse::open(&self.location)?;
        if warehouse.state().tables.is_empty() {
            return Ok(Vec::new());
        }
        let funnel = warehouse.sql(
            "SELECT event_type AS stage, COUNT(*) AS events, COUNT(DISTINCT user_session) AS sessions \
             FROM gold.fact_events GROUP BY event_type \
             ORDER BY CASE event_type WHEN 'view' THEN 0 WHEN 'cart' THEN 1 WHEN 'purchase' THEN 2 ELSE 3 END",
        )?;
        let categories = warehouse.sql(
            "SELECT category_l1, category_l2, views, carts, purchases, ROUND(revenue, 2) AS revenue, \
             ROUND(cart_to_purchase, 3) AS cart_to_purchase \
             FROM gold.vw_category_performance ORDER BY purchases DESC, views DESC LIMIT 10",
        )?;
        Ok(vec![table("Conversion funnel", &funnel)?, table("Top categories by purchases", &categories)?])
    }
}

/// Record batches as a table of display strings.
fn table(title: &str, batches: &[RecordBatch]) -> anyhow::Result<Table> {
    let mut t = Table { title: title.into(), ..Table::default() };
    let options = FormatOptions::default().with_null("—");
    for batch in batches {
        if t.columns.is_empty() {
            t.columns = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
        }
        let formatters: Vec<ArrayFormatter> =
            batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options)).collect::<Result<_, _>>()?;
        for row in 0..batch.num_rows() {
            t.rows.push(formatters.iter().map(|f| f.value(row).to_string()).collect());
        }
    }
    Ok(t)
}

impl Insights for LakeInsights {
    fn gold(&self) -> Result<Vec<Table>, InsightsError> {
        let mut cached = self.gold.lock().expect("gold cache lock");
        if let Some((_, tables)) = cached.as_ref().filter(|(at, _)| at.elapsed() < GOLD_TTL) {
            return Ok(tables.clone());
        }
        // `{:#}` keeps the whole chain of causes in the one message shown.
        let tables = self.query().map_err(|e| format!("{e:#}"))?;
        *cached = Some((Instant::now(), tables.clone()));
        Ok(tables)
    }

    fn model_report(&self, model: &ServedModel) -> Result<ModelReport, InsightsError> {
        let version = self.client.model_version(&model.name, &model.version)?;
        let run = self.client.run(&version.run_id)?;
        let metrics = METRICS.iter().filter_map(|k| run.metric(k).map(|v| (k.to_string(), v))).collect();
        let mut plots = Vec::new();
        for (title, file) in PLOTS {
            let url = self.client.artifact_url(&run.info.artifact_uri, file)?;
            let url = if self.mounted { url.strip_prefix(self.client.base()).unwrap_or(&url).to_owned() } else { url };
            plots.push((title.to_owned(), url));
        }
        Ok(ModelReport { metrics, plots })
    }
}
