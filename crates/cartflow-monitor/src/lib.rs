//! How a served model does once it serves, measured exactly: every logged
//! prediction ([`record`]) waits for what its shopper did next ([`labels`]),
//! and its label goes to its model version's scorecards ([`scorecard`]),
//! in total and over the last hour and day ([`windows`]). The whole state is
//! one value that a stage snapshots with its input offsets, so a restart
//! counts every prediction and event once. No I/O.

pub mod labels;
pub mod record;
pub mod scorecard;
pub mod windows;

use cartflow_core::time::Micros;
use serde::{Deserialize, Serialize};

use crate::labels::{Labelled, Labeller, Waiting};
use crate::record::{LoggedPrediction, ModelVersion};
use crate::scorecard::{Figures, Outcome};
use crate::windows::Windowed;

/// One model version's figures over one window.
#[derive(Debug, Clone, Serialize)]
pub struct Report<'a> {
    pub model: &'a ModelVersion,
    pub window: &'static str,
    pub figures: Figures,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Monitor {
    labeller: Labeller,
    /// Every model version seen, in order of first sight (a [`Waiting`]'s `model`).
    models: Vec<ModelVersion>,
    scores: Vec<Windowed>,
    #[serde(skip)]
    labelled: Vec<Labelled>,
}

impl Monitor {
    /// `session_ttl`: how long a session without events lasts (the features' TTL).
    pub fn new(session_ttl: Micros) -> Self {
        Monitor { labeller: Labeller::new(session_ttl), models: Vec::new(), scores: Vec::new(), labelled: Vec::new() }
    }

    pub fn predicted(&mut self, p: &LoggedPrediction) {
        let model = match self.models.iter().position(|m| m.name == p.model.name && m.version == p.model.version) {
            Some(i) => i,
            None => {
                self.models.push(p.model.clone());
                self.scores.push(Windowed::default());
                self.models.len() - 1
            }
        };
        let waiting = Waiting {
            model: model as u32,
            product_id: p.product_id,
            event_time: p.event_time,
            probability: p.probability,
            will_purchase: p.will_purchase,
        };
        self.labeller.predicted(p.user_session.as_deref(), waiting);
    }

    /// A validated event: labels the predictions it decides.
    pub fn event(&mut self, e: &cartflow_core::Event) {
        self.labeller.event(e, &mut self.labelled);
        self.score();
    }

    /// Ends the sessions idle for the TTL before `until`: the caller's
    /// watermark over its inputs (no event older than it is still to come).
    pub fn expire(&mut self, until: Micros) {
        self.labeller.expire(until, &mut self.labelled);
        self.score();
    }

    fn score(&mut self) {
        for l in self.labelled.drain(..) {
            let o = Outcome {
                probability: l.prediction.probability,
                will_purchase: l.prediction.will_purchase,
                bought: l.bought,
            };
            self.scores[l.prediction.model as usize].add(l.at, o);
        }
    }

    /// The event time the labels have reached.
    pub fn watermark(&self) -> Micros {
        self.labeller.watermark()
    }

    pub fn waiting(&self) -> usize {
        self.labeller.waiting()
    }

    pub fn unlabelable(&self) -> u64 {
        self.labeller.unlabelable
    }

    pub fn labelled(&self) -> u64 {
        self.scores.iter().map(Windowed::labelled).sum()
    }

    /// Every model version's figures over each window, ending at the watermark.
    pub fn reports(&mut self) -> Vec<Report<'_>> {
        let now = self.watermark();
        for s in &mut self.scores {
            s.forget_before(now);
        }
        self.models
            .iter()
            .zip(&self.scores)
            .flat_map(|(model, scores)| {
                windows::WINDOWS.into_iter().zip(scores.figures(now)).map(move |(window, figures)| Report {
                    model,
                    window,
                    figures,
                })
            })
            .collect()
    }
}
