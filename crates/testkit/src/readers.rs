//! Waiting on a reader in tests, bounded: every wait has a deadline and panics with what it
//! waited for, so a hung reader fails the test instead of hanging it.

use std::time::Duration;

use reader_core::{
    ConnState, Connector, DataReader, Delivery, EventKind, ReadError, ReadStream, ReaderEvent,
};
use tokio::sync::broadcast;

/// Until the reader is `Ready`.
pub async fn until_ready<C: Connector>(reader: &DataReader<C>, within: Duration) {
    let mut w = reader.watch_state();
    tokio::time::timeout(within, async {
        loop {
            if *w.borrow_and_update() == ConnState::Ready {
                return;
            }
            if w.changed().await.is_err() {
                panic!("the reader's state channel closed before Ready");
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the reader did not become ready within {within:?}"));
}

/// The next stream item.
pub async fn next(
    stream: &mut ReadStream,
    within: Duration,
) -> Option<Result<Delivery, ReadError>> {
    tokio::time::timeout(within, stream.recv())
        .await
        .unwrap_or_else(|_| panic!("no delivery within {within:?}"))
}

/// The next event of `kind` (events of other kinds, and a lagging receiver, are skipped).
pub async fn event_of(
    rx: &mut broadcast::Receiver<ReaderEvent>,
    kind: EventKind,
    within: Duration,
) -> ReaderEvent {
    tokio::time::timeout(within, async {
        loop {
            match rx.recv().await {
                Ok(e) if e.kind == kind => return e,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("event channel closed"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind:?} event within {within:?}"))
}

/// The first error the reader records in its health (a failed attempt inside an outage,
/// which no event marks), polled every 50 ms.
pub async fn first_error<C: Connector>(
    reader: &DataReader<C>,
    within: Duration,
) -> reader_core::LastError {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(e) = reader.health().last_error {
            return e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reader recorded no error within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
