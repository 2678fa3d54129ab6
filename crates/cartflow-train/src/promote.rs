//! Champion or challenger: the rule, as a pure function. A new model takes
//! the alias `champion` only when its validation ROC AUC beats the current
//! champion's on the same validation window (the champion is scored again on
//! it, so the two see the same carts); otherwise it waits as `challenger`.

/// The alias serving loads, and the one a model gets when it does not beat it.
pub const CHAMPION: &str = "champion";
pub const CHALLENGER: &str = "challenger";

/// The current champion, scored on the new model's validation window.
#[derive(Debug, Clone, PartialEq)]
pub struct Incumbent {
    pub version: String,
    pub roc_auc: f64,
}

/// Which alias the new model gets, and why, in words for the run's tags.
#[derive(Debug, Clone, PartialEq)]
pub struct Promotion {
    pub alias: &'static str,
    pub reason: String,
}

pub fn promote(new_auc: f64, champion: Option<&Incumbent>) -> Promotion {
    let Some(c) = champion else {
        return Promotion { alias: CHAMPION, reason: "there was no champion".into() };
    };
    // NaN (an AUC that could not be computed) never wins.
    let (alias, verb) = if new_auc > c.roc_auc { (CHAMPION, "beats") } else { (CHALLENGER, "does not beat") };
    Promotion {
        alias,
        reason: format!(
            "validation ROC AUC {new_auc:.4} {verb} champion v{}'s {:.4} on the same window",
            c.version, c.roc_auc
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn champion(auc: f64) -> Incumbent {
        Incumbent { version: "3".into(), roc_auc: auc }
    }

    #[test]
    fn the_first_model_is_champion() {
        assert_eq!(promote(0.51, None), Promotion { alias: CHAMPION, reason: "there was no champion".into() });
    }

    #[test]
    fn only_a_better_model_takes_the_alias() {
        let better = promote(0.7312, Some(&champion(0.7301)));
        assert_eq!(better.alias, CHAMPION);
        assert_eq!(better.reason, "validation ROC AUC 0.7312 beats champion v3's 0.7301 on the same window");
        let same = promote(0.7301, Some(&champion(0.7301)));
        assert_eq!(same.alias, CHALLENGER, "a tie keeps the champion");
        assert!(same.reason.contains("does not beat champion v3"), "{}", same.reason);
        assert_eq!(promote(0.60, Some(&champion(0.70))).alias, CHALLENGER);
        assert_eq!(promote(f64::NAN, Some(&champion(0.70))).alias, CHALLENGER);
    }
}
