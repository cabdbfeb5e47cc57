//! A change event (raw BSON from the server) → a [`Message`].

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use mongodb::bson::{Bson, RawBsonRef, RawDocument, RawDocumentBuf};
use reader_core::{ErrorKind, Message, Position, ReadError};

use crate::config::PayloadFormat;

/// What one raw change event turned into.
pub(crate) enum Converted {
    /// A change to deliver.
    Event(Message),
    /// The stream was invalidated (collection dropped or renamed, database dropped); the raw
    /// token of the `invalidate` event (usable with `startAfter`).
    Invalidate(Bytes),
}

fn decode_error(what: &str, e: impl std::fmt::Display) -> ReadError {
    ReadError::permanent(
        ErrorKind::Decode,
        format!("a change event could not be decoded ({what}): {e}"),
    )
}

/// Relaxed Extended JSON of one BSON value.
fn json_of(value: RawBsonRef<'_>) -> Result<Vec<u8>, ReadError> {
    let bson = Bson::try_from(value.to_raw_bson()).map_err(|e| decode_error("a value", e))?;
    serde_json::to_vec(&bson.into_relaxed_extjson()).map_err(|e| decode_error("JSON", e))
}

fn namespace(ev: &RawDocument) -> Option<String> {
    let ns = ev.get_document("ns").ok()?;
    let db = ns.get_str("db").ok()?;
    Some(match ns.get_str("coll") {
        Ok(coll) => format!("{db}.{coll}"),
        Err(_) => db.to_owned(),
    })
}

/// Convert one change event. Headers: `operationType` and `ns` (`db.coll`, or `db` for
/// database-level events); key: `documentKey._id` as relaxed Extended JSON; timestamp:
/// `wallTime` when the server sends it (6.0+), else the cluster time's seconds.
pub(crate) fn convert(ev: RawDocumentBuf, payload: PayloadFormat) -> Result<Converted, ReadError> {
    let token =
        match ev.get_document("_id") {
            Ok(id) => Bytes::copy_from_slice(id.as_bytes()),
            Err(_) => return Err(ReadError::permanent(
                ErrorKind::Config,
                "a change event had no `_id` document (its resume token): the pipeline must not \
                 remove or change `_id`",
            )),
        };
    let op = ev.get_str("operationType").unwrap_or("unknown").to_owned();
    if op == "invalidate" {
        return Ok(Converted::Invalidate(token));
    }
    let cluster_time = ev.get_timestamp("clusterTime").ok();
    let timestamp = match ev.get_datetime("wallTime") {
        Ok(dt) => Some(dt.to_system_time()),
        Err(_) => {
            cluster_time.map(|ts| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(ts.time)))
        }
    };
    let key = match ev
        .get_document("documentKey")
        .ok()
        .and_then(|d| d.get("_id").ok().flatten())
    {
        Some(id) => Some(Bytes::from(json_of(id)?)),
        None => None,
    };
    let mut headers = vec![("operationType".to_owned(), Bytes::from(op))];
    if let Some(ns) = namespace(&ev) {
        headers.push(("ns".to_owned(), Bytes::from(ns)));
    }
    let body = match payload {
        PayloadFormat::Bson => Bytes::from(ev.into_bytes()),
        PayloadFormat::RelaxedJson => {
            let doc = ev.to_document().map_err(|e| decode_error("document", e))?;
            Bytes::from(
                serde_json::to_vec(&Bson::Document(doc).into_relaxed_extjson())
                    .map_err(|e| decode_error("JSON", e))?,
            )
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
