//! Decoding payloads into the application's types: the [`Codec`] trait and the built-in
//! codecs ([`Json`], [`MessagePack`], [`Raw`], [`Utf8`]).
//!
//! A codec turns one [`Message`] into a `T`. It sees the whole message (headers, key,
//! position) so a format that needs context — a schema ID in a header, a content type — can
//! use it. Users' own formats (protobuf, Avro…) implement the trait:
//!
//! ```
//! use reader_core::{Codec, CodecError, Message};
//!
//! /// A comma-separated `id,amount` line.
//! struct Csv;
//! impl Codec<(u64, f64)> for Csv {
//!     fn name(&self) -> &'static str { "csv" }
//!     fn decode(&self, m: &Message) -> Result<(u64, f64), CodecError> {
//!         let s = std::str::from_utf8(&m.payload)?;
//!         let (id, amount) = s.split_once(',').ok_or("expected `id,amount`")?;
//!         Ok((id.trim().parse()?, amount.trim().parse()?))
//!     }
//! }
//! let m = Message::new("7, 2.5", reader_core::Position::None);
//! assert_eq!(Csv.decode(&m).unwrap(), (7, 2.5));
//! ```

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::message::Message;

/// What a codec's failure carries: any error; its text becomes the
/// [`DecodeError`](crate::DecodeError)'s message, so it should say what was wrong (serde's
/// errors name the field: "missing field `amount`").
pub type CodecError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Decodes the payload of a [`Message`] into a `T`. See the module docs.
pub trait Codec<T>: Send + Sync {
    /// A short name for errors and logs (`json`, `msgpack`…).
    fn name(&self) -> &'static str;

    /// Decode one message.
    ///
    /// # Errors
    /// Whatever made the payload not a `T`; it becomes a per-message
    /// [`DecodeError`](crate::DecodeError), never a stream-ending error.
    fn decode(&self, message: &Message) -> Result<T, CodecError>;
}

/// JSON via `serde_json` (the default codec).
#[derive(Clone, Copy, Debug, Default)]
pub struct Json;

impl<T: DeserializeOwned> Codec<T> for Json {
    fn name(&self) -> &'static str {
        "json"
    }
    fn decode(&self, message: &Message) -> Result<T, CodecError> {
        Ok(serde_json::from_slice(&message.payload)?)
    }
}

/// MessagePack via `rmp-serde` (structs encoded as maps, `rmp_serde::to_vec_named`, or as
/// arrays, `rmp_serde::to_vec`, both decode).
#[derive(Clone, Copy, Debug, Default)]
pub struct MessagePack;

impl<T: DeserializeOwned> Codec<T> for MessagePack {
    fn name(&self) -> &'static str {
        "msgpack"
    }
    fn decode(&self, message: &Message) -> Result<T, CodecError> {
        Ok(rmp_serde::from_slice(&message.payload)?)
    }
}

/// The payload bytes as they are (never fails; no copy).
#[derive(Clone, Copy, Debug, Default)]
pub struct Raw;

impl Codec<Bytes> for Raw {
    fn name(&self) -> &'static str {
        "raw"
    }
    fn decode(&self, message: &Message) -> Result<Bytes, CodecError> {
        Ok(message.payload.clone())
    }
}

/// The payload as UTF-8 text (fails on invalid UTF-8, naming the byte offset).
#[derive(Clone, Copy, Debug, Default)]
pub struct Utf8;

impl Codec<String> for Utf8 {
    fn name(&self) -> &'static str {
        "utf8"
    }
    fn decode(&self, message: &Message) -> Result<String, CodecError> {
        Ok(std::str::from_utf8(&message.payload)?.to_owned())
    }
}

impl<T, C: Codec<T> + ?Sized> Codec<T> for std::sync::Arc<C> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn decode(&self, message: &Message) -> Result<T, CodecError> {
        (**self).decode(message)
    }
}
