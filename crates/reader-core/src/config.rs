//! Settings of a [`DataReader`](crate::DataReader).

use std::time::Duration;

use crate::flaky::FlakyConfig;

/// When deliveries are acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AckMode {
    /// The application calls [`Delivery::ack`](crate::Delivery::ack) (at-least-once, the default).
    #[default]
    Manual,
    /// Acknowledged as soon as the application receives it (at-most-once).
    Auto,
}

/// Settings of a reader. Every field has a sensible default; see each field.
#[derive(Clone, Debug)]
pub struct ReaderConfig {
    /// The source's name: a metric label and the checkpoint key. Default: the backend name.
    pub name: Option<String>,
    /// Deliveries buffered between the network task and the consumer (default 1024). When
    /// the buffer is full the network task stops fetching.
    pub buffer: usize,
    /// Most messages asked for in one fetch (default 512).
    pub fetch_max: usize,
    /// Fewest messages asked for when `adaptive` shrinks the fetch (default 16).
    pub fetch_min: usize,
    /// Grow the fetch size while fetches come back full (backlog) and shrink it while they
    /// come back small (default true).
    pub adaptive: bool,
    /// How long one fetch may wait for messages (default 1 s).
    pub fetch_wait: Duration,
    /// How much longer than `fetch_wait` a fetch may take before the session is declared
    /// dead (default 10 s): this is what detects a half-open connection.
    pub fetch_grace: Duration,
    /// Acknowledgement mode.
    pub ack_mode: AckMode,
    /// Most deliveries held unacknowledged; fetching pauses beyond it (default 8192). This
    /// bounds memory and the duplicates after a crash.
    pub max_unacked: usize,
    /// How long acknowledgements gather before one commit (default 100 ms).
    pub commit_interval: Duration,
    /// Time between health pings (default 5 s).
    pub ping_interval: Duration,
    /// A ping slower than this fails (default 5 s) and the session is replaced.
    pub ping_timeout: Duration,
    /// How long `close` and cancellation may take in all (default 10 s).
    pub close_timeout: Duration,
    /// Flakiness thresholds.
    pub flaky: FlakyConfig,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        Self {
            name: None,
            buffer: 1024,
            fetch_max: 512,
            fetch_min: 16,
            adaptive: true,
            fetch_wait: Duration::from_secs(1),
            fetch_grace: Duration::from_secs(10),
            ack_mode: AckMode::Manual,
            max_unacked: 8192,
            commit_interval: Duration::from_millis(100),
            ping_interval: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(10),
            flaky: FlakyConfig::default(),
        }
    }
}
