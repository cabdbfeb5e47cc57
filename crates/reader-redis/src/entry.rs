//! Turning fred `Value` replies of the stream commands into entries and messages, without
//! copying payloads (fred's values hold `Bytes`) and without assuming UTF-8.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fred::types::Value;
use reader_core::{ErrorKind, Message, Position, ReadError, StreamId};

/// One stream entry as read. `fields` is `None` when the entry was deleted from the stream
/// while still pending (the server answers its ID with nil fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) id: StreamId,
    pub(crate) fields: Option<Vec<(Bytes, Bytes)>>,
}

fn protocol(what: &str) -> ReadError {
    ReadError::new(
        reader_core::ErrorClass::Unknown,
        ErrorKind::Protocol,
        format!("unexpected reply shape: {what}"),
    )
}

/// The bytes of a string-like value.
pub(crate) fn bytes_of(v: Value) -> Option<Bytes> {
    match v {
        Value::String(s) => Some(s.into_inner()),
        Value::Bytes(b) => Some(b),
        Value::Integer(i) => Some(Bytes::from(i.to_string())),
        Value::Double(d) => Some(Bytes::from(d.to_string())),
        _ => None,
    }
}

pub(crate) fn string_of(v: Value) -> Option<String> {
    bytes_of(v).map(|b| String::from_utf8_lossy(&b).into_owned())
}

pub(crate) fn int_of(v: &Value) -> Option<u64> {
    match v {
        Value::Integer(i) => u64::try_from(*i).ok(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn id_of(v: Value) -> Result<StreamId, ReadError> {
    let s = string_of(v).ok_or_else(|| protocol("entry ID is not a string"))?;
    StreamId::parse(&s).map_err(|e| protocol(&e))
}

fn array(v: Value, what: &str) -> Result<Vec<Value>, ReadError> {
    match v {
        Value::Array(a) => Ok(a),
        Value::Null => Ok(Vec::new()),
        _ => Err(protocol(what)),
    }
}

/// `[[id, [f, v, …] | nil], …]`
pub(crate) fn parse_entries(v: Value) -> Result<Vec<Entry>, ReadError> {
    let mut out = Vec::new();
    for e in array(v, "entries are not an array")? {
        let mut parts = array(e, "an entry is not an array")?.into_iter();
        let id = id_of(parts.next().ok_or_else(|| protocol("an entry has no ID"))?)?;
        let fields = match parts.next() {
            None | Some(Value::Null) => None,
            Some(Value::Array(flat)) => {
                let mut fields = Vec::with_capacity(flat.len() / 2);
                let mut it = flat.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    let k = bytes_of(k).ok_or_else(|| protocol("a field name is not a string"))?;
                    let v = bytes_of(v).ok_or_else(|| protocol("a field value is not a string"))?;
                    fields.push((k, v));
                }
                Some(fields)
            }
            Some(_) => return Err(protocol("entry fields are not an array")),
        };
        out.push(Entry { id, fields });
    }
    Ok(out)
}

/// An `XREADGROUP` reply: `[[key, entries], …]`, or nil when a BLOCK timed out.
pub(crate) fn parse_read(v: Value) -> Result<Vec<(String, Vec<Entry>)>, ReadError> {
    if v.is_null() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for s in array(v, "XREADGROUP reply is not an array")? {
        let mut parts = array(s, "a stream of the reply is not an array")?.into_iter();
        let key = parts
            .next()
            .and_then(string_of)
            .ok_or_else(|| protocol("a stream of the reply has no key"))?;
        let entries = parse_entries(parts.next().unwrap_or(Value::Null))?;
        out.push((key, entries));
    }
    Ok(out)
}

/// An `XAUTOCLAIM` reply: `[next cursor, entries, deleted IDs (Redis 7+)]`.
pub(crate) fn parse_autoclaim(v: Value) -> Result<(String, Vec<Entry>, Vec<StreamId>), ReadError> {
    let mut parts = array(v, "XAUTOCLAIM reply is not an array")?.into_iter();
    let cursor = parts
        .next()
        .and_then(string_of)
        .ok_or_else(|| protocol("XAUTOCLAIM reply has no cursor"))?;
    let entries = parse_entries(parts.next().unwrap_or(Value::Null))?;
    let mut deleted = Vec::new();
    if let Some(d) = parts.next() {
        for id in array(d, "XAUTOCLAIM deleted IDs are not an array")? {
            deleted.push(id_of(id)?);
        }
    }
    Ok((cursor, entries, deleted))
}

/// An extended `XPENDING` reply: `[[id, consumer, idle ms, deliveries], …]` → (id, deliveries).
pub(crate) fn parse_pending(v: Value) -> Result<Vec<(StreamId, u64)>, ReadError> {
    let mut out = Vec::new();
    for p in array(v, "XPENDING reply is not an array")? {
        let parts = array(p, "an XPENDING row is not an array")?;
        let count = parts.get(3).and_then(int_of).unwrap_or(1);
        let id = id_of(
            parts
                .into_iter()
                .next()
                .ok_or_else(|| protocol("an XPENDING row has no ID"))?,
        )?;
        out.push((id, count));
    }
    Ok(out)
}

/// The message of an entry that still exists: the first field's value is the payload and
/// its name the key; the other fields are headers.
pub(crate) fn message(stream: &Arc<str>, id: StreamId, fields: Vec<(Bytes, Bytes)>) -> Message {
    let mut it = fields.into_iter();
    let (key, payload) = match it.next() {
        Some((k, v)) => (Some(k), v),
        None => (None, Bytes::new()),
    };
    let mut m = Message::new(
        payload,
        Position::Stream {
            stream: stream.clone(),
            id,
        },
    );
    m.key = key;
    m.headers = it
        .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
        .collect();
    m.timestamp = SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(id.ms));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::String(x.into())
    }

    #[test]
    fn read_reply_with_deleted_and_binary_entries() {
        let raw = Value::Array(vec![Value::Array(vec![
            s("k"),
            Value::Array(vec![
                Value::Array(vec![
                    s("1-1"),
                    Value::Array(vec![
                        s("body"),
                        Value::Bytes(Bytes::from_static(&[0xff, 0, 0xfe])),
                        s("h"),
                        s("v"),
                    ]),
                ]),
                Value::Array(vec![s("1-2"), Value::Null]),
            ]),
        ])]);
        let parsed = parse_read(raw).unwrap();
        assert_eq!(parsed.len(), 1);
        let (key, entries) = &parsed[0];
        assert_eq!(key, "k");
        assert_eq!(
            entries[1],
            Entry {
                id: StreamId { ms: 1, seq: 2 },
                fields: None
            }
        );
        let m = message(
            &"k".into(),
            entries[0].id,
            entries[0].fields.clone().unwrap(),
        );
        assert_eq!(&m.payload[..], &[0xff, 0, 0xfe]);
        assert_eq!(m.key.as_deref(), Some(&b"body"[..]));
        assert_eq!(m.header("h").map(|b| &b[..]), Some(&b"v"[..]));
        assert_eq!(m.position.to_string(), "k@1-1");
        assert!(parse_read(Value::Null).unwrap().is_empty());
    }

    #[test]
    fn autoclaim_and_pending_replies() {
        let raw = Value::Array(vec![
            s("0-0"),
            Value::Array(vec![Value::Array(vec![
                s("5-0"),
                Value::Array(vec![s("f"), s("v")]),
            ])]),
            Value::Array(vec![s("4-0")]),
        ]);
        let (cursor, entries, deleted) = parse_autoclaim(raw).unwrap();
        assert_eq!(cursor, "0-0");
        assert_eq!(entries.len(), 1);
        assert_eq!(deleted, vec![StreamId { ms: 4, seq: 0 }]);
        let p = Value::Array(vec![Value::Array(vec![
            s("5-0"),
            s("c"),
            Value::Integer(10),
            Value::Integer(3),
        ])]);
        assert_eq!(
            parse_pending(p).unwrap(),
            vec![(StreamId { ms: 5, seq: 0 }, 3)]
        );
        assert!(parse_read(Value::Integer(1)).is_err());
    }
}
