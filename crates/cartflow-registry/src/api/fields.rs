//! A request's fields, wherever MLflow's clients put them: the query string
//! (GET, and some DELETEs) and the JSON body, read field by field because
//! the clients send int64 fields sometimes as numbers, sometimes as strings.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::Value;

use crate::proto::{Metric, Tag, now_ms};
use crate::{ErrorCode, RegistryError, Result};

pub(crate) struct Fields(pub(crate) Value);

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = RegistryError;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        let mut fields = Self::from_query(req.uri().query().unwrap_or(""));
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ErrorCode::RequestLimitExceeded
            } else {
                ErrorCode::InvalidParameterValue
            };
            RegistryError { code, message: format!("request body: {}", e.body_text()) }
        })?;
        if !body.is_empty() {
            let Value::Object(given) = serde_json::from_slice(&body)
                .map_err(|e| RegistryError::invalid(format!("request body is not JSON: {e}")))?
            else {
                return Err(RegistryError::invalid("request body: expected a JSON object"));
            };
            fields.0.as_object_mut().expect("an object").extend(given);
        }
        Ok(fields)
    }
}

impl Fields {
    fn from_query(query: &str) -> Self {
        let mut map = serde_json::Map::new();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let (k, v) = (k.into_owned(), Value::String(v.into_owned()));
            match map.get_mut(&k) {
                Some(Value::Array(list)) => list.push(v),
                Some(first) => *first = Value::Array(vec![first.take(), v]),
                None => {
                    map.insert(k, v);
                }
            }
        }
        Self(Value::Object(map))
    }

    /// Fields of one element of a list (a metric of a batch).
    pub(crate) fn of(value: &Value) -> Self {
        Self(value.clone())
    }

    pub(crate) fn opt_str(&self, key: &str) -> Option<String> {
        match &self.0[key] {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    pub(crate) fn str(&self, key: &str) -> Result<String> {
        self.opt_str(key).ok_or_else(|| RegistryError::invalid(format!("missing value for required parameter '{key}'")))
    }

    pub(crate) fn opt_i64(&self, key: &str) -> Result<Option<i64>> {
        match &self.0[key] {
            Value::Null => Ok(None),
            Value::Number(n) => {
                n.as_i64().map(Some).ok_or_else(|| RegistryError::invalid(format!("'{key}' must be an integer")))
            }
            Value::String(s) => s
                .parse()
                .map(Some)
                .map_err(|_| RegistryError::invalid(format!("'{key}' must be an integer, not {s:?}"))),
            _ => Err(RegistryError::invalid(format!("'{key}' must be an integer"))),
        }
    }

    pub(crate) fn opt_bool(&self, key: &str) -> Result<bool> {
        match &self.0[key] {
            Value::Null => Ok(false),
            Value::Bool(b) => Ok(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
            v => Err(RegistryError::invalid(format!("'{key}' must be true or false, not {v}"))),
        }
    }

    pub(crate) fn list(&self, key: &str) -> Vec<String> {
        match &self.0[key] {
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned).or_else(|| v.as_i64().map(|i| i.to_string())))
                .collect(),
            Value::String(s) => vec![s.clone()],
            _ => Vec::new(),
        }
    }

    pub(crate) fn array(&self, key: &str) -> &[Value] {
        self.0[key].as_array().map_or(&[], Vec::as_slice)
    }

    pub(crate) fn tags(&self, key: &str) -> Result<Vec<Tag>> {
        match &self.0[key] {
            Value::Null => Ok(Vec::new()),
            v => serde_json::from_value(v.clone()).map_err(|e| RegistryError::invalid(format!("'{key}': {e}"))),
        }
    }

    /// `key` and `value` of a tag or param request.
    pub(crate) fn tag(&self) -> Result<Tag> {
        Ok(Tag { key: self.str("key")?, value: self.opt_str("value").unwrap_or_default() })
    }

    pub(crate) fn metric(&self) -> Result<Metric> {
        let value = match &self.0["value"] {
            Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
            Value::String(s) => {
                s.parse().map_err(|_| RegistryError::invalid(format!("metric value {s:?} is not a number")))?
            }
            _ => return Err(RegistryError::invalid("a metric needs a numeric 'value'")),
        };
        Ok(Metric {
            key: self.str("key")?,
            value,
            timestamp: self.opt_i64("timestamp")?.unwrap_or_else(now_ms),
            step: self.opt_i64("step")?.unwrap_or(0),
        })
    }

    pub(crate) fn run_id(&self) -> Result<String> {
        self.opt_str("run_id")
            .or_else(|| self.opt_str("run_uuid"))
            .ok_or_else(|| RegistryError::invalid("missing value for required parameter 'run_id'"))
    }

    /// `view_type` / `run_view_type`: which lifecycle stages a search sees.
    pub(crate) fn stages(&self) -> Vec<&'static str> {
        match self.opt_str("view_type").or_else(|| self.opt_str("run_view_type")).as_deref() {
            Some("DELETED_ONLY") => vec!["deleted"],
            Some("ALL") => vec!["active", "deleted"],
            _ => vec!["active"],
        }
    }

    pub(crate) fn filter(&self) -> String {
        self.opt_str("filter").unwrap_or_default()
    }
}
