//! Reading several sources as one stream.

use std::sync::Arc;

use futures::stream::{select_all, BoxStream, StreamExt};
use reader_core::{Delivery, ReadError, ReadStream};

/// An item of a merged stream: which source it came from, and what it is.
#[derive(Debug)]
pub struct Tagged {
    /// The source's name (as given to the reader).
    pub source: Arc<str>,
    /// The delivery, or the error that ended that source's stream.
    pub item: Result<Delivery, ReadError>,
}

/// Merge the streams of several readers (any backends) into one, fairly: no source starves
/// another. Each source keeps its own reconnects, backpressure and commits; a source whose
/// stream ends (its error is yielded last) leaves the others running. The merged stream
/// ends when every source's has.
///
/// ```
/// # use futures::StreamExt;
/// # use std::sync::Arc;
/// # use reader_core::testing::ScriptedConnector;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), reader_core::ReadError> {
/// let (a, b) = (ScriptedConnector::new(), ScriptedConnector::new());
/// a.push_messages(2);
/// b.push_messages(3);
/// let ra = reader_core::DataReader::builder(a).retry(unireader::default_retry())
///     .configure(|c| c.name = Some("a".into())).build()?;
/// let rb = reader_core::DataReader::builder(b).retry(unireader::default_retry())
///     .configure(|c| c.name = Some("b".into())).build()?;
/// let token = unireader::CancellationToken::new();
/// let mut all = unireader::merge([
///     ("a", ra.read(token.child_token())),
///     ("b", rb.read(token.child_token())),
/// ]);
/// let mut seen = 0;
/// while let Some(t) = all.next().await {
///     t.item?.ack();
///     seen += 1;
///     if seen == 5 { break; }
/// }
/// ra.close().await;
/// rb.close().await;
/// # Ok(()) }
/// ```
pub fn merge<N: Into<Arc<str>>>(
    streams: impl IntoIterator<Item = (N, ReadStream)>,
) -> BoxStream<'static, Tagged> {
    select_all(streams.into_iter().map(|(name, s)| {
        let source: Arc<str> = name.into();
        s.map(move |item| Tagged {
            source: source.clone(),
            item,
        })
        .boxed()
    }))
    .boxed()
}
