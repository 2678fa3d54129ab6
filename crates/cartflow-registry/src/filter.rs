//! MLflow's search language: `metrics.auc > 0.8 AND params.depth = '6' AND
//! tags.team LIKE 'cart%'` filters, and `metrics.auc DESC` orderings. Parsed
//! by hand: it is a dozen tokens of grammar and no crate speaks it.
//! Evaluated in memory over what the store loaded.

use std::cmp::Ordering;

use crate::proto::{ModelVersion, Run};
use crate::{RegistryError, Result};

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
}

#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub key: Key,
    pub op: String,
    pub value: Literal,
}

/// A value of a run or model version under a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'a> {
    Number(f64),
    Text(&'a str),
}

/// Something the filter can look into.
pub trait Searchable {
    fn field(&self, key: &Key) -> Option<Field<'_>>;
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

impl Searchable for ModelVersion {
    fn field(&self, key: &Key) -> Option<Field<'_>> {
        match key {
            Key::Tag(k) => self.tags.iter().find(|t| &t.key == k).map(|t| Field::Text(&t.value)),
            Key::Attribute(a) => match a.as_str() {
                "name" => Some(Field::Text(&self.name)),
                "run_id" => Some(Field::Text(&self.run_id)),
                "source" => Some(Field::Text(&self.source)),
                "version" | "version_number" => self.version.parse().ok().map(Field::Number),
                "current_stage" => Some(Field::Text(&self.current_stage)),
                _ => None,
            },
            _ => None,
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
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => (out.push(Token::Open), i += 1).1,
            ')' => (out.push(Token::Close), i += 1).1,
            ',' => (out.push(Token::Comma), i += 1).1,
            '\'' | '"' => {
                let end = chars[i + 1..].iter().position(|&d| d == c).ok_or_else(|| bad(s, "a quote is not closed"))?;
                out.push(Token::Text(chars[i + 1..i + 1 + end].iter().collect()));
                i += end + 2;
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
                        let end = chars[i + 1..]
                            .iter()
                            .position(|&d| d == '`')
                            .ok_or_else(|| bad(s, "a backquote is not closed"))?;
                        word.extend(&chars[i + 1..i + 1 + end]);
                        i += end + 2;
                    } else {
                        word.push(chars[i]);
                        i += 1;
                    }
                }
                if word.ends_with('.') && matches!(chars.get(i), Some('"')) {
                    let end =
                        chars[i + 1..].iter().position(|&d| d == '"').ok_or_else(|| bad(s, "a quote is not closed"))?;
                    word.extend(&chars[i + 1..i + 1 + end]);
                    i += end + 2;
                }
                out.push(Token::Word(word));
            }
        }
    }
    Ok(out)
}

fn bad(filter: &str, why: &str) -> RegistryError {
    RegistryError::invalid(format!("filter {filter:?}: {why}"))
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

/// Parses a filter; an empty one matches everything.
pub fn parse(filter: &str) -> Result<Vec<Clause>> {
    let toks = tokens(filter)?;
    let mut clauses = Vec::new();
    let mut it = toks.into_iter().peekable();
    while let Some(tok) = it.next() {
        let Token::Word(word) = tok else { return Err(bad(filter, "expected a key such as metrics.auc")) };
        let key = key(&word);
        let op = match it.next() {
            Some(Token::Op(op)) => op,
            Some(Token::Word(w)) if ["LIKE", "ILIKE", "IN"].contains(&w.to_uppercase().as_str()) => w.to_uppercase(),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("NOT") => match it.next() {
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("IN") => "NOT IN".to_owned(),
                _ => return Err(bad(filter, "NOT must be followed by IN")),
            },
            _ => return Err(bad(filter, &format!("expected a comparison after {word}"))),
        };
        let value = match it.next() {
            Some(Token::Text(t)) => Literal::Text(t),
            Some(Token::Word(w)) => Literal::Number(
                w.parse().map_err(|_| bad(filter, &format!("{w} is neither a number nor a quoted string")))?,
            ),
            Some(Token::Open) if op.ends_with("IN") => {
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
            _ => return Err(bad(filter, &format!("expected a value after {word} {op}"))),
        };
        clauses.push(Clause { key, op, value });
        match it.next() {
            None => break,
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("AND") => continue,
            Some(_) => return Err(bad(filter, "clauses are joined by AND")),
        }
    }
    Ok(clauses)
}

/// SQL LIKE: `%` any run of characters, `_` one.
pub fn like(text: &str, pattern: &str) -> bool {
    let (t, p): (Vec<char>, Vec<char>) = (text.chars().collect(), pattern.chars().collect());
    // matches[j]: pattern[..j] matches text[..i] for the current i.
    let mut matches = vec![false; p.len() + 1];
    matches[0] = true;
    for j in 1..=p.len() {
        matches[j] = matches[j - 1] && p[j - 1] == '%';
    }
    for &c in &t {
        let mut next = vec![false; p.len() + 1];
        for j in 1..=p.len() {
            next[j] = match p[j - 1] {
                '%' => next[j - 1] || matches[j],
                '_' => matches[j - 1],
                pc => matches[j - 1] && pc == c,
            };
        }
        matches = next;
    }
    matches[p.len()]
}

fn compare(ord: Ordering, op: &str) -> bool {
    match op {
        "=" => ord == Ordering::Equal,
        "!=" => ord != Ordering::Equal,
        ">" => ord == Ordering::Greater,
        ">=" => ord != Ordering::Less,
        "<" => ord == Ordering::Less,
        "<=" => ord != Ordering::Greater,
        _ => false,
    }
}

impl Clause {
    pub fn matches(&self, item: &impl Searchable) -> bool {
        let Some(field) = item.field(&self.key) else { return false };
        match (&field, &self.value, self.op.as_str()) {
            (Field::Number(n), Literal::Number(v), op) => compare(n.total_cmp(v), op),
            (Field::Number(n), Literal::Text(v), op) => v.parse::<f64>().is_ok_and(|v| compare(n.total_cmp(&v), op)),
            (Field::Text(t), Literal::Text(v), "LIKE") => like(t, v),
            (Field::Text(t), Literal::Text(v), "ILIKE") => like(&t.to_lowercase(), &v.to_lowercase()),
            (Field::Text(t), Literal::List(list), "IN") => list.iter().any(|v| v == t),
            (Field::Text(t), Literal::List(list), "NOT IN") => list.iter().all(|v| v != t),
            (Field::Text(t), Literal::Text(v), op) => compare(t.cmp(&v.as_str()), op),
            (Field::Text(t), Literal::Number(v), op) => compare(t.cmp(&v.to_string().as_str()), op),
            _ => false,
        }
    }
}

/// A filter on names only (experiment and registered-model search):
/// `name = 'x'`, `!=`, `LIKE`, `ILIKE`, joined by AND.
pub fn name_filter(filter: &str) -> Result<impl Fn(&str) -> bool + use<>> {
    let clauses = parse(filter)?;
    if let Some(c) =
        clauses.iter().find(|c| c.key != Key::Attribute("name".into()) || !matches!(c.value, Literal::Text(_)))
    {
        return Err(RegistryError::invalid(format!(
            "filter {filter:?}: only name comparisons with a quoted string, not {:?}",
            c.key
        )));
    }
    Ok(move |name: &str| {
        clauses.iter().all(|c| {
            let Literal::Text(v) = &c.value else { return false };
            match c.op.as_str() {
                "=" => name == v,
                "!=" => name != v,
                "LIKE" => like(name, v),
                "ILIKE" => like(&name.to_lowercase(), &v.to_lowercase()),
                _ => false,
            }
        })
    })
}

pub fn filter<T: Searchable>(items: Vec<T>, filter: &str) -> Result<Vec<T>> {
    let clauses = parse(filter)?;
    Ok(items.into_iter().filter(|item| clauses.iter().all(|c| c.matches(item))).collect())
}

/// Sorts by `order_by` clauses (`metrics.auc DESC`, `attributes.start_time`);
/// items without the key go last, as in MLflow.
pub fn order<T: Searchable>(items: &mut [T], order_by: &[String]) -> Result<()> {
    let mut keys = Vec::new();
    for clause in order_by {
        let mut parts = clause.split_whitespace();
        let word = parts.next().ok_or_else(|| RegistryError::invalid("an empty order_by clause"))?;
        let descending = match parts.next().map(str::to_uppercase).as_deref() {
            None | Some("ASC") => false,
            Some("DESC") => true,
            Some(other) => {
                return Err(RegistryError::invalid(format!("order_by {clause:?}: {other} is not ASC or DESC")));
            }
        };
        keys.push((key(&word.replace('`', "")), descending));
    }
    items.sort_by(|a, b| {
        for (key, descending) in &keys {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mlflow_filters() {
        let c = parse("metrics.auc > 0.8 AND params.depth = '6' and tags.`team name` LIKE 'cart%' AND attributes.status IN ('FINISHED', 'RUNNING')").unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(c[0], Clause { key: Key::Metric("auc".into()), op: ">".into(), value: Literal::Number(0.8) });
        assert_eq!(c[2].key, Key::Tag("team name".into()));
        assert_eq!(c[3].value, Literal::List(vec!["FINISHED".into(), "RUNNING".into()]));
        assert_eq!(parse("name='purchase_prediction_model'").unwrap()[0].key, Key::Attribute("name".into()));
        assert!(parse("").unwrap().is_empty());
        for bad in ["metrics.auc >", "metrics.auc > 'x", "metrics.auc ~ 1", "a = 1 OR b = 2", "a IN (1, 2)"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn like_follows_sql() {
        assert!(like("cartflow", "cart%"));
        assert!(like("cartflow", "%flow"));
        assert!(like("cartflow", "c_rt%"));
        assert!(!like("cartflow", "cart"));
        assert!(like("", "%"));
    }
}
