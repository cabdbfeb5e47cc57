//! Running commands and reporting failures that say what failed.

use std::fmt;
use std::process::Command;

/// A failed step, with a message for the user.
#[derive(Debug)]
pub struct Fail(pub String);

impl Fail {
    /// A failure with this message.
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Self {
        Self(e.to_string())
    }
}

/// Run `cmd` (output inherited); an error names `what`.
pub fn run(cmd: &mut Command, what: &str) -> Result<(), Fail> {
    let status = cmd
        .status()
        .map_err(|e| Fail::new(format!("{what}: cannot start {:?}: {e}", cmd.get_program())))?;
    if status.success() {
        Ok(())
    } else {
        Err(Fail::new(format!("{what} failed ({status})")))
    }
}

/// `cargo` as the running cargo names itself.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}
