//! Files holding secrets that aragora writes itself (generated keys, the TLS key of `aragora
//! up`, the admin key file): readable by their owner only, and never seen half-written.

use std::io::Write;
use std::path::Path;

/// What [`write_private`] does when `path` already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Replace it (a renewed certificate key, a new admin key).
    Replace,
    /// Keep it and fail with `AlreadyExists`: two processes generating a key at once end up
    /// with the first one's, never one each.
    Keep,
}

/// Writes `text` to `path` with mode 0600: into a temporary file beside it, synced, then moved
/// into place (renamed, or hard-linked for [`Existing::Keep`], which fails where a file is).
pub fn write_private(path: &Path, text: &str, existing: Existing) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = std::path::PathBuf::from(temporary);
    let _ = std::fs::remove_file(&temporary);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&temporary).and_then(|mut file| {
        file.write_all(text.as_bytes())?;
        file.sync_all()
    });
    let placed = written.and_then(|()| match existing {
        Existing::Replace => std::fs::rename(&temporary, path),
        Existing::Keep => std::fs::hard_link(&temporary, path),
    });
    let _ = std::fs::remove_file(&temporary);
    placed
}

/// The key in `path` (trimmed), or one made by `generate` and written there first (with its
/// directory), with `true` when it was generated. A key another process wrote in the meantime
/// wins over ours.
pub fn read_or_generate_key(
    path: &Path,
    generate: impl FnOnce() -> String,
) -> std::io::Result<(String, bool)> {
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok((text.trim().to_string(), false)),
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
        Err(_) => {}
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let key = generate();
    match write_private(path, &key, Existing::Keep) {
        Ok(()) => Ok((key, true)),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok((std::fs::read_to_string(path)?.trim().to_string(), false))
        }
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_file_is_owner_only_and_kept_or_replaced_as_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        write_private(&path, "first", Existing::Keep).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let kept = write_private(&path, "second", Existing::Keep).unwrap_err();
        assert_eq!(kept.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first");
        write_private(&path, "third", Existing::Replace).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "third");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_key_is_generated_once_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/k.key");
        let (first, generated) = read_or_generate_key(&path, || "abc".into()).unwrap();
        assert_eq!((first.as_str(), generated), ("abc", true));
        let (again, generated) = read_or_generate_key(&path, || "other".into()).unwrap();
        assert_eq!((again.as_str(), generated), ("abc", false));
    }
}
