//! The feature catalogue: every feature's name, type, set, view and meaning,
//! with the one accessor that reads it from a computed [`CartFeatures`].
//! The training set's columns, the feature API's answers and the model's
//! inputs are all listed from here, in this order.

use serde::{Deserialize, Serialize};

use crate::compute::CartFeatures;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum FeatureType {
    Int64,
    Float64,
    String,
}

/// v1 is the reference design's six features, made point-in-time correct;
/// v2 is v1 plus what the moment of the cart really knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureSet {
    V1,
    V2,
}

impl FeatureSet {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "v1" => Some(Self::V1),
            "v2" => Some(Self::V2),
            _ => None,
        }
    }

    /// Feast's name for the set: a feature service.
    pub fn service_name(self) -> &'static str {
        match self {
            Self::V1 => "cart_v1",
            Self::V2 => "cart_v2",
        }
    }

    pub fn from_service(name: &str) -> Option<Self> {
        [Self::V1, Self::V2].into_iter().find(|s| s.service_name() == name)
    }

    /// The features of this set, in catalogue order.
    pub fn features(self) -> impl Iterator<Item = &'static FeatureDef> {
        FEATURES.iter().filter(move |f| f.set <= self)
    }
}

/// One feature's value. Strings borrow from the computed features.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Float(f64),
    Str(&'a str),
}

pub struct FeatureDef {
    pub name: &'static str,
    pub dtype: FeatureType,
    /// The first set that has it.
    pub set: FeatureSet,
    /// The feature view (Feast's grouping) it belongs to, named by what it describes.
    pub view: &'static str,
    pub description: &'static str,
    pub get: fn(&CartFeatures) -> Value<'_>,
}

impl std::fmt::Debug for FeatureDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureDef").field("name", &self.name).finish()
    }
}

fn opt_str(s: &Option<String>) -> Value<'_> {
    s.as_deref().map_or(Value::Null, Value::Str)
}

fn opt_float(v: Option<f64>) -> Value<'static> {
    v.map_or(Value::Null, Value::Float)
}

pub const CART_EVENT: &str = "cart_event";
pub const SESSION_ACTIVITY: &str = "session_activity";
pub const USER_HISTORY: &str = "user_history";
pub const PRODUCT_HISTORY: &str = "product_history";

use FeatureSet::{V1, V2};
use FeatureType::{Float64, Int64, String as Str};

/// Every feature, once. "Before t" is strictly earlier; "so far" is at or
/// before t, the cart itself included.
pub static FEATURES: [FeatureDef; 19] = [
    FeatureDef {
        name: "price",
        dtype: Float64,
        set: V1,
        view: CART_EVENT,
        description: "price of the carted item",
        get: |f| opt_float(f.price),
    },
    FeatureDef {
        name: "brand",
        dtype: Str,
        set: V1,
        view: CART_EVENT,
        description: "brand of the carted item; missing when empty",
        get: |f| opt_str(&f.brand),
    },
    FeatureDef {
        name: "category_code_level1",
        dtype: Str,
        set: V1,
        view: CART_EVENT,
        description: "first part of category_code split on '.'",
        get: |f| opt_str(&f.category_code_level1),
    },
    FeatureDef {
        name: "category_code_level2",
        dtype: Str,
        set: V1,
        view: CART_EVENT,
        description: "second part of category_code split on '.'",
        get: |f| opt_str(&f.category_code_level2),
    },
    FeatureDef {
        name: "event_weekday",
        dtype: Int64,
        set: V1,
        view: CART_EVENT,
        description: "weekday of the cart in UTC, Monday = 0",
        get: |f| Value::Int(f.event_weekday),
    },
    FeatureDef {
        name: "activity_count",
        dtype: Int64,
        set: V1,
        view: SESSION_ACTIVITY,
        description: "events of the session so far, the cart included",
        get: |f| Value::Int(f.activity_count),
    },
    FeatureDef {
        name: "event_hour",
        dtype: Int64,
        set: V2,
        view: CART_EVENT,
        description: "hour of day of the cart in UTC",
        get: |f| Value::Int(f.event_hour),
    },
    FeatureDef {
        name: "session_views",
        dtype: Int64,
        set: V2,
        view: SESSION_ACTIVITY,
        description: "views in the session so far",
        get: |f| Value::Int(f.session_views),
    },
    FeatureDef {
        name: "session_carts",
        dtype: Int64,
        set: V2,
        view: SESSION_ACTIVITY,
        description: "carts in the session so far, this one included",
        get: |f| Value::Int(f.session_carts),
    },
    FeatureDef {
        name: "session_removals",
        dtype: Int64,
        set: V2,
        view: SESSION_ACTIVITY,
        description: "removals from the cart in the session so far",
        get: |f| Value::Int(f.session_removals),
    },
    FeatureDef {
        name: "session_distinct_products",
        dtype: Int64,
        set: V2,
        view: SESSION_ACTIVITY,
        description: "distinct products the session touched so far, the carted one included",
        get: |f| Value::Int(f.session_distinct_products),
    },
    FeatureDef {
        name: "session_duration_seconds",
        dtype: Float64,
        set: V2,
        view: SESSION_ACTIVITY,
        description: "seconds from the session's first event to the cart",
        get: |f| Value::Float(f.session_duration_seconds),
    },
    FeatureDef {
        name: "product_views_in_session",
        dtype: Int64,
        set: V2,
        view: SESSION_ACTIVITY,
        description: "views of the carted product in the session so far",
        get: |f| Value::Int(f.product_views_in_session),
    },
    FeatureDef {
        name: "user_prior_sessions",
        dtype: Int64,
        set: V2,
        view: USER_HISTORY,
        description: "the user's other sessions begun before the cart",
        get: |f| Value::Int(f.user_prior_sessions),
    },
    FeatureDef {
        name: "user_prior_carts",
        dtype: Int64,
        set: V2,
        view: USER_HISTORY,
        description: "the user's carts before the cart, in any session",
        get: |f| Value::Int(f.user_prior_carts),
    },
    FeatureDef {
        name: "user_prior_purchases",
        dtype: Int64,
        set: V2,
        view: USER_HISTORY,
        description: "the user's purchases before the cart, in any session",
        get: |f| Value::Int(f.user_prior_purchases),
    },
    FeatureDef {
        name: "product_prior_carts",
        dtype: Int64,
        set: V2,
        view: PRODUCT_HISTORY,
        description: "carts of the product by anyone before the cart",
        get: |f| Value::Int(f.product_prior_carts),
    },
    FeatureDef {
        name: "product_prior_purchases",
        dtype: Int64,
        set: V2,
        view: PRODUCT_HISTORY,
        description: "purchases of the product by anyone before the cart",
        get: |f| Value::Int(f.product_prior_purchases),
    },
    FeatureDef {
        name: "product_conversion_rate",
        dtype: Float64,
        set: V2,
        view: PRODUCT_HISTORY,
        description: "(prior purchases + 1) / (prior carts + 2): Laplace-smoothed, so new products sit at 0.5",
        get: |f| Value::Float(f.product_conversion_rate),
    },
];

pub fn feature(name: &str) -> Option<&'static FeatureDef> {
    FEATURES.iter().find(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_v1_is_the_reference_six() {
        let mut names: Vec<_> = FEATURES.iter().map(|f| f.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), FEATURES.len());
        let v1: Vec<_> = FeatureSet::V1.features().map(|f| f.name).collect();
        assert_eq!(
            v1,
            ["price", "brand", "category_code_level1", "category_code_level2", "event_weekday", "activity_count"]
        );
        assert_eq!(FeatureSet::V2.features().count(), FEATURES.len());
        assert_eq!(FeatureSet::from_service("cart_v2"), Some(FeatureSet::V2));
    }
}
