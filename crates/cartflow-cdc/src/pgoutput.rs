//! PostgreSQL's logical replication protocol as pgoutput writes it
//! (protocol version 1): the messages a slot hands out, decoded without I/O.
//! Written here because the crates that carry it also carry a replication
//! connection, and cartflow reads the slot through SQL
//! (`pg_logical_slot_peek_binary_changes`), one message per row.

use std::fmt;

/// Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_US: i64 = 946_684_800_000_000;

#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Begin {
        final_lsn: u64,
        commit_ts_us: i64,
        xid: u32,
    },
    Commit {
        commit_lsn: u64,
        end_lsn: u64,
        commit_ts_us: i64,
    },
    Relation(Relation),
    Insert {
        relation: u32,
        new: Tuple,
    },
    /// `old` is the replica identity's columns, or the whole row with `REPLICA IDENTITY FULL`.
    Update {
        relation: u32,
        old: Option<Tuple>,
        new: Tuple,
    },
    Delete {
        relation: u32,
        old: Tuple,
    },
    /// Truncate, type, origin and logical messages: not changes of a row.
    Other(u8),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub id: u32,
    pub schema: String,
    pub table: String,
    pub columns: Vec<Column>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
    /// Part of the replica identity (the primary key by default).
    pub key: bool,
}

/// A column's value in PostgreSQL's text form.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// A TOASTed value the change did not touch (not sent).
    Unchanged,
    Text(String),
}

pub type Tuple = Vec<Value>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pgoutput message, byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for DecodeError {}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, message: impl Into<String>) -> Result<T, DecodeError> {
        Err(DecodeError { offset: self.at, message: message.into() })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() - self.at < n {
            return self.fail(format!("ends early: {n} more bytes expected"));
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn timestamp(&mut self) -> Result<i64, DecodeError> {
        let since_2000 = self.u64()? as i64;
        match since_2000.checked_add(PG_EPOCH_US) {
            Some(t) => Ok(t),
            None => self.fail(format!("timestamp {since_2000} µs after 2000 is out of range")),
        }
    }

    fn cstr(&mut self) -> Result<String, DecodeError> {
        let rest = &self.bytes[self.at..];
        let Some(end) = rest.iter().position(|b| *b == 0) else {
            return self.fail("a string has no terminating zero");
        };
        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.at += end + 1;
        Ok(s)
    }

    fn tuple(&mut self) -> Result<Tuple, DecodeError> {
        let n = self.i16()?;
        (0..n)
            .map(|_| match self.u8()? {
                b'n' => Ok(Value::Null),
                b'u' => Ok(Value::Unchanged),
                b't' => {
                    let len = self.i32()?;
                    if len < 0 {
                        return self.fail(format!("negative value length {len}"));
                    }
                    Ok(Value::Text(String::from_utf8_lossy(self.take(len as usize)?).into_owned()))
                }
                b'b' => self.fail("binary column values are not requested and not read"),
                k => self.fail(format!("unknown column kind {:?}", k as char)),
            })
            .collect()
    }
}

/// Decodes one message.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    let kind = r.u8()?;
    Ok(match kind {
        b'B' => Message::Begin { final_lsn: r.u64()?, commit_ts_us: r.timestamp()?, xid: r.u32()? },
        b'C' => {
            let _flags = r.u8()?;
            Message::Commit { commit_lsn: r.u64()?, end_lsn: r.u64()?, commit_ts_us: r.timestamp()? }
        }
        b'R' => {
            let id = r.u32()?;
            let schema = r.cstr()?;
            let table = r.cstr()?;
            let _replica_identity = r.u8()?;
            let n = r.i16()?;
            let columns = (0..n)
                .map(|_| {
                    let key = r.u8()? & 1 == 1;
                    let name = r.cstr()?;
                    let type_oid = r.u32()?;
                    let _typmod = r.i32()?;
                    Ok(Column { name, type_oid, key })
                })
                .collect::<Result<_, DecodeError>>()?;
            Message::Relation(Relation { id, schema, table, columns })
        }
        b'I' => {
            let relation = r.u32()?;
            match r.u8()? {
                b'N' => Message::Insert { relation, new: r.tuple()? },
                k => return r.fail(format!("insert: expected a new tuple ('N'), got {:?}", k as char)),
            }
        }
        b'U' => {
            let relation = r.u32()?;
            let (old, new) = match r.u8()? {
                b'K' | b'O' => {
                    let old = r.tuple()?;
                    match r.u8()? {
                        b'N' => (Some(old), r.tuple()?),
                        k => return r.fail(format!("update: expected a new tuple ('N'), got {:?}", k as char)),
                    }
                }
                b'N' => (None, r.tuple()?),
                k => return r.fail(format!("update: unexpected tuple kind {:?}", k as char)),
            };
            Message::Update { relation, old, new }
        }
        b'D' => {
            let relation = r.u32()?;
            match r.u8()? {
                b'K' | b'O' => Message::Delete { relation, old: r.tuple()? },
                k => return r.fail(format!("delete: expected an old tuple ('K' or 'O'), got {:?}", k as char)),
            }
        }
        other => Message::Other(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple_bytes(values: &[Option<&str>]) -> Vec<u8> {
        let mut b = (values.len() as i16).to_be_bytes().to_vec();
        for v in values {
            match v {
                None => b.push(b'n'),
                Some(s) => {
                    b.push(b't');
                    b.extend((s.len() as i32).to_be_bytes());
                    b.extend(s.as_bytes());
                }
            }
        }
        b
    }

    #[test]
    fn decodes_what_postgresql_sends() {
        // Captured from PostgreSQL 15 (pg_logical_slot_peek_binary_changes, proto_version 1).
        let mut relation = vec![b'R', 0, 0, 0x40, 0];
        relation.extend(b"public\0t_cdc\0f");
        relation.extend(2i16.to_be_bytes());
        relation.extend(b"\x01id\0\0\0\0\x14\xff\xff\xff\xff");
        relation.extend(b"\x00price\0\0\0\x06\xa4\0\x0a\0\x06");
        let Message::Relation(rel) = decode(&relation).unwrap() else { panic!() };
        assert_eq!((rel.id, rel.schema.as_str(), rel.table.as_str()), (0x4000, "public", "t_cdc"));
        assert_eq!(rel.columns[0], Column { name: "id".into(), type_oid: 20, key: true });
        assert_eq!(rel.columns[1], Column { name: "price".into(), type_oid: 1700, key: false });

        let mut update = vec![b'U', 0, 0, 0x40, 0, b'O'];
        update.extend(tuple_bytes(&[Some("1"), Some("1.50")]));
        update.push(b'N');
        update.extend(tuple_bytes(&[Some("1"), None]));
        assert_eq!(
            decode(&update).unwrap(),
            Message::Update {
                relation: 0x4000,
                old: Some(vec![Value::Text("1".into()), Value::Text("1.50".into())]),
                new: vec![Value::Text("1".into()), Value::Null],
            }
        );

        let mut commit = vec![b'C', 0];
        commit.extend(0x01DA_DEF0u64.to_be_bytes());
        commit.extend(0x01DA_DF20u64.to_be_bytes());
        commit.extend(0i64.to_be_bytes());
        assert_eq!(
            decode(&commit).unwrap(),
            Message::Commit { commit_lsn: 0x01DA_DEF0, end_lsn: 0x01DA_DF20, commit_ts_us: PG_EPOCH_US }
        );
    }

    /// Found by the pgoutput fuzz target: a commit time near i64::MAX overflowed.
    #[test]
    fn a_timestamp_out_of_range_is_an_error() {
        let mut commit = vec![b'C', 0];
        commit.extend(0u64.to_be_bytes());
        commit.extend(0u64.to_be_bytes());
        commit.extend(0x7fff_ffff_ffff_ff00u64.to_be_bytes());
        let e = decode(&commit).unwrap_err().to_string();
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn a_cut_message_names_where_it_ends() {
        let mut insert = vec![b'I', 0, 0, 0x40, 0, b'N'];
        insert.extend(tuple_bytes(&[Some("12345")]));
        insert.truncate(insert.len() - 2);
        let e = decode(&insert).unwrap_err();
        assert_eq!(e.offset, 13, "after the kind, relation, tuple kind, column count, column kind and length");
        assert!(e.message.contains("ends early"), "{e}");
        assert!(matches!(decode(b"T\0"), Ok(Message::Other(b'T'))));
    }
}
