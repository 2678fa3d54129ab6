//! Stored state as bytes: postcard (compact, serde) behind a format byte, so
//! a later layout can be told apart from this one instead of misread.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{OnlineError, Result};

const FORMAT: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    encode_after(value, Vec::new())
}

/// [`encode`], appended to `out`.
pub fn encode_after<T: Serialize>(value: &T, mut out: Vec<u8>) -> Vec<u8> {
    // Serializing plain data into a Vec cannot fail. `to_extend` pushes onto
    // the Vec directly (`to_io` goes through io::Write a few bytes at a time).
    out.push(FORMAT);
    postcard::to_extend(value, out).expect("state serializes")
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    let corrupt = |message: String| OnlineError::Corrupt { what: what.to_owned(), message };
    match bytes.split_first() {
        Some((&FORMAT, body)) => postcard::from_bytes(body).map_err(|e| corrupt(e.to_string())),
        Some((other, _)) => Err(corrupt(format!("format {other}, this build reads {FORMAT}"))),
        None => Err(corrupt("empty".into())),
    }
}
