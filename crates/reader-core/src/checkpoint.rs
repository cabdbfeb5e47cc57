//! Durable progress outside the source: where MongoDB resume tokens (and Kafka offsets
//! without a group) are kept between processes.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::error::{ErrorKind, ReadError};
use crate::position::Checkpoint;

/// Loads and saves the [`Checkpoint`] of a source, by source name.
#[async_trait]
pub trait CheckpointStore: Send + Sync + fmt::Debug + 'static {
    /// The saved checkpoint of `source`, or `None` when nothing was saved yet.
    ///
    /// # Errors
    /// A store that cannot be read, or holds something that is not a checkpoint, fails
    /// loudly: silently restarting from zero would re-deliver or skip everything.
    async fn load(&self, source: &str) -> Result<Option<Checkpoint>, ReadError>;

    /// Save the checkpoint of `source` (replacing the previous one).
    ///
    /// # Errors
    /// When it could not be made durable.
    async fn save(&self, source: &str, checkpoint: &Checkpoint) -> Result<(), ReadError>;
}

/// Keeps checkpoints in memory (lost with the process).
#[derive(Debug, Default)]
pub struct MemoryCheckpointStore {
    map: Mutex<HashMap<String, Checkpoint>>,
}

impl MemoryCheckpointStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl CheckpointStore for MemoryCheckpointStore {
    async fn load(&self, source: &str) -> Result<Option<Checkpoint>, ReadError> {
        let map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(map.get(source).cloned())
    }

    async fn save(&self, source: &str, checkpoint: &Checkpoint) -> Result<(), ReadError> {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.insert(source.to_owned(), checkpoint.clone());
        Ok(())
    }
}

/// Keeps one JSON file per source in a directory; each save writes a temporary file,
/// syncs it and renames it over the old one, so a crash leaves the old or the new
/// checkpoint, never half of one.
#[derive(Debug, Clone)]
pub struct FileCheckpointStore {
    dir: PathBuf,
}

impl FileCheckpointStore {
    /// A store in `dir` (created on first save).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The file of `source`. Source names are sanitised so they cannot escape the directory.
    #[must_use]
    pub fn path_of(&self, source: &str) -> PathBuf {
        let safe: String = source
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}.checkpoint.json"))
    }

    /// Parse the bytes of a checkpoint file.
    ///
    /// # Errors
    /// A message naming the file and what is wrong with it.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Checkpoint, ReadError> {
        serde_json::from_slice(bytes).map_err(|e| {
            ReadError::permanent(
                ErrorKind::Checkpoint,
                format!(
                    "checkpoint file {} is not a valid checkpoint ({e}); refusing to restart \
                     from scratch — fix or remove the file",
                    path.display()
                ),
            )
        })
    }
}

fn io_error(what: &str, path: &Path, e: &std::io::Error) -> ReadError {
    ReadError::transient(
        ErrorKind::Checkpoint,
        format!("{what} checkpoint file {}: {e}", path.display()),
    )
}

#[async_trait]
impl CheckpointStore for FileCheckpointStore {
    async fn load(&self, source: &str) -> Result<Option<Checkpoint>, ReadError> {
        let path = self.path_of(source);
        match tokio::fs::read(&path).await {
            Ok(bytes) => Self::parse(&path, &bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("cannot read", &path, &e)),
        }
    }

    async fn save(&self, source: &str, checkpoint: &Checkpoint) -> Result<(), ReadError> {
        let path = self.path_of(source);
        let dir = self.dir.clone();
        let bytes = serde_json::to_vec(checkpoint).map_err(|e| {
            ReadError::permanent(
                ErrorKind::Checkpoint,
                format!("cannot encode checkpoint: {e}"),
            )
        })?;
        tokio::task::spawn_blocking(move || -> Result<(), ReadError> {
            std::fs::create_dir_all(&dir)
                .map_err(|e| io_error("cannot create the directory of", &path, &e))?;
            let tmp = path.with_extension("json.tmp");
            let mut f =
                std::fs::File::create(&tmp).map_err(|e| io_error("cannot create", &tmp, &e))?;
            f.write_all(&bytes)
                .map_err(|e| io_error("cannot write", &tmp, &e))?;
            f.sync_all()
                .map_err(|e| io_error("cannot sync", &tmp, &e))?;
            drop(f);
            std::fs::rename(&tmp, &path).map_err(|e| io_error("cannot rename over", &path, &e))?;
            if let Ok(d) = std::fs::File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })
        .await
        .map_err(|e| {
            ReadError::transient(
                ErrorKind::Checkpoint,
                format!("checkpoint writer task failed: {e}"),
            )
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::Position;

    #[tokio::test]
    async fn file_store_round_trips_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileCheckpointStore::new(dir.path());
        assert_eq!(store.load("orders").await.unwrap(), None);
        let mut cp = Checkpoint::new();
        cp.advance(&Position::ResumeToken {
            token: bytes::Bytes::from_static(b"\x05\x00\x00\x00\x00"),
            cluster_time: Some(7),
        });
        store.save("orders", &cp).await.unwrap();
        assert_eq!(store.load("orders").await.unwrap(), Some(cp));

        // A torn write: half a JSON document.
        std::fs::write(store.path_of("orders"), b"{\"positions\":[{\"kind\":").unwrap();
        let err = store.load("orders").await.unwrap_err();
        assert!(err.is_permanent());
        assert!(err.to_string().contains("not a valid checkpoint"), "{err}");
    }

    #[test]
    fn source_names_cannot_escape_the_directory() {
        let store = FileCheckpointStore::new("/tmp/x");
        assert_eq!(
            store.path_of("../../etc/passwd"),
            PathBuf::from("/tmp/x/______etc_passwd.checkpoint.json")
        );
    }
}
