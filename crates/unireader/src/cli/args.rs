//! Command-line arguments.

use clap::{Parser, Subcommand, ValueEnum};

/// Read Redis Streams / Pub/Sub, MongoDB change streams and Kafka topics through one reader.
#[derive(Debug, Parser)]
#[command(
    name = "unireader",
    version,
    after_help = "URLs:
  redis://[user:pass@]host:port[/db]?stream=KEY&group=G      Redis Streams consumer group
  redis://host:port?channel=a,b&pattern=news.*                 Redis Pub/Sub (at-most-once)
  mongodb://host:port/DB?collection=C                          MongoDB change stream
  kafka://host:port/TOPIC?group=G                              Kafka consumer group
TLS and logins:
  rediss://user:pass@host:port?...&tls_ca=CA.pem[&tls_cert=C.pem&tls_key=K.pem]
  mongodb://user:pass@host/DB?authSource=admin&tls=true&tlsCAFile=CA.pem&collection=C
  kafka://user:pass@host:port/TOPIC?group=G&sasl=scram-sha-512&tls=true&tls_ca=CA.pem
Each backend's full grammar is in its crate docs (reader-redis, reader-mongo, reader-kafka).

Examples:
  unireader tail 'kafka://127.0.0.1:9092/orders' --group billing --max 10
  unireader tail 'redis://127.0.0.1:6379?stream=orders' 'mongodb://127.0.0.1:27017/shop?collection=orders'
  unireader check 'kafka://127.0.0.1:9092/orders?group=billing'

Exit codes: 0 done, 1 a source failed, 2 bad arguments or URL."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the messages of one or several sources, one JSON object a line.
    Tail(TailArgs),
    /// Connect to each source, report its state and what would be read, and exit.
    Check {
        /// Source URLs.
        #[arg(required = true)]
        urls: Vec<String>,
        /// Seconds to wait for each source to become ready.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
}

/// Where to start when no progress is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum From {
    /// The oldest data kept.
    Earliest,
    /// Only new data.
    Latest,
    /// A backend position (a Redis entry ID, a Kafka offset).
    Id(String),
    /// A time, as Unix seconds.
    Time(u64),
}

impl std::str::FromStr for From {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "earliest" => Ok(From::Earliest),
            "latest" => Ok(From::Latest),
            _ => {
                if let Some(t) = s.strip_prefix("time:") {
                    t.parse()
                        .map(From::Time)
                        .map_err(|_| format!("--from time:{t}: not whole Unix seconds"))
                } else if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '-') {
                    Ok(From::Id(s.to_owned()))
                } else {
                    Err(format!(
                        "--from {s:?}: expected earliest, latest, an ID/offset (digits) or time:<unix secs>"
                    ))
                }
            }
        }
    }
}

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object a line: source, position, key, payload, timestamp.
    Json,
    /// The payload bytes only, one a line.
    Raw,
}

/// Acknowledgement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Ack {
    /// Acknowledge each message once printed (progress is committed).
    Auto,
    /// Never acknowledge (nothing is committed: a peek).
    None,
}

/// `unireader tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// Source URLs (any mix of redis://, mongodb://, kafka://).
    #[arg(required = true)]
    pub urls: Vec<String>,
    /// Consumer group, for URLs that do not name one.
    #[arg(long)]
    pub group: Option<String>,
    /// Where to start without stored progress: earliest, latest, an ID/offset, or time:SECS.
    #[arg(long)]
    pub from: Option<From>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Acknowledge what was printed (auto) or nothing (none).
    #[arg(long, value_enum, default_value_t = Ack::Auto)]
    pub ack: Ack,
    /// Stop after N messages in all.
    #[arg(long)]
    pub max: Option<u64>,
    /// Serve /metrics and /health on this address (e.g. 127.0.0.1:9464).
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Seconds the graceful close may take.
    #[arg(long, default_value_t = 10)]
    pub close_timeout: u64,
}
