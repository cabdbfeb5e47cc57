//! Building a reader from a URL.

use std::sync::Arc;
use std::time::Duration;

use reader_core::{
    BoxConnector, CheckpointStore, DataReader, DataReaderBuilder, ReadError, ReaderConfig,
    RetryPolicy,
};
use reader_retry::Retry;

/// A reader of any backend: what [`from_url`] builds.
pub type Source = DataReader<BoxConnector>;

/// The retry policy readers get unless told otherwise: reconnect for as long as the source
/// is away, up to 5 minutes per outage; 100 ms doubling to a 5 s cap, equal jitter.
#[must_use]
pub fn default_retry() -> Arc<dyn RetryPolicy> {
    Retry::persistent(Duration::from_secs(300)).into_policy()
}

fn scheme_of(url: &str) -> Result<String, ReadError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(ReadError::config(format!(
            "source URL `{}` has no scheme: expected redis://, rediss://, mongodb://, mongodb+srv:// or kafka://",
            redact(url)
        )));
    };
    if rest.is_empty() {
        return Err(ReadError::config(format!(
            "source URL `{scheme}://` has no host"
        )));
    }
    Ok(scheme.to_ascii_lowercase())
}

/// Shows a URL with any password replaced by `***` (a bare user-info part counts as one:
/// this runs before the scheme is known to be valid).
pub(crate) fn redact(url: &str) -> String {
    reader_core::urltext::redact_url(
        url,
        reader_core::urltext::RedactRules {
            bare_userinfo_is_secret: true,
            secret_params: &[],
        },
    )
}

#[allow(dead_code)] // used only when a backend feature is off
fn feature_off(scheme: &str, feature: &str) -> ReadError {
    ReadError::config(format!(
        "`{scheme}://` URLs need the `{feature}` feature of unireader, which this build does not enable"
    ))
}

/// The connector a URL names, type-erased. The scheme chooses the backend.
///
/// # Errors
/// A configuration error naming the wrong part of the URL (never its password).
pub fn connector_from_url(url: &str) -> Result<BoxConnector, ReadError> {
    let scheme = scheme_of(url)?;
    let connector = match scheme.as_str() {
        "redis" | "rediss" | "redis+tls" => {
            #[cfg(feature = "redis")]
            {
                BoxConnector::new(reader_redis::RedisConnector::from_url(url)?)
            }
            #[cfg(not(feature = "redis"))]
            {
                return Err(feature_off(&scheme, "redis"));
            }
        }
        "mongodb" | "mongodb+srv" => {
            #[cfg(feature = "mongo")]
            {
                BoxConnector::new(reader_mongo::MongoConnector::from_url(url)?)
            }
            #[cfg(not(feature = "mongo"))]
            {
                return Err(feature_off(&scheme, "mongo"));
            }
        }
        "kafka" | "kafka+ssl" | "kafka+tls" => {
            #[cfg(feature = "kafka")]
            {
                BoxConnector::new(reader_kafka::KafkaConnector::from_url(url)?)
            }
            #[cfg(not(feature = "kafka"))]
            {
                return Err(feature_off(&scheme, "kafka"));
            }
        }
        other => {
            return Err(ReadError::config(format!(
                "unknown scheme `{other}` in source URL `{}`: expected redis://, rediss://, mongodb://, mongodb+srv:// or kafka://",
                redact(url)
            )))
        }
    };
    Ok(connector)
}

/// Start building a reader of the source `url` names (see the crate docs for the schemes).
///
/// # Errors
/// A configuration error naming the wrong part of the URL or option.
pub fn from_url(url: &str) -> Result<SourceBuilder, ReadError> {
    // The backend tunes the reader's defaults (Connector::tune) inside `builder`.
    Ok(SourceBuilder {
        inner: DataReader::builder(connector_from_url(url)?).retry(default_retry()),
    })
}

/// Builds a [`Source`]; every setting has a default.
pub struct SourceBuilder {
    inner: DataReaderBuilder<BoxConnector>,
}

impl SourceBuilder {
    /// The source's name: the `source` label of its metrics and its checkpoint key.
    #[must_use]
    pub fn name(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.configure(|c| c.name = Some(name))
    }

    /// Replace the retry policy (default: [`default_retry`]).
    #[must_use]
    pub fn retry(self, policy: Arc<dyn RetryPolicy>) -> Self {
        Self {
            inner: self.inner.retry(policy),
        }
    }

    /// Change reader settings (buffer, fetch size, ack mode, timeouts…).
    #[must_use]
    pub fn configure(self, f: impl FnOnce(&mut ReaderConfig)) -> Self {
        Self {
            inner: self.inner.configure(f),
        }
    }

    /// Where progress is saved and loaded from at start (needed by MongoDB readers that
    /// should resume across processes; Redis and Kafka keep progress in the server).
    #[must_use]
    pub fn checkpoint_store(self, store: Arc<dyn CheckpointStore>) -> Self {
        Self {
            inner: self.inner.checkpoint_store(store),
        }
    }

    /// Build the reader. Nothing connects until [`DataReader::read`].
    ///
    /// # Errors
    /// A configuration error when a setting is out of range.
    pub fn build(self) -> Result<Source, ReadError> {
        self.inner.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(url: &str) -> String {
        match from_url(url) {
            Ok(_) => panic!("{url} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_url_without_scheme_says_what_is_expected() {
        let e = err("127.0.0.1:6379");
        assert!(e.contains("no scheme") && e.contains("redis://"), "{e}");
    }

    #[test]
    fn an_unknown_scheme_is_named_and_the_password_is_not() {
        let e = err("amqp://user:hunter2@host/q");
        assert!(e.contains("`amqp`"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn an_empty_host_is_an_error() {
        assert!(err("kafka://").contains("no host"));
    }

    #[cfg(feature = "kafka")]
    #[test]
    fn a_kafka_url_builds_a_kafka_reader() {
        let r = from_url("kafka://127.0.0.1:1/orders?group=g")
            .and_then(|b| b.name("orders").build())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.backend(), "kafka");
        assert_eq!(r.source(), "orders");
    }

    #[cfg(feature = "mongo")]
    #[test]
    fn a_mongo_url_builds_a_mongo_reader() {
        let r = from_url("mongodb://127.0.0.1:1/shop?collection=orders")
            .and_then(SourceBuilder::build)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.backend(), "mongo");
    }
}
