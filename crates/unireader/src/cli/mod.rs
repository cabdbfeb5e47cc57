//! The `unireader` command line (feature `cli`): what the binary does, as a library so it
//! is tested like the rest.

mod args;
mod output;
mod run;

pub use args::{Ack, Cli, Command, Format, From, TailArgs};
pub use output::message_json;
pub use run::{main_with, url_for_cli};
