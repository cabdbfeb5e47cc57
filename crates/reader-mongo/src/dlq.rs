//! Poison handling for change events: the dead-letter collection and the [`FullDocument`]
//! codec.
//!
//! [`Delivery::dead_letter`](reader_core::Delivery::dead_letter) inserts one document into
//! `<collection>_dlq` of the event's database (the collection the event is about, from its
//! `ns`; for a collection watch, the watched one):
//!
//! ```text
//! { event: <the change event, as BSON>, error: "<reason>", position: "<token…>",
//!   source: "<reader name>", ns: "db.coll", deliveries: <n, when the source counted>,
//!   at: <date> }
//! ```
//!
//! When a whole database is watched, the dead-letter collection is in it, so its own
//! inserts come back as change events: filter them out with a `$match` on `ns.coll`.

use std::time::SystemTime;

use mongodb::bson::{doc, Bson, DateTime, Document, RawDocument};
use mongodb::Client;
use reader_core::{Codec, CodecError, ErrorKind, Message, ReadError};
use serde::de::DeserializeOwned;

use crate::classify::classify_mongo_error;
use crate::config::MongoConfig;
use crate::connector::redact_error;
use crate::redact::Redactor;

/// The change event of `message` as a BSON document, whichever payload format it has.
fn event_of(message: &Message) -> Bson {
    if let Ok(raw) = RawDocument::from_bytes(&message.payload) {
        if let Ok(d) = Document::try_from(raw) {
            return Bson::Document(d);
        }
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&message.payload) {
        if let Ok(b) = Bson::try_from(v) {
            return b;
        }
    }
    Bson::Binary(mongodb::bson::Binary {
        subtype: mongodb::bson::spec::BinarySubtype::Generic,
        bytes: message.payload.to_vec(),
    })
}

/// `(database, collection)` of the dead-letter collection for `message`.
fn target(cfg: &MongoConfig, message: &Message) -> Result<(String, String), ReadError> {
    let ns = message
        .header("ns")
        .map(|b| String::from_utf8_lossy(b).into_owned());
    let (db, coll) = match (&cfg.database, &cfg.collection, ns.as_deref()) {
        (Some(db), Some(c), _) => (db.clone(), c.clone()),
        (_, _, Some(ns)) => match ns.split_once('.') {
            Some((db, c)) => (db.to_owned(), c.to_owned()),
            None => {
                return Err(ReadError::permanent(
                    ErrorKind::Config,
                    format!("mongo: the event on {ns:?} names no collection to dead-letter to"),
                ))
            }
        },
        _ => {
            return Err(ReadError::permanent(
                ErrorKind::Config,
                "mongo: the event has no `ns`: no collection to dead-letter to",
            ))
        }
    };
    Ok((db, format!("{coll}_dlq")))
}

/// Insert `message` with `reason` into its dead-letter collection.
pub(crate) async fn write(
    client: &Client,
    cfg: &MongoConfig,
    redactor: &Redactor,
    message: &Message,
    reason: &str,
) -> Result<(), ReadError> {
    let (db, coll) = target(cfg, message)?;
    let mut d: Document = doc! {
        "event": event_of(message),
        "error": reason,
        "position": message.position.to_string(),
        "source": message.source.as_ref(),
        "at": DateTime::from_system_time(SystemTime::now()),
    };
    if let Some(ns) = message.header("ns") {
        d.insert("ns", String::from_utf8_lossy(ns).into_owned());
    }
    if let Some(n) = message.deliveries {
        d.insert("deliveries", i64::from(n));
    }
    let bound = cfg.op_timeout;
    match tokio::time::timeout(
        bound,
        client
            .database(&db)
            .collection::<Document>(&coll)
            .insert_one(d),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(redact_error(redactor, classify_mongo_error(&e))),
        Err(_) => Err(ReadError::transient(
            ErrorKind::Timeout,
            format!("inserting into {db}.{coll} (dead letter) did not answer within {bound:?}"),
        )),
    }
}

/// Decodes the `fullDocument` of a change event into `T` — from BSON directly when the
/// reader has `payload=bson` (no JSON round trip), from relaxed Extended JSON otherwise.
/// An event without a `fullDocument` (a delete; an update without `fullDocument=updateLookup`)
/// is a decode error saying so.
///
/// ```no_run
/// # async fn f(reader: reader_core::DataReader<reader_mongo::MongoConnector>) {
/// use futures::StreamExt;
/// #[derive(serde::Deserialize)]
/// struct Order { amount: f64 }
/// let mut orders = reader
///     .read(reader_core::CancellationToken::new())
///     .typed_with::<Order, _>(reader_mongo::FullDocument);
/// while let Some(Ok(d)) = orders.next().await {
///     match d.value() {
///         Ok(order) => { println!("{}", order.amount); d.ack(); }
///         Err(e) => { let _ = d.dead_letter(e).await; }
///     }
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct FullDocument;

impl<T: DeserializeOwned> Codec<T> for FullDocument {
    fn name(&self) -> &'static str {
        "mongo-full-document"
    }

    fn decode(&self, message: &Message) -> Result<T, CodecError> {
        let p = &message.payload;
        if p.first() == Some(&b'{') {
            let mut v: serde_json::Value = serde_json::from_slice(p)?;
            let doc = v
                .get_mut("fullDocument")
                .filter(|d| d.is_object())
                .map(serde_json::Value::take)
                .ok_or("the change event has no `fullDocument`")?;
            return Ok(serde_json::from_value(doc)?);
        }
        let raw = RawDocument::from_bytes(p)?;
        let doc = raw
            .get_document("fullDocument")
            .map_err(|_| "the change event has no `fullDocument`")?;
        Ok(mongodb::bson::from_slice(doc.as_bytes())?)
    }
}
