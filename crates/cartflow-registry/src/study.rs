//! Tuning studies shared by workers on several machines, in the registry's
//! database (PostgreSQL, or SQLite for workers on one machine), as Optuna's
//! RDB storage keeps them: a row per study with its budget and the next
//! trial number, a row per trial with its state, worker, heartbeat, point
//! and loss, and a row per trial and ASHA rung with the loss there. Trial
//! numbers are claimed by one `UPDATE … RETURNING`, so no two workers run
//! the same trial; a running trial whose heartbeat is older than the
//! study's `stale` is failed by the next worker that looks. At the end each
//! worker offers its best trial (the model is in its memory) and the best
//! offer of a live worker is registered, once.

use std::time::Duration;

use sqlx::AnyPool;
use sqlx::Row;

use crate::Result;
use crate::proto::now_ms;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cartflow_studies (
    name TEXT PRIMARY KEY,
    trials BIGINT NOT NULL,
    next_trial BIGINT NOT NULL,
    registered_by TEXT,
    created_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS cartflow_study_trials (
    study TEXT NOT NULL,
    number BIGINT NOT NULL,
    state TEXT NOT NULL,
    worker TEXT NOT NULL,
    heartbeat_ms BIGINT NOT NULL,
    point TEXT,
    loss DOUBLE PRECISION,
    report TEXT,
    proposed_from TEXT,
    PRIMARY KEY (study, number)
);
CREATE TABLE IF NOT EXISTS cartflow_study_offers (
    study TEXT NOT NULL,
    worker TEXT NOT NULL,
    number BIGINT NOT NULL,
    loss DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (study, worker)
);
CREATE TABLE IF NOT EXISTS cartflow_study_rungs (
    study TEXT NOT NULL,
    number BIGINT NOT NULL,
    rung BIGINT NOT NULL,
    loss DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (study, number, rung)
)";

/// A trial's row.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyTrial {
    pub number: u64,
    /// `running`, `complete`, `pruned` or `failed`.
    pub state: String,
    pub worker: String,
    pub loss: Option<f64>,
    /// The trials whose results its proposal was made from.
    pub proposed_from: Vec<u64>,
    /// When its worker last said it was alive (or finished it).
    pub heartbeat_ms: i64,
}

/// One study, as one worker sees it.
pub struct SharedStudy {
    pool: AnyPool,
    name: String,
    worker: String,
    stale: Duration,
    /// The study's budget (the first worker's `--trials`).
    pub trials: u64,
}

impl SharedStudy {
    /// Opens study `name` at `url` (creating its tables, and the study with
    /// `trials` trials if it is new) for the worker called `worker`.
    pub async fn open(url: &str, name: &str, trials: u64, worker: &str, stale: Duration) -> Result<SharedStudy> {
        crate::store::check_name("study name", name, 250)?;
        sqlx::any::install_default_drivers();
        let url = match url.strip_prefix("sqlite://") {
            Some(path) if !path.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_owned(),
        };
        let pool = sqlx::any::AnyPoolOptions::new().max_connections(4).connect(&url).await?;
        for statement in SCHEMA.split(';') {
            // Workers starting together race on `CREATE TABLE IF NOT EXISTS`, which
            // PostgreSQL can refuse to the loser (a duplicate type): it exists then.
            let mut tries = 0;
            while let Err(e) = sqlx::query(statement).execute(&pool).await {
                tries += 1;
                if tries == 3 {
                    return Err(e.into());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        sqlx::query(
            "INSERT INTO cartflow_studies (name, trials, next_trial, created_ms) VALUES ($1, $2, 0, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(trials as i64)
        .bind(now_ms())
        .execute(&pool)
        .await?;
        let row =
            sqlx::query("SELECT trials FROM cartflow_studies WHERE name = $1").bind(name).fetch_one(&pool).await?;
        let trials = row.try_get::<i64, _>("trials")? as u64;
        Ok(SharedStudy { pool, name: name.to_owned(), worker: worker.to_owned(), stale, trials })
    }

    /// Fails the running trials whose worker stopped beating.
    async fn fail_stale(&self) -> Result<u64> {
        let before = now_ms() - self.stale.as_millis() as i64;
        let done = sqlx::query(
            "UPDATE cartflow_study_trials SET state = 'failed' \
             WHERE study = $1 AND state = 'running' AND heartbeat_ms < $2",
        )
        .bind(&self.name)
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The next trial number for this worker, or `None` when all have started.
    pub async fn claim(&self) -> Result<Option<u64>> {
        let failed = self.fail_stale().await?;
        if failed > 0 {
            tracing::warn!(study = %self.name, failed, "failed trials whose worker stopped beating");
        }
        let row = sqlx::query(
            "UPDATE cartflow_studies SET next_trial = next_trial + 1 \
             WHERE name = $1 AND next_trial < trials RETURNING next_trial - 1 AS number",
        )
        .bind(&self.name)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let number: i64 = row.try_get("number")?;
        sqlx::query(
            "INSERT INTO cartflow_study_trials (study, number, state, worker, heartbeat_ms) \
             VALUES ($1, $2, 'running', $3, $4)",
        )
        .bind(&self.name)
        .bind(number)
        .bind(&self.worker)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(Some(number as u64))
    }

    /// Every finished trial's point (JSON numbers) and loss, with its number.
    pub async fn finished(&self) -> Result<Vec<(u64, Vec<f64>, f64)>> {
        let rows = sqlx::query(
            "SELECT number, point, loss FROM cartflow_study_trials \
             WHERE study = $1 AND state IN ('complete', 'pruned') AND point IS NOT NULL ORDER BY number",
        )
        .bind(&self.name)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let point: String = row.try_get("point")?;
            let point = serde_json::from_str(&point)
                .map_err(|e| crate::RegistryError::internal(format!("study {}: a trial's point: {e}", self.name)))?;
            out.push((row.try_get::<i64, _>("number")? as u64, point, row.try_get("loss")?));
        }
        Ok(out)
    }

    /// Notes which finished trials `trial`'s proposal came from.
    pub async fn proposed(&self, trial: u64, from: &[u64]) -> Result<()> {
        let from = serde_json::to_string(from).expect("numbers serialize");
        sqlx::query("UPDATE cartflow_study_trials SET proposed_from = $1 WHERE study = $2 AND number = $3")
            .bind(from)
            .bind(&self.name)
            .bind(trial as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records `trial`'s loss at `rung`; returns every loss the study has there.
    pub async fn rung(&self, trial: u64, rung: u64, loss: f64) -> Result<Vec<f64>> {
        sqlx::query(
            "INSERT INTO cartflow_study_rungs (study, number, rung, loss) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (study, number, rung) DO UPDATE SET loss = excluded.loss",
        )
        .bind(&self.name)
        .bind(trial as i64)
        .bind(rung as i64)
        .bind(loss)
        .execute(&self.pool)
        .await?;
        self.alive(&[trial]).await?;
        let rows = sqlx::query("SELECT loss FROM cartflow_study_rungs WHERE study = $1 AND rung = $2")
            .bind(&self.name)
            .bind(rung as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("loss")?)).collect()
    }

    /// A trial ended: `state` is `complete` or `pruned`.
    pub async fn finish(&self, trial: u64, state: &str, point: Option<&[f64]>, loss: f64, report: &str) -> Result<()> {
        let point = point.map(|p| serde_json::to_string(p).expect("numbers serialize"));
        sqlx::query(
            "UPDATE cartflow_study_trials SET state = $1, point = $2, loss = $3, report = $4, heartbeat_ms = $5 \
             WHERE study = $6 AND number = $7 AND worker = $8",
        )
        .bind(state)
        .bind(point)
        .bind(loss)
        .bind(report)
        .bind(now_ms())
        .bind(&self.name)
        .bind(trial as i64)
        .bind(&self.worker)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// This worker's running trials are alive.
    pub async fn alive(&self, trials: &[u64]) -> Result<()> {
        for t in trials {
            sqlx::query(
                "UPDATE cartflow_study_trials SET heartbeat_ms = $1 \
                 WHERE study = $2 AND number = $3 AND state = 'running'",
            )
            .bind(now_ms())
            .bind(&self.name)
            .bind(*t as i64)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// Waits until no trial of the study is running (failing those whose
    /// worker stopped beating), then returns every trial.
    pub async fn settle(&self) -> Result<Vec<StudyTrial>> {
        loop {
            self.fail_stale().await?;
            let trials = self.trials_now().await?;
            if trials.iter().all(|t| t.state != "running") {
                return Ok(trials);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub async fn trials_now(&self) -> Result<Vec<StudyTrial>> {
        let rows = sqlx::query(
            "SELECT number, state, worker, loss, proposed_from, heartbeat_ms FROM cartflow_study_trials \
             WHERE study = $1 ORDER BY number",
        )
        .bind(&self.name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let from: Option<String> = r.try_get("proposed_from")?;
                Ok(StudyTrial {
                    number: r.try_get::<i64, _>("number")? as u64,
                    state: r.try_get("state")?,
                    worker: r.try_get("worker")?,
                    loss: r.try_get("loss")?,
                    proposed_from: from.and_then(|f| serde_json::from_str::<Vec<u64>>(&f).ok()).unwrap_or_default(),
                    heartbeat_ms: r.try_get("heartbeat_ms")?,
                })
            })
            .collect()
    }

    /// Offers this worker's best complete trial (whose model it holds) for registration.
    pub async fn offer(&self, trial: u64, loss: f64) -> Result<()> {
        sqlx::query(
            "INSERT INTO cartflow_study_offers (study, worker, number, loss) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (study, worker) DO UPDATE SET number = excluded.number, loss = excluded.loss",
        )
        .bind(&self.name)
        .bind(&self.worker)
        .bind(trial as i64)
        .bind(loss)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The best offered trial and its worker, once no trial runs and every
    /// worker that completed a trial has offered or fallen silent (a worker
    /// that died took its models with it: its trials cannot be registered).
    pub async fn winner(&self) -> Result<Option<(String, u64, f64)>> {
        loop {
            let trials = self.settle().await?;
            let offers = sqlx::query("SELECT worker, number, loss FROM cartflow_study_offers WHERE study = $1")
                .bind(&self.name)
                .fetch_all(&self.pool)
                .await?;
            let offered: Vec<(String, u64, f64)> = offers
                .iter()
                .map(|r| Ok((r.try_get("worker")?, r.try_get::<i64, _>("number")? as u64, r.try_get("loss")?)))
                .collect::<Result<_>>()?;
            let silent_since = now_ms() - self.stale.as_millis() as i64;
            let waiting = trials.iter().any(|t| {
                t.state == "complete"
                    && !offered.iter().any(|(w, _, _)| *w == t.worker)
                    && self.last_beat(&trials, &t.worker) >= silent_since
            });
            if !waiting {
                return Ok(offered.into_iter().min_by(|a, b| a.2.total_cmp(&b.2)));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// A worker's newest heartbeat over its trials.
    fn last_beat(&self, trials: &[StudyTrial], worker: &str) -> i64 {
        trials.iter().filter(|t| t.worker == worker).map(|t| t.heartbeat_ms).max().unwrap_or(0)
    }

    /// Takes the study's one registration for this worker: true once, for one worker.
    pub async fn claim_registration(&self) -> Result<bool> {
        let done =
            sqlx::query("UPDATE cartflow_studies SET registered_by = $1 WHERE name = $2 AND registered_by IS NULL")
                .bind(&self.worker)
                .bind(&self.name)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    pub fn worker(&self) -> &str {
        &self.worker
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}
