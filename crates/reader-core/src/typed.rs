//! Typed reading: [`ReadStream::typed`](crate::ReadStream::typed) turns the stream of
//! deliveries into a stream of [`TypedDelivery`]s, each holding either the decoded value or
//! a [`DecodeError`].
//!
//! A payload that does not decode never ends the stream and is never dropped: it arrives
//! as a `TypedDelivery` whose [`value`](TypedDelivery::value) is the `DecodeError` (raw
//! bytes, position, source, and the codec's message — serde names the field). The
//! application decides: acknowledge to skip it, leave it unacknowledged to have it
//! delivered again, or [`dead_letter`](crate::Delivery::dead_letter) it.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;

use crate::codec::{Codec, CodecError};
use crate::error::ReadError;
use crate::message::Delivery;
use crate::position::Position;
use crate::stream::ReadStream;

/// A payload that did not decode: everything needed to log it, skip it or dead-letter it.
pub struct DecodeError {
    payload: Bytes,
    position: Position,
    source: Arc<str>,
    codec: &'static str,
    target: &'static str,
    message: String,
    cause: CodecError,
}

impl DecodeError {
    /// The raw payload, exactly as read.
    #[must_use]
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Where the message sits in its source.
    #[must_use]
    pub fn position(&self) -> &Position {
        &self.position
    }

    /// The name of the source that read it.
    #[must_use]
    pub fn source_name(&self) -> &str {
        &self.source
    }

    /// The codec's name (`json`, `msgpack`…).
    #[must_use]
    pub fn codec(&self) -> &'static str {
        self.codec
    }

    /// The Rust type it was decoded into.
    #[must_use]
    pub fn target(&self) -> &'static str {
        self.target
    }

    /// The codec's own message (serde's: "missing field `amount` at line 1 column 20").
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: the message at {} is not a {} ({}): {}",
            self.source, self.position, self.target, self.codec, self.message
        )
    }
}

impl fmt::Debug for DecodeError {
    // The payload may hold anything, secrets included: its length only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodeError")
            .field("source", &self.source)
            .field("position", &self.position)
            .field("codec", &self.codec)
            .field("target", &self.target)
            .field("message", &self.message)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.cause.as_ref())
    }
}

/// A [`Delivery`] with its payload decoded — or the [`DecodeError`] that says why not.
/// Derefs to the `Delivery`: acknowledge, dead-letter and read the delivery count on it.
pub struct TypedDelivery<T> {
    delivery: Delivery,
    value: Result<T, DecodeError>,
}

impl<T> TypedDelivery<T> {
    /// Decode `delivery` with `codec` (what the typed stream does for each delivery; also
    /// for batches: `batch.into_iter().map(|d| TypedDelivery::decode(d, &Json))`).
    pub fn decode<C: Codec<T> + ?Sized>(delivery: Delivery, codec: &C) -> Self {
        let value = codec.decode(delivery.message()).map_err(|cause| {
            let m = delivery.message();
            DecodeError {
                payload: m.payload.clone(),
                position: m.position.clone(),
                source: m.source.clone(),
                codec: codec.name(),
                target: std::any::type_name::<T>(),
                message: cause.to_string(),
                cause,
            }
        });
        Self { delivery, value }
    }

    /// The decoded value, or why the payload did not decode.
    ///
    /// # Errors
    /// The [`DecodeError`] of a payload that is not a `T`.
    pub fn value(&self) -> Result<&T, &DecodeError> {
        self.value.as_ref()
    }

    /// Whether the payload decoded.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.value.is_ok()
    }

    /// The delivery (to acknowledge or dead-letter).
    #[must_use]
    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    /// Both halves.
    pub fn into_parts(self) -> (Delivery, Result<T, DecodeError>) {
        (self.delivery, self.value)
    }
}

impl<T> Deref for TypedDelivery<T> {
    type Target = Delivery;
    fn deref(&self) -> &Delivery {
        &self.delivery
    }
}

impl<T: fmt::Debug> fmt::Debug for TypedDelivery<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedDelivery")
            .field("delivery", &self.delivery)
            .field("value", &self.value)
            .finish()
    }
}

/// The typed view of a [`ReadStream`]: a `futures::Stream` of
/// `Result<TypedDelivery<T>, ReadError>`. `Err` items are the reader's own errors (they end
/// the stream as before); decode failures are `Ok` items whose value is a [`DecodeError`].
pub struct TypedStream<T, C> {
    inner: ReadStream,
    codec: C,
    _t: PhantomData<fn() -> T>,
}

impl<T, C: Codec<T>> TypedStream<T, C> {
    pub(crate) fn new(inner: ReadStream, codec: C) -> Self {
        Self {
            inner,
            codec,
            _t: PhantomData,
        }
    }

    /// The next typed delivery, or `None` once the stream ended.
    pub async fn recv(&mut self) -> Option<Result<TypedDelivery<T>, ReadError>> {
        let item = self.inner.recv().await?;
        Some(item.map(|d| TypedDelivery::decode(d, &self.codec)))
    }

    /// The codec.
    pub fn codec(&self) -> &C {
        &self.codec
    }

    /// Back to the untyped stream.
    #[must_use]
    pub fn into_inner(self) -> ReadStream {
        self.inner
    }
}

impl<T, C: Codec<T> + Unpin> Stream for TypedStream<T, C> {
    type Item = Result<TypedDelivery<T>, ReadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(item)) => {
                Poll::Ready(Some(item.map(|d| TypedDelivery::decode(d, &this.codec))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
