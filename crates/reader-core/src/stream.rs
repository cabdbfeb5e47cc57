//! The consumer side: one message at a time, a stream, batches, or adaptive batches.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;

use crate::codec::{Codec, Json};
use crate::error::ReadError;
use crate::message::Delivery;
use crate::typed::TypedStream;

/// How often a lingering batch looks at the buffer.
const LINGER_POLL: Duration = Duration::from_millis(1);

/// The deliveries of a [`DataReader`](crate::DataReader). A `futures::Stream` of
/// `Result<Delivery, ReadError>`; also offers single and batch reads.
pub struct ReadStream {
    rx: mpsc::Receiver<Result<Delivery, ReadError>>,
    auto_ack: bool,
    pending_error: Option<ReadError>,
    adaptive_target: usize,
}

impl ReadStream {
    pub(crate) fn new(rx: mpsc::Receiver<Result<Delivery, ReadError>>, auto_ack: bool) -> Self {
        Self {
            rx,
            auto_ack,
            pending_error: None,
            adaptive_target: 1,
        }
    }

    fn prepare(&self, item: Result<Delivery, ReadError>) -> Result<Delivery, ReadError> {
        if self.auto_ack {
            if let Ok(d) = &item {
                d.ack();
            }
        }
        item
    }

    /// Single mode: the next delivery, or `None` once the stream ended.
    pub async fn recv(&mut self) -> Option<Result<Delivery, ReadError>> {
        if let Some(e) = self.pending_error.take() {
            return Some(Err(e));
        }
        let item = self.rx.recv().await?;
        Some(self.prepare(item))
    }

    fn try_take(&mut self, batch: &mut Vec<Delivery>) -> bool {
        match self.rx.try_recv() {
            Ok(Ok(d)) => {
                if self.auto_ack {
                    d.ack();
                }
                batch.push(d);
                true
            }
            Ok(Err(e)) => {
                self.pending_error = Some(e);
                false
            }
            Err(_) => false,
        }
    }

    /// Batch mode: up to `max` deliveries, waiting at most `linger` after the first one
    /// for the batch to fill. `None` once the stream ended. An error ends the batch before
    /// it and is returned by the next call. While deliveries flow in, the buffer is looked
    /// at every millisecond, so a batch that fills during the linger returns within about
    /// 1 ms of filling; with nothing buffered it waits for the next delivery itself.
    pub async fn recv_batch(
        &mut self,
        max: usize,
        linger: Duration,
    ) -> Option<Result<Vec<Delivery>, ReadError>> {
        let first = match self.recv().await? {
            Ok(d) => d,
            Err(e) => return Some(Err(e)),
        };
        let mut batch = Vec::with_capacity(max.clamp(1, 4096));
        batch.push(first);
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < max && self.try_take(&mut batch) {}
        // Linger by looking at the buffer every LINGER_POLL, not by waking up for each
        // delivery that trickles in: the fetch task sends one at a time, and a wake-up per
        // delivery (a task switch, often across threads) cost batch mode ~1 CPU s per
        // million more than stream mode.
        //
        // A poll that found nothing turns the wait into one for the next delivery itself,
        // so an idle or trickling source costs one wake-up per delivery, never one per
        // millisecond of a long linger.
        let mut idle = false;
        while batch.len() < max && self.pending_error.is_none() && !linger.is_zero() {
            if tokio::time::Instant::now() >= deadline
                || (self.rx.is_closed() && self.rx.is_empty())
            {
                break;
            }
            if idle {
                match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                    Ok(Some(Ok(d))) => {
                        if self.auto_ack {
                            d.ack();
                        }
                        batch.push(d);
                    }
                    Ok(Some(Err(e))) => {
                        self.pending_error = Some(e);
                        break;
                    }
                    Ok(None) | Err(_) => break,
                }
                if batch.len() >= max {
                    break;
                }
            }
            let now = tokio::time::Instant::now();
            tokio::time::sleep_until(deadline.min(now + LINGER_POLL)).await;
            let before = batch.len();
            while batch.len() < max && self.try_take(&mut batch) {}
            idle = batch.len() == before;
        }
        Some(Ok(batch))
    }

    /// Adaptive mode: never waits for a batch to fill; takes what is already buffered, up
    /// to a target that doubles while batches come back full (a backlog) and halves while
    /// they do not (the consumer keeps up, so latency matters more), within `1..=max`.
    pub async fn recv_adaptive(&mut self, max: usize) -> Option<Result<Vec<Delivery>, ReadError>> {
        let first = match self.recv().await? {
            Ok(d) => d,
            Err(e) => return Some(Err(e)),
        };
        let target = self.adaptive_target.clamp(1, max.max(1));
        let mut batch = Vec::with_capacity(target);
        batch.push(first);
        while batch.len() < target && self.try_take(&mut batch) {}
        self.adaptive_target = if batch.len() >= target {
            (target * 2).min(max.max(1))
        } else {
            (target / 2).max(1)
        };
        Some(Ok(batch))
    }

    /// The current adaptive target size (for observing the adaptive mode).
    #[must_use]
    pub fn adaptive_target(&self) -> usize {
        self.adaptive_target
    }

    /// Batch mode as a stream.
    pub fn batches(
        self,
        max: usize,
        linger: Duration,
    ) -> impl Stream<Item = Result<Vec<Delivery>, ReadError>> {
        futures::stream::unfold(self, move |mut s| async move {
            let item = s.recv_batch(max, linger).await?;
            Some((item, s))
        })
    }

    /// Adaptive mode as a stream.
    pub fn adaptive(self, max: usize) -> impl Stream<Item = Result<Vec<Delivery>, ReadError>> {
        futures::stream::unfold(self, move |mut s| async move {
            let item = s.recv_adaptive(max).await?;
            Some((item, s))
        })
    }

    /// The typed view, decoding each payload as JSON into `T`. A payload that is not a `T`
    /// arrives as a [`TypedDelivery`](crate::TypedDelivery) holding a
    /// [`DecodeError`](crate::DecodeError); the stream goes on.
    #[must_use]
    pub fn typed<T: serde::de::DeserializeOwned>(self) -> TypedStream<T, Json> {
        TypedStream::new(self, Json)
    }

    /// The typed view with another codec ([`MessagePack`](crate::MessagePack),
    /// [`Raw`](crate::Raw), [`Utf8`](crate::Utf8), or the application's own
    /// [`Codec`](crate::Codec)).
    #[must_use]
    pub fn typed_with<T, C: Codec<T>>(self, codec: C) -> TypedStream<T, C> {
        TypedStream::new(self, codec)
    }

    /// How many deliveries are buffered right now.
    #[must_use]
    pub fn buffered_len(&self) -> usize {
        self.rx.len()
    }
}

impl Stream for ReadStream {
    type Item = Result<Delivery, ReadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(e) = self.pending_error.take() {
            return Poll::Ready(Some(Err(e)));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(item)) => Poll::Ready(Some(self.prepare(item))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
