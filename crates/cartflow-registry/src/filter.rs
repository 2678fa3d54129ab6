//! MLflow's search language: `metrics.auc > 0.8 AND params.depth = '6' AND
//! tags.team LIKE 'cart%' AND tags.mlflow.parentRunId IS NULL` filters, and
//! `metrics.auc DESC` orderings, over runs, experiments, registered models,
//! model versions and logged models. Parsed by hand: it is a dozen tokens of
//! grammar and no crate speaks it. Evaluated in memory over what the store
//! loaded, with MLflow's meaning: a comparison with a key the item lacks is
//! false (MLflow joins), `IS NULL` asks for the missing ones.
//!
//! Work is bounded: a filter is at most [`MAX_FILTER_LEN`] characters, and
//! `LIKE` patterns compile once into a regex (the `regex` crate matches in
//! time linear in the text), never a backtracking or quadratic matcher.

use std::cmp::Ordering;

use regex::{Regex, RegexBuilder};

use crate::proto::{Experiment, LoggedModel, ModelVersion, RegisteredModel, Run};
use crate::{RegistryError, Result};

/// The longest filter accepted: far above any a person writes.
pub const MAX_FILTER_LEN: usize = 4096;

/// What a filter key names: `metrics.x`, `params.x`, `tags.x`, or an attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    Metric(String),
    Param(String),
    Tag(String),
    Attribute(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Number(f64),
    Text(String),
    List(Vec<String>),
    /// `IS NULL` and `IS NOT NULL` compare with nothing.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
    ILike,
    In,
    NotIn,
    IsNull,
    IsNotNull,
}

#[derive(Debug, Clone)]
pub struct Clause {
    pub key: Key,
    pub op: Op,
    pub value: Literal,
    /// `LIKE`/`ILIKE`'s pattern, compiled once.
    pattern: Option<Regex>,
}

impl PartialEq for Clause {
    fn eq(&self, other: &Self) -> bool {
        (&self.key, self.op, &self.value) == (&other.key, other.op, &other.value)
    }
}

/// A value of an item under a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'a> {
    Number(f64),
    Text(&'a str),
}

/// Something the filter can look into.
pub trait Searchable {
    fn field(&self, key: &Key) -> Option<Field<'_>>;
}

fn tag<'a>(tags: &'a [crate::proto::Tag], k: &str) -> Option<Field<'a>> {
    tags.iter().find(|t| t.key == k).map(|t| Field::Text(&t.value))
}

impl Searchable for Run {
    fn field(&self, key: &Key) -> Option<Field<'_>> {
        match key {
            Key::Metric(k) => self.metric(k).map(Field::Number),
            Key::Param(k) => self.param(k).map(Field::Text),
            Key::Tag(k) => self.tag(k).map(Field::Text),
            Key::Attribute(a) => match a.as_str() {
                "run_id" | "run_uuid" => Some(Field::Text(&self.info.run_id)),
                "run_name" => Some(Field::Text(&self.info.run_name)),
                "status" => Some(Field::Text(&self.info.status)),
                "user_id" => Some(Field::Text(&self.info.user_id)),
                "artifact_uri" => Some(Field::Text(&self.info.artifact_uri)),
                "lifecycle_stage" => Some(Field::Text(&self.info.lifecycle_stage)),
                "start_time" => Some(Field::Number(self.info.start_time as f64)),
                "end_time" => self.info.end_time.map(|t| Field::Number(t as f64)),
                _ => None,
            },
        }
    }
}

impl Searchable for Experiment {
    fn field(&self, key: &Key) -> Option<Field<'_>> {
        match key {
            Key::Tag(k) => tag(&self.tags, k),
            Key::Attribute(a) => match a.as_str() {
                "name" => Some(Field::Text(&self.name)),
                "experiment_id" => Some(Field::Text(&self.experiment_id)),
                "creation_time" => Some(Field::Number(self.creation_time as f64)),
                "last_update_time" => Some(Field::Number(self.last_update_time as f64)),
                _ => None,
            },
            _ => None,
        }
    }
}

impl Searchable for RegisteredModel {
    fn field(&self, key: &Key) -> Option<Field<'_>> {
        match key {
            Key::Tag(k) => tag(&self.tags, k),
            Key::Attribute(a) => match a.as_str() {
                "name" => Some(Field::Text(&self.name)),
                "creation_timestamp" => Some(Field::Number(self.creation_timestamp as f64)),
                "last_updated_timestamp" | "timestamp" => Some(Field::Number(self.last_updated_timestamp as f64)),
                _ => None,
            },
            _ => None,
        }
    }
}

impl Searchable for ModelVersion {
    fn field(&self, key: &Key) -> Option<Field<'_>> {
        match key {
            Key::Tag(k) => tag(&self.tags, k),
            Key::Attribute(a) => match a.as_str() {
                "name" => Some(Field::Text(&self.name)),
                "run_id" => Some(Field::Text(&self.run_id)),
                "source" | "source_path" => Some(Field::Text(&self.source)),
                "version" | "version_number" => self.version.parse().ok().map(Field::Number),
                "current_stage" => Some(Field::Text(&self.current_stage)),
                "model_id" => Some(Field::Text(&self.model_id)),
                "creation_timestamp" => Some(Field::Number(self.creation_timestamp as f64)),
                "last_updated_timestamp" | "timestamp" => Some(Field::Number(self.last_updated_timestamp as f64)),
                _ => None,
            },
            _ => None,
        }
    }
}

impl Searchable for LoggedModel {
    fn field(&self, key: &Key) -> Option<Field<'_>> {
        let i = &self.info;
        match key {
            Key::Metric(k) => self.metric(k).map(Field::Number),
            Key::Param(k) => self.param(k).map(Field::Text),
            Key::Tag(k) => self.tag(k).map(Field::Text),
            Key::Attribute(a) => match a.as_str() {
                "model_id" => Some(Field::Text(&i.model_id)),
                "name" => Some(Field::Text(&i.name)),
                "status" => Some(Field::Text(&i.status)),
                "model_type" => Some(Field::Text(&i.model_type)),
                "source_run_id" => Some(Field::Text(&i.source_run_id)),
                "experiment_id" => Some(Field::Text(&i.experiment_id)),
                "creation_timestamp" | "creation_time" => Some(Field::Number(i.creation_timestamp_ms as f64)),
                "last_updated_timestamp" => Some(Field::Number(i.last_updated_timestamp_ms as f64)),
                _ => None,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Op(String),
    Open,
    Close,
    Comma,
}

fn tokens(s: &str) -> Result<Vec<Token>> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let quoted = |from: usize, quote: char| -> Result<(String, usize)> {
        let end = chars[from..].iter().position(|&d| d == quote).ok_or_else(|| bad(s, "a quote is not closed"))?;
        Ok((chars[from..from + end].iter().collect(), from + end + 1))
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => (out.push(Token::Open), i += 1).1,
            ')' => (out.push(Token::Close), i += 1).1,
            ',' => (out.push(Token::Comma), i += 1).1,
            '\'' | '"' => {
                let (text, next) = quoted(i + 1, c)?;
                out.push(Token::Text(text));
                i = next;
            }
            '=' | '!' | '<' | '>' => {
                let two = chars.get(i + 1) == Some(&'=');
                let op: String = chars[i..i + 1 + two as usize].iter().collect();
                if op == "!" {
                    return Err(bad(s, "'!' must be followed by '='"));
                }
                out.push(Token::Op(op));
                i += 1 + two as usize;
            }
            _ => {
                // A key like metrics.`my auc` or params."a b", a keyword, or a number.
                let mut word = String::new();
                while i < chars.len() && !chars[i].is_whitespace() && !"=!<>(),'\"".contains(chars[i])
                    || i < chars.len() && chars[i] == '`'
                {
                    if chars[i] == '`' {
                        let (part, next) = quoted(i + 1, '`')?;
                        word.push_str(&part);
                        i = next;
                    } else {
                        word.push(chars[i]);
                        i += 1;
                    }
                }
                if word.ends_with('.') && matches!(chars.get(i), Some('"')) {
                    let (part, next) = quoted(i + 1, '"')?;
                    word.push_str(&part);
                    i = next;
                }
                out.push(Token::Word(word));
            }
        }
    }
    Ok(out)
}

fn bad(filter: &str, why: &str) -> RegistryError {
    let shown: String = filter.chars().take(200).collect();
    RegistryError::invalid(format!("filter {shown:?}: {why}"))
}

fn key(word: &str) -> Key {
    match word.split_once('.') {
        Some(("metrics" | "metric", k)) => Key::Metric(k.to_owned()),
        Some(("params" | "param" | "parameter" | "parameters", k)) => Key::Param(k.to_owned()),
        Some(("tags" | "tag", k)) => Key::Tag(k.to_owned()),
        Some(("attributes" | "attribute" | "attr" | "run", k)) => Key::Attribute(k.to_owned()),
        _ => Key::Attribute(word.to_owned()),
    }
}

/// `LIKE`'s pattern as an anchored regex: `%` any run of characters, `_` one.
fn like_regex(pattern: &str, case_insensitive: bool) -> Result<Regex> {
    let mut re = String::from("^");
    for c in pattern.chars() {
        match c {
            '%' => re.push_str(".*"),
            '_' => re.push('.'),
            c => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    re.push('$');
    RegexBuilder::new(&re)
        .case_insensitive(case_insensitive)
        .dot_matches_new_line(true)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| RegistryError::invalid(format!("LIKE pattern {pattern:?}: {e}")))
}

fn word_is(tok: &Option<Token>, keyword: &str) -> bool {
    matches!(tok, Some(Token::Word(w)) if w.eq_ignore_ascii_case(keyword))
}

/// Parses a filter; an empty one matches everything.
pub fn parse(filter: &str) -> Result<Vec<Clause>> {
    if filter.chars().count() > MAX_FILTER_LEN {
        return Err(bad(filter, &format!("longer than {MAX_FILTER_LEN} characters")));
    }
    let toks = tokens(filter)?;
    let mut clauses = Vec::new();
    let mut it = toks.into_iter().peekable();
    while let Some(tok) = it.next() {
        let Token::Word(word) = tok else { return Err(bad(filter, "expected a key such as metrics.auc")) };
        let key = key(&word);
        let next = it.next();
        let op = match &next {
            Some(Token::Op(op)) => match op.as_str() {
                "=" => Op::Eq,
                "!=" => Op::Ne,
                "<" => Op::Lt,
                "<=" => Op::Le,
                ">" => Op::Gt,
                ">=" => Op::Ge,
                _ => return Err(bad(filter, &format!("{op} is not a comparison"))),
            },
            t if word_is(t, "LIKE") => Op::Like,
            t if word_is(t, "ILIKE") => Op::ILike,
            t if word_is(t, "IN") => Op::In,
            t if word_is(t, "NOT") => match it.next() {
                t if word_is(&t, "IN") => Op::NotIn,
                _ => return Err(bad(filter, "NOT must be followed by IN")),
            },
            t if word_is(t, "IS") => match (it.next(), it.peek().cloned()) {
                (t, _) if word_is(&t, "NULL") => Op::IsNull,
                (t, Some(Token::Word(n))) if word_is(&t, "NOT") && n.eq_ignore_ascii_case("NULL") => {
                    it.next();
                    Op::IsNotNull
                }
                _ => return Err(bad(filter, "IS must be followed by NULL or NOT NULL")),
            },
            _ => return Err(bad(filter, &format!("expected a comparison after {word}"))),
        };
        let value = match op {
            Op::IsNull | Op::IsNotNull => Literal::None,
            Op::In | Op::NotIn => {
                if it.next() != Some(Token::Open) {
                    return Err(bad(filter, "IN takes a list of quoted strings in parentheses"));
                }
                let mut list = Vec::new();
                loop {
                    match it.next() {
                        Some(Token::Text(t)) => list.push(t),
                        _ => return Err(bad(filter, "IN takes a list of quoted strings")),
                    }
                    match it.next() {
                        Some(Token::Comma) => continue,
                        Some(Token::Close) => break,
                        _ => return Err(bad(filter, "a list is closed by ')'")),
                    }
                }
                Literal::List(list)
            }
            _ => match it.next() {
                Some(Token::Text(t)) => Literal::Text(t),
                Some(Token::Word(w)) => Literal::Number(
                    w.parse().map_err(|_| bad(filter, &format!("{w} is neither a number nor a quoted string")))?,
                ),
                _ => return Err(bad(filter, &format!("expected a value after {word}"))),
            },
        };
        let pattern = match (&op, &value) {
            (Op::Like | Op::ILike, Literal::Text(p)) => Some(like_regex(p, op == Op::ILike)?),
            (Op::Like | Op::ILike, _) => return Err(bad(filter, "LIKE takes a quoted pattern")),
            _ => None,
        };
        clauses.push(Clause { key, op, value, pattern });
        match it.next() {
            None => break,
            t if word_is(&t, "AND") => continue,
            Some(_) => return Err(bad(filter, "clauses are joined by AND")),
        }
    }
    Ok(clauses)
}

fn compare(ord: Ordering, op: Op) -> bool {
    match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Ne => ord != Ordering::Equal,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        _ => false,
    }
}

impl Clause {
    pub fn matches(&self, item: &impl Searchable) -> bool {
        let field = item.field(&self.key);
        match (self.op, &field) {
            (Op::IsNull, f) => return f.is_none(),
            (Op::IsNotNull, f) => return f.is_some(),
            (_, None) => return false,
            _ => {}
        }
        let Some(field) = field else { return false };
        match (&field, &self.value, self.op) {
            (Field::Text(t), _, Op::Like | Op::ILike) => self.pattern.as_ref().is_some_and(|re| re.is_match(t)),
            (Field::Number(n), Literal::Number(v), op) => compare(n.total_cmp(v), op),
            (Field::Number(n), Literal::Text(v), op) => v.parse::<f64>().is_ok_and(|v| compare(n.total_cmp(&v), op)),
            (Field::Text(t), Literal::List(list), Op::In) => list.iter().any(|v| v == t),
            (Field::Text(t), Literal::List(list), Op::NotIn) => list.iter().all(|v| v != t),
            (Field::Text(t), Literal::Text(v), op) => compare(t.cmp(&v.as_str()), op),
            (Field::Text(t), Literal::Number(v), op) => compare(t.cmp(&v.to_string().as_str()), op),
            _ => false,
        }
    }
}

/// MLflow's tag that marks a registered model as a prompt.
pub const PROMPT_TAG: &str = "mlflow.prompt.is_prompt";

/// Registered models and versions: MLflow's client adds
/// ``tag.`mlflow.prompt.is_prompt` != 'true'`` to every search, and models
/// lack that tag, so it cannot be a plain comparison. As MLflow's store does,
/// such clauses are taken out and prompts are left out unless the filter asks
/// for them (`= 'true'` or `!= 'false'`).
fn without_prompt_clauses(mut clauses: Vec<Clause>) -> (Vec<Clause>, bool) {
    let wants = |c: &Clause| match (&c.value, c.op) {
        (Literal::Text(v), Op::Eq) => v.eq_ignore_ascii_case("true"),
        (Literal::Text(v), Op::Ne) => v.eq_ignore_ascii_case("false"),
        _ => false,
    };
    let prompts = clauses.iter().any(|c| c.key == Key::Tag(PROMPT_TAG.into()) && wants(c));
    clauses.retain(|c| c.key != Key::Tag(PROMPT_TAG.into()));
    (clauses, prompts)
}

fn is_prompt(item: &impl Searchable) -> bool {
    item.field(&Key::Tag(PROMPT_TAG.into())).is_some_and(|f| f == Field::Text("true"))
}

/// The items `filter` keeps.
pub fn filter<T: Searchable>(items: Vec<T>, filter: &str) -> Result<Vec<T>> {
    let clauses = parse(filter)?;
    Ok(items.into_iter().filter(|item| clauses.iter().all(|c| c.matches(item))).collect())
}

/// [`filter`] for registered models and model versions, with MLflow's prompt rule.
pub fn filter_models<T: Searchable>(items: Vec<T>, filter: &str) -> Result<Vec<T>> {
    let (clauses, prompts) = without_prompt_clauses(parse(filter)?);
    Ok(items.into_iter().filter(|i| is_prompt(i) == prompts && clauses.iter().all(|c| c.matches(i))).collect())
}

/// One ordering key: a field and its direction.
pub type OrderKey = (Key, bool);

/// Parses `order_by` clauses (`metrics.auc DESC`, `attributes.start_time`).
pub fn order_keys(order_by: &[String]) -> Result<Vec<OrderKey>> {
    let mut keys = Vec::new();
    for clause in order_by {
        let clause = clause.trim();
        let (word, direction) = match clause.rsplit_once(char::is_whitespace) {
            Some((w, d)) if ["ASC", "DESC"].contains(&d.to_uppercase().as_str()) => (w.trim(), Some(d)),
            _ => (clause, None),
        };
        if word.is_empty() || word.contains(char::is_whitespace) && !word.contains('`') {
            return Err(RegistryError::invalid(format!("order_by {clause:?}: expected `key [ASC|DESC]`")));
        }
        let descending = direction.is_some_and(|d| d.eq_ignore_ascii_case("DESC"));
        keys.push((key(&word.replace('`', "")), descending));
    }
    Ok(keys)
}

/// Sorts by `keys`; items without a key go last, as in MLflow.
pub fn sort<T: Searchable>(items: &mut [T], keys: &[OrderKey]) {
    items.sort_by(|a, b| {
        for (key, descending) in keys {
            let ord = match (a.field(key), b.field(key)) {
                (Some(x), Some(y)) => {
                    let ord = match (x, y) {
                        (Field::Number(x), Field::Number(y)) => x.total_cmp(&y),
                        (Field::Text(x), Field::Text(y)) => x.cmp(y),
                        (Field::Number(_), Field::Text(_)) => Ordering::Less,
                        (Field::Text(_), Field::Number(_)) => Ordering::Greater,
                    };
                    if *descending { ord.reverse() } else { ord }
                }
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    });
}

/// Sorts by `order_by` clauses.
pub fn order<T: Searchable>(items: &mut [T], order_by: &[String]) -> Result<()> {
    sort(items, &order_keys(order_by)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Tag;

    fn model(name: &str, tags: &[(&str, &str)]) -> RegisteredModel {
        RegisteredModel {
            name: name.into(),
            creation_timestamp: 1,
            last_updated_timestamp: 2,
            description: String::new(),
            latest_versions: Vec::new(),
            tags: tags.iter().map(|(k, v)| Tag { key: (*k).into(), value: (*v).into() }).collect(),
            aliases: Vec::new(),
        }
    }

    #[test]
    fn parses_mlflow_filters() {
        let c = parse("metrics.auc > 0.8 AND params.depth = '6' and tags.`team name` LIKE 'cart%' AND attributes.status IN ('FINISHED', 'RUNNING') AND tags.mlflow.parentRunId IS NULL and tag.x is not null").unwrap();
        assert_eq!(c.len(), 6);
        assert_eq!((&c[0].key, c[0].op, &c[0].value), (&Key::Metric("auc".into()), Op::Gt, &Literal::Number(0.8)));
        assert_eq!(c[2].key, Key::Tag("team name".into()));
        assert_eq!(c[3].value, Literal::List(vec!["FINISHED".into(), "RUNNING".into()]));
        assert_eq!((&c[4].key, c[4].op), (&Key::Tag("mlflow.parentRunId".into()), Op::IsNull));
        assert_eq!(c[5].op, Op::IsNotNull);
        assert_eq!(parse("name='purchase_prediction_model'").unwrap()[0].key, Key::Attribute("name".into()));
        assert!(parse("").unwrap().is_empty());
        for bad in [
            "metrics.auc >",
            "metrics.auc > 'x",
            "metrics.auc ~ 1",
            "a = 1 OR b = 2",
            "a IN (1, 2)",
            "a IS 3",
            "a LIKE 3",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let long = format!("name LIKE '{}'", "%a".repeat(MAX_FILTER_LEN));
        assert!(parse(&long).unwrap_err().message.contains("longer than"));
    }

    #[test]
    fn like_follows_sql_and_stays_linear() {
        let m = |name: &str, f: &str| filter(vec![model(name, &[])], f).unwrap().len() == 1;
        assert!(m("cartflow", "name LIKE 'cart%'"));
        assert!(m("cartflow", "name LIKE '%flow'"));
        assert!(m("cartflow", "name LIKE 'c_rt%'"));
        assert!(!m("cartflow", "name LIKE 'cart'"));
        assert!(m("Cart.Flow", "name ILIKE 'cart.flow'"));
        assert!(!m("cartXflow", "name LIKE 'cart.flow'"), "a dot is a dot");
        // A pathological pattern over a long name: quadratic matching would take minutes.
        let long = "a".repeat(8000);
        let started = std::time::Instant::now();
        assert!(!m(&long, &format!("name LIKE '{}b'", "%a".repeat(1000))));
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());
    }

    #[test]
    fn missing_keys_match_only_is_null_and_prompts_follow_mlflow() {
        let items =
            vec![model("plain", &[]), model("tagged", &[("team", "cart")]), model("prompt", &[(PROMPT_TAG, "true")])];
        let names = |v: Vec<RegisteredModel>| v.into_iter().map(|m| m.name).collect::<Vec<_>>();
        assert_eq!(names(filter(items.clone(), "tags.team != 'x'").unwrap()), ["tagged"]);
        assert_eq!(names(filter(items.clone(), "tags.team IS NULL").unwrap()), ["plain", "prompt"]);
        let client = "tag.`mlflow.prompt.is_prompt` != 'true'";
        assert_eq!(names(filter_models(items.clone(), client).unwrap()), ["plain", "tagged"]);
        assert_eq!(names(filter_models(items.clone(), &format!("name LIKE 'p%' AND {client}")).unwrap()), ["plain"]);
        assert_eq!(names(filter_models(items, "tag.`mlflow.prompt.is_prompt` = 'true'").unwrap()), ["prompt"]);
    }

    #[test]
    fn order_by_reads_mlflow_clauses() {
        let keys =
            order_keys(&["metrics.`my auc` DESC".into(), "attributes.start_time".into(), "name asc".into()]).unwrap();
        assert_eq!(
            keys,
            vec![
                (Key::Metric("my auc".into()), true),
                (Key::Attribute("start_time".into()), false),
                (Key::Attribute("name".into()), false)
            ]
        );
        assert!(order_keys(&["a b c".into()]).is_err());
    }
}
