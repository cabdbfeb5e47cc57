//! A change event (raw BSON from the server) → a [`Message`].

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use mongodb::bson::{RawBsonRef, RawDocument, RawDocumentBuf};
use reader_core::{ErrorKind, Message, Position, ReadError};

use crate::config::PayloadFormat;
use crate::extjson;

/// What one raw change event turned into.
pub(crate) enum Converted {
    /// A change to deliver.
    Event(Message),
    /// The stream was invalidated (collection dropped or renamed, database dropped); the raw
    /// token of the `invalidate` event (usable with `startAfter`).
    Invalidate(Bytes),
}

pub(crate) fn decode_error(what: &str, e: impl std::fmt::Display) -> ReadError {
    ReadError::permanent(
        ErrorKind::Decode,
        format!("a change event could not be decoded ({what}): {e}"),
    )
}

/// Relaxed Extended JSON of one BSON value.
fn json_of(value: RawBsonRef<'_>) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::with_capacity(32);
    extjson::write_value(value, &mut out)?;
    Ok(out)
}

fn namespace(ns: Option<&RawDocument>) -> Option<String> {
    let ns = ns?;
    let db = ns.get_str("db").ok()?;
    Some(match ns.get_str("coll") {
        Ok(coll) => format!("{db}.{coll}"),
        Err(_) => db.to_owned(),
    })
}

/// The top-level fields `convert` reads, found in one pass over the event (each of
/// `RawDocument::get_*` would scan it from the start). The first occurrence of a key wins,
/// as with `get`; a malformed element ends the search (the JSON conversion reports it).
#[derive(Default)]
struct Fields<'a> {
    id: Option<RawBsonRef<'a>>,
    op: Option<RawBsonRef<'a>>,
    cluster_time: Option<RawBsonRef<'a>>,
    wall_time: Option<RawBsonRef<'a>>,
    ns: Option<RawBsonRef<'a>>,
    document_key: Option<RawBsonRef<'a>>,
}

impl<'a> Fields<'a> {
    fn of(ev: &'a RawDocument) -> Self {
        let mut f = Fields::default();
        for item in ev {
            let Ok((k, v)) = item else { break };
            let slot = match k {
                "_id" => &mut f.id,
                "operationType" => &mut f.op,
                "clusterTime" => &mut f.cluster_time,
                "wallTime" => &mut f.wall_time,
                "ns" => &mut f.ns,
                "documentKey" => &mut f.document_key,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v);
            }
        }
        f
    }
}

/// Convert one change event. Headers: `operationType` and `ns` (`db.coll`, or `db` for
/// database-level events); key: `documentKey._id` as relaxed Extended JSON; timestamp:
/// `wallTime` when the server sends it (6.0+), else the cluster time's seconds.
pub(crate) fn convert(ev: RawDocumentBuf, payload: PayloadFormat) -> Result<Converted, ReadError> {
    let f = Fields::of(&ev);
    let token =
        match f.id.and_then(|v| v.as_document()) {
            Some(id) => Bytes::copy_from_slice(id.as_bytes()),
            None => return Err(ReadError::permanent(
                ErrorKind::Config,
                "a change event had no `_id` document (its resume token): the pipeline must not \
                 remove or change `_id`",
            )),
        };
    let op =
        f.op.and_then(|v| v.as_str())
            .unwrap_or("unknown")
            .to_owned();
    if op == "invalidate" {
        return Ok(Converted::Invalidate(token));
    }
    let cluster_time = f.cluster_time.and_then(|v| v.as_timestamp());
    let timestamp = match f.wall_time.and_then(|v| v.as_datetime()) {
        Some(dt) => Some(dt.to_system_time()),
        None => {
            cluster_time.map(|ts| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(ts.time)))
        }
    };
    let key = match f
        .document_key
        .and_then(|v| v.as_document())
        .and_then(|d| d.get("_id").ok().flatten())
    {
        Some(id) => Some(Bytes::from(json_of(id)?)),
        None => None,
    };
    let ns = namespace(f.ns.and_then(|v| v.as_document()));
    let mut headers = vec![("operationType".to_owned(), Bytes::from(op))];
    if let Some(ns) = ns {
        headers.push(("ns".to_owned(), Bytes::from(ns)));
    }
    let body = match payload {
        PayloadFormat::Bson => Bytes::from(ev.into_bytes()),
        PayloadFormat::RelaxedJson => {
            // Binary grows by a third in base64, and keys and punctuation add some more.
            let mut out = Vec::with_capacity(ev.as_bytes().len() * 3 / 2 + 64);
            extjson::write_document(&ev, &mut out)?;
            Bytes::from(out)
        }
    };
    Ok(Converted::Event(Message {
        payload: body,
        key,
        headers,
        position: Position::ResumeToken {
            token,
            cluster_time: cluster_time.map(|t| t.time),
        },
        source: "".into(),
        timestamp,
        deliveries: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{doc, DateTime, Timestamp};

    fn event(op: &str) -> RawDocumentBuf {
        let d = doc! {
            "_id": { "_data": "8265A1B2C3000000012B" },
            "operationType": op,
            "clusterTime": Timestamp { time: 1_700_000_000, increment: 1 },
            "wallTime": DateTime::from_millis(1_700_000_000_123),
            "ns": { "db": "shop", "coll": "orders" },
            "documentKey": { "_id": 42_i64 },
            "fullDocument": { "_id": 42_i64, "n": 1.5 },
        };
        RawDocumentBuf::from_document(&d).unwrap()
    }

    #[test]
    fn insert_event_becomes_a_json_message() {
        let Converted::Event(m) = convert(event("insert"), PayloadFormat::RelaxedJson).unwrap()
        else {
            panic!("not an event")
        };
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(v["operationType"], "insert");
        assert_eq!(v["fullDocument"]["_id"], 42);
        assert_eq!(m.key.as_deref(), Some(&b"42"[..]));
        assert_eq!(
            m.header("operationType").map(|b| &b[..]),
            Some(&b"insert"[..])
        );
        assert_eq!(m.header("ns").map(|b| &b[..]), Some(&b"shop.orders"[..]));
        assert_eq!(
            m.timestamp,
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123))
        );
        let Position::ResumeToken {
            token,
            cluster_time,
        } = &m.position
        else {
            panic!("{:?}", m.position)
        };
        assert_eq!(*cluster_time, Some(1_700_000_000));
        assert_eq!(
            crate::token::data_hex(token).as_deref(),
            Some("8265A1B2C3000000012B")
        );
    }

    #[test]
    fn bson_payload_is_the_raw_event_and_invalidate_is_recognised() {
        let raw = event("update");
        let bytes = raw.as_bytes().to_vec();
        let Converted::Event(m) = convert(raw, PayloadFormat::Bson).unwrap() else {
            panic!("not an event")
        };
        assert_eq!(&m.payload[..], &bytes[..]);
        assert!(matches!(
            convert(event("invalidate"), PayloadFormat::RelaxedJson).unwrap(),
            Converted::Invalidate(_)
        ));
        let no_id = RawDocumentBuf::from_document(&doc! { "operationType": "insert" }).unwrap();
        let Err(e) = convert(no_id, PayloadFormat::Bson) else {
            panic!("accepted an event without _id")
        };
        assert!(e.is_permanent());
    }
}
