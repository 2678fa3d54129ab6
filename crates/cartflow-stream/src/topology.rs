//! The pipeline as one topology: produce → validate → (lake), each stage on a
//! thread of its own, concurrently. A stage drains once the one before it has
//! finished, so [`run_pipeline`] returns when everything produced has gone all
//! the way through (or when the control stops). `cartflow run` and the
//! pipeline benchmark both run it; what a person sees of it (bars, `/health`)
//! comes through the [`Progress`] observer.

use std::time::Instant;

use cartflow_lake::Lake;
use cartflow_log::EventLog;

use crate::alerts::AlertConfig;
use crate::lake_sink::{LakeSinkConfig, LakeSinkStats, run_lake_sink};
use crate::produce::{ProduceConfig, ProduceStats, Source, run_produce};
use crate::validator::{ValidatorConfig, ValidatorStats, run_validator};
use crate::{Result, StageControl};

/// What the pipeline runs and with which settings.
pub struct Pipeline<'a> {
    pub log: &'a dyn EventLog,
    pub source: Source,
    pub produce: &'a ProduceConfig,
    pub validator: &'a ValidatorConfig,
    pub alerts: Option<AlertConfig>,
    /// `None`: validated and invalid stay on the log.
    pub lake: Option<(&'a Lake, &'a LakeSinkConfig)>,
}

/// One stage's progress, as it reports it.
pub enum Progress<'s> {
    Produce(&'s ProduceStats),
    Validate(&'s ValidatorStats),
    Lake(&'s LakeSinkStats),
}

/// What each stage did, and when produce and validate had finished.
#[derive(Debug)]
pub struct PipelineRun {
    pub produced: ProduceStats,
    pub validated: ValidatorStats,
    pub landed: Option<LakeSinkStats>,
    pub produce_secs: f64,
    pub validate_secs: f64,
    pub total_secs: f64,
}

/// Runs the pipeline until its source is exhausted and drained through, or
/// `control` stops. Stopping makes every stage finish the batch it holds.
pub fn run_pipeline(
    p: Pipeline<'_>,
    control: &StageControl,
    observe: &(dyn Fn(Progress<'_>) + Sync),
) -> Result<PipelineRun> {
    let started = Instant::now();
    let validate_control = control.with_drain(false);
    let lake_control = control.with_drain(false);
    let log = p.log;
    let (produced, validated, landed) = std::thread::scope(|s| {
        let lake_thread = p.lake.map(|(lake, cfg)| {
            let control = &lake_control;
            s.spawn(move || run_lake_sink(log, lake, cfg, control, &mut |st| observe(Progress::Lake(st))))
        });
        let validator_thread = s.spawn(|| {
            let r =
                run_validator(log, p.validator, p.alerts, &validate_control, &mut |st| observe(Progress::Validate(st)));
            (r, started.elapsed().as_secs_f64())
        });
        let produced = run_produce(log, p.source, p.produce, control, &mut |st| observe(Progress::Produce(st)))
            .map(|stats| (stats, started.elapsed().as_secs_f64()));
        // Whatever happened upstream, let each stage finish what is there.
        validate_control.start_draining();
        let validated = validator_thread.join().expect("validator thread");
        lake_control.start_draining();
        let landed = lake_thread.map(|t| t.join().expect("lake sink thread"));
        (produced, validated, landed)
    });
    let (produced, produce_secs) = produced?;
    let (validated, validate_secs) = validated;
    Ok(PipelineRun {
        produced,
        validated: validated?,
        landed: landed.transpose()?,
        produce_secs,
        validate_secs,
        total_secs: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use cartflow_log::{EmbeddedLog, EmbeddedOptions};
    use cartflow_sources::GeneratorConfig;

    use super::*;

    fn configs() -> (ProduceConfig, ValidatorConfig, LakeSinkConfig) {
        let produce = ProduceConfig { inject_invalid: 0.05, ..ProduceConfig::default() };
        (produce, ValidatorConfig::default(), LakeSinkConfig::default())
    }

    /// Everything produced reaches the lake: valid + invalid = produced, and
    /// the observer saw every stage.
    #[test]
    fn every_event_goes_all_the_way_through() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path().join("log"), EmbeddedOptions::default()).unwrap();
        let lake = Lake::open(dir.path().join("lake").to_str().unwrap(), "sink").unwrap();
        let (produce, validator, sink) = configs();
        let seen = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
        let run = run_pipeline(
            Pipeline {
                log: &log,
                source: Source::Generated(GeneratorConfig { events: 5_000, ..GeneratorConfig::default() }),
                produce: &produce,
                validator: &validator,
                alerts: None,
                lake: Some((&lake, &sink)),
            },
            &StageControl::new(false),
            &|p| {
                let (i, n) = match p {
                    Progress::Produce(s) => (0, s.records),
                    Progress::Validate(s) => (1, s.read),
                    Progress::Lake(s) => (2, s.read),
                };
                seen[i].fetch_max(n, Ordering::Relaxed);
            },
        )
        .unwrap();
        assert_eq!(run.produced.records, 5_000);
        assert_eq!(run.validated.valid + run.validated.invalid, 5_000);
        assert!(run.validated.invalid > 0, "5% injected invalid");
        assert_eq!(run.landed.as_ref().unwrap().read, 5_000);
        assert_eq!(seen.each_ref().map(|a| a.load(Ordering::Relaxed)), [5_000, 5_000, 5_000]);
    }

    /// A stopped control stops produce at once; the stages after it still end.
    #[test]
    fn a_stopped_pipeline_returns() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path().join("log"), EmbeddedOptions::default()).unwrap();
        let (produce, validator, _) = configs();
        let control = StageControl::new(false);
        control.stop();
        let run = run_pipeline(
            Pipeline {
                log: &log,
                source: Source::Generated(GeneratorConfig { events: 1_000_000, ..GeneratorConfig::default() }),
                produce: &produce,
                validator: &validator,
                alerts: None,
                lake: None,
            },
            &control,
            &|_| {},
        )
        .unwrap();
        assert_eq!(run.produced.records, 0);
        assert!(run.landed.is_none());
    }
}
