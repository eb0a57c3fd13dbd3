//! An exclusive lock on a file beside the data it guards, held for as long as the returned
//! `File` is open: how processes sharing a SQLite data directory take turns where PostgreSQL
//! would give them an advisory lock (the scheduler's leader, schema migrations). The kernel
//! releases it when the holder closes the file or dies, `kill -9` included.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

/// Takes the lock on `path` (created if missing, never truncated) without waiting: the open
/// file while this process holds it, `None` while another open file (another process, or
/// another caller in this one) holds it.
pub fn try_lock_exclusive(path: &Path) -> std::io::Result<Option<File>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(err)) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_open_file_holds_the_lock_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let first = try_lock_exclusive(&path).unwrap();
        assert!(first.is_some());
        assert!(try_lock_exclusive(&path).unwrap().is_none());
        drop(first);
        assert!(try_lock_exclusive(&path).unwrap().is_some());
    }
}
