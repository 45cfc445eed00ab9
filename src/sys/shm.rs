//! Shared-memory objects: POSIX named shm, memfd, plain files.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self, Mode as FsMode, OFlags, SealFlags};
use rustix::io::Errno;
use rustix::shm;

/// `shm_open(name, O_RDWR|O_CREAT|O_EXCL, mode)`; `fchmod` afterwards so the umask does not narrow
/// (or, with a 0 umask, widen) what the caller asked for.
pub(crate) fn shm_create_excl(name: &str, mode: u32) -> Result<OwnedFd, Errno> {
    let fd = shm::open(
        name,
        shm::OFlags::RDWR | shm::OFlags::CREATE | shm::OFlags::EXCL,
        FsMode::from_raw_mode(mode),
    )?;
    fs::fchmod(&fd, FsMode::from_raw_mode(mode))?;
    Ok(fd)
}

/// `shm_open(name, O_RDONLY or O_RDWR, 0)`.
pub(crate) fn shm_open(name: &str, writable: bool) -> Result<OwnedFd, Errno> {
    let flags = if writable {
        shm::OFlags::RDWR
    } else {
        shm::OFlags::RDONLY
    };
    shm::open(name, flags, FsMode::empty())
}

/// `shm_unlink(name)`.
pub(crate) fn shm_unlink(name: &str) -> Result<(), Errno> {
    shm::unlink(name)
}

/// `renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE)`: moves whatever `from` names
/// at that instant, and fails with `EEXIST` rather than replace `to`.
pub(crate) fn rename_noreplace(from: &str, to: &str) -> Result<(), Errno> {
    fs::renameat_with(fs::CWD, from, fs::CWD, to, fs::RenameFlags::NOREPLACE)
}

/// `ftruncate(fd, len)`.
pub(crate) fn truncate(fd: impl AsFd, len: u64) -> Result<(), Errno> {
    fs::ftruncate(fd, len)
}

/// `fstat(fd)`: (size, device, inode).
pub(crate) fn stat(fd: impl AsFd) -> Result<(u64, u64, u64), Errno> {
    let st = fs::fstat(fd)?;
    Ok((st.st_size as u64, st.st_dev, st.st_ino))
}

/// `memfd_create("shmchan", MFD_CLOEXEC|MFD_ALLOW_SEALING)`.
pub(crate) fn memfd(name: &str) -> Result<OwnedFd, Errno> {
    fs::memfd_create(
        name,
        fs::MemfdFlags::CLOEXEC | fs::MemfdFlags::ALLOW_SEALING,
    )
}

/// `fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK)`: nobody can make the object smaller any more, so a
/// mapping of it can never fault with `SIGBUS`.
pub(crate) fn seal_shrink(fd: impl AsFd) -> Result<(), Errno> {
    fs::fcntl_add_seals(fd, SealFlags::SHRINK)
}

/// `fcntl(fd, F_GET_SEALS)`: whether shrinking is sealed. `EINVAL` (not a sealable file) is
/// "not sealed".
pub(crate) fn is_shrink_sealed(fd: impl AsFd) -> Result<bool, Errno> {
    match fs::fcntl_get_seals(fd) {
        Ok(s) => Ok(s.contains(SealFlags::SHRINK)),
        Err(Errno::INVAL) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `fcntl(fd, F_GETFL)`: whether the descriptor was opened for writing.
pub(crate) fn is_writable(fd: impl AsFd) -> Result<bool, Errno> {
    let fl = fs::fcntl_getfl(fd)?;
    Ok(fl.contains(OFlags::RDWR) || fl.contains(OFlags::WRONLY))
}

/// `open(path, O_RDWR|O_CREAT|O_EXCL|O_CLOEXEC, mode)` or, with `create == false`,
/// `open(path, O_RDONLY or O_RDWR)`.
pub(crate) fn open_file(
    path: &Path,
    writable: bool,
    create: bool,
    mode: u32,
) -> Result<OwnedFd, Errno> {
    let mut flags = OFlags::CLOEXEC;
    flags |= if writable {
        OFlags::RDWR
    } else {
        OFlags::RDONLY
    };
    if create {
        flags |= OFlags::CREATE | OFlags::EXCL;
    }
    fs::open(path, flags, FsMode::from_raw_mode(mode))
}
