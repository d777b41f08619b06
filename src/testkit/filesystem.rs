//! A small file system of its own for a test server's files, to fill its disk on purpose: a
//! size-limited tmpfs, mounted on a fresh temporary directory and owned by the server's OS user.
//!
//! Mounting needs root (`CAP_SYS_ADMIN`). Where the test process may not mount,
//! [`SmallFilesystem::mount`] says so on standard error and returns `None`, so a test can skip
//! instead of failing.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tempfile::TempDir;

use super::{Account, TestkitError, service_account};

const SERVER: &str = "Small file system";

/// The OS user whose server keeps files on a [`SmallFilesystem`] (when the tests run as root;
/// otherwise the current user).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilesystemOwner {
    /// `postgres`, the user a [`PostgresServer`](super::PostgresServer) runs as.
    Postgres,
    /// `mysql`, the user a [`MariaDbServer`](super::MariaDbServer) runs as.
    Mysql,
}

impl FilesystemOwner {
    fn account(self) -> Result<Option<Account>, TestkitError> {
        match self {
            FilesystemOwner::Postgres => service_account(SERVER, "postgres", "postgresql-15"),
            FilesystemOwner::Mysql => service_account(SERVER, "mysql", "mariadb-server"),
        }
    }
}

/// A tmpfs of a fixed size, mounted on a temporary directory whose root belongs to the server's
/// OS user (mode 0700). Dropping it unmounts it (lazily, should a server still hold a file
/// open) and removes the directory.
pub struct SmallFilesystem {
    // Unmounted in `drop` before the directory is removed.
    dir: TempDir,
    size: u64,
}

impl SmallFilesystem {
    /// Mounts a tmpfs of `size` bytes for `owner`'s server. `Ok(None)`, after a line on standard
    /// error saying why, when this process may not mount file systems (not root, or root
    /// without `CAP_SYS_ADMIN` in a container).
    pub fn mount(size: u64, owner: FilesystemOwner) -> Result<Option<SmallFilesystem>, TestkitError> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting a small tmpfs needs root (CAP_SYS_ADMIN); this test runs as another user");
            return Ok(None);
        }
        let account = owner.account()?;
        let dir = tempfile::Builder::new()
            .prefix("ferry-small-fs-")
            .tempdir()
            .map_err(|source| io_error("could not create a temporary directory", source))?;
        let mut options = format!("size={size},mode=0700");
        if let Some(account) = account {
            options.push_str(&format!(",uid={},gid={}", account.uid, account.gid));
        }
        match mount(dir.path(), libc::MS_NOSUID | libc::MS_NODEV, &options) {
            Ok(()) => Ok(Some(SmallFilesystem { dir, size })),
            Err(err) if matches!(err.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => {
                eprintln!("skipped: this process may not mount a tmpfs ({err}); it needs CAP_SYS_ADMIN");
                Ok(None)
            }
            Err(err) => Err(io_error(format!("could not mount a tmpfs on {}", dir.path().display()), err)),
        }
    }

    /// Where the file system is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The size it was mounted or last resized with, in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Grows (or shrinks) the file system to `size` bytes in place, as an administrator who
    /// makes room on a full volume would: the files on it stay.
    pub fn resize(&mut self, size: u64) -> Result<(), TestkitError> {
        mount(self.path(), libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV, &format!("size={size}"))
            .map_err(|err| io_error(format!("could not resize the tmpfs on {}", self.path().display()), err))?;
        self.size = size;
        Ok(())
    }
}

impl fmt::Debug for SmallFilesystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmallFilesystem").field("path", &self.path()).field("size", &self.size).finish()
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        if let Ok(path) = CString::new(self.path().as_os_str().as_bytes()) {
            // SAFETY: `path` is a NUL-terminated string. A lazy unmount cannot fail because a
            // file is still open; the directory is then empty and TempDir removes it.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// `mount("tmpfs", path, "tmpfs", flags, options)`.
fn mount(path: &Path, flags: libc::c_ulong, options: &str) -> io::Result<()> {
    let target = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let options = CString::new(options).map_err(io::Error::other)?;
    let tmpfs = c"tmpfs";
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc = unsafe { libc::mount(tmpfs.as_ptr(), target.as_ptr(), tmpfs.as_ptr(), flags, options.as_ptr().cast()) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

fn io_error(context: impl Into<String>, source: io::Error) -> TestkitError {
    TestkitError::Io { server: SERVER, context: context.into(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_filesystem_fills_up_and_takes_more_once_resized() {
        let Some(mut fs) = SmallFilesystem::mount(1 << 20, FilesystemOwner::Postgres).unwrap() else { return };
        let big = vec![7u8; 3 << 19];
        let err = std::fs::write(fs.path().join("big"), &big).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
        fs.resize(4 << 20).unwrap();
        std::fs::write(fs.path().join("big"), &big).unwrap();
        let path = fs.path().to_owned();
        drop(fs);
        assert!(!path.exists(), "the mount point is removed");
    }
}
