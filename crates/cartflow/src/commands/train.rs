//! `cartflow train`: tunes, trains, logs and registers
//! ([`crate::wiring::training`]), then prints the validation table.

use anyhow::Result;
use cartflow_train::TrialState;

use super::Ctx;
use crate::cli::TrainArgs;
use crate::wiring::training::{Trained, train};

pub fn run(ctx: &Ctx, a: TrainArgs) -> Result<()> {
    crate::schedule::run(ctx, "train", a.study.is_some(), &a.schedule.clone(), || {
        let trained = train(ctx, a.clone())?;
        print_summary(&trained);
        Ok(())
    })
}

fn print_summary(t: &Trained) {
    let o = &t.outcome;
    let m = &o.metrics;
    let row = |name: &str, m: &cartflow_train::Metrics| {
        println!("  {name:<21} {:>7.4} {:>7.4} {:>8.4} {:>7.4}", m.roc_auc, m.pr_auc, m.log_loss, m.brier);
    };
    println!(
        "split by time: {} carts train ({:.1}% bought), {} validate ({:.1}% bought)",
        o.split.train_rows,
        100.0 * o.split.train_base_rate,
        o.split.valid_rows,
        100.0 * o.split.valid_base_rate
    );
    println!("  {:<21} {:>7} {:>7} {:>8} {:>7}", "validation", "ROC AUC", "PR AUC", "log loss", "Brier");
    row("model", m);
    for (name, b) in &o.baselines {
        row(name, b);
    }
    println!(
        "at threshold {:.3}: accuracy {:.3}, precision {:.3}, recall {:.3}, F1 {:.3}",
        m.decision.threshold, m.decision.accuracy, m.decision.precision, m.decision.recall, m.decision.f1
    );
    let pruned = o.trials.iter().filter(|t| t.state == TrialState::Pruned).count();
    println!(
        "{} trials ({pruned} pruned{}), best: {} trees, depth {}, learning rate {:.3}; {:.1}s",
        o.trials.len(),
        if o.timed_out { ", stopped by the timeout" } else { "" },
        o.model.ensemble.trees(),
        o.params.max_depth,
        o.params.learning_rate,
        o.seconds
    );
    match &t.registered {
        Some(r) => println!("model version {} ({}) in {}", r.version, r.alias, t.registry),
        None => println!("not registered here: {}", t.registry),
    }
}
