//! Removal of a shm name only while it names the object a caller checked (stale segments).

use super::validate_name;
use crate::error::{Error, Result};
use crate::sys::shm;

/// What [`remove_if_same`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removal {
    /// The object that was checked is gone from `/dev/shm`.
    Removed,
    /// The name was gone by the time we acted (removed by someone else).
    Gone,
    /// The name came to refer to a new object between the check and the removal: it was put
    /// back and left alone.
    Replaced,
}

/// Removes the named shm object `name` only if it is still the object `dev_ino` (device and
/// inode) that the caller checked. Comparing and then calling `shm_unlink(name)` would leave a
/// window in which a segment newly created under the name is removed instead; so the name is
/// first moved aside with `renameat2(RENAME_NOREPLACE)` (atomic: what moves is what the name
/// named), the moved object is compared, and it is removed, or moved back (never over a newer
/// object) when it is not the one checked. During the move the name is absent for a few
/// microseconds: an `open` then gets `NotFound`, a `create` succeeds and keeps its name.
pub(crate) fn remove_if_same(name: &str, dev_ino: (u64, u64)) -> Result<Removal> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    validate_name(name)?;
    let aside = format!(
        "/.shmchan-gc-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let from = format!("/dev/shm{name}");
    let to = format!("/dev/shm{aside}");
    let errno = |e| Error::from_errno(e, || format!("segment '{name}'"));
    match shm::rename_noreplace(&from, &to) {
        Ok(()) => {}
        Err(rustix::io::Errno::NOENT) => return Ok(Removal::Gone),
        Err(e) => return Err(errno(e)),
    }
    // The object now under `aside` is the one that was under `name` at the rename.
    let moved = shm::shm_open(&aside, false)
        .and_then(|fd| shm::stat(&fd))
        .map(|(_, dev, ino)| (dev, ino));
    if moved == Ok(dev_ino) {
        shm::shm_unlink(&aside).map_err(errno)?;
        return Ok(Removal::Removed);
    }
    // Not ours: a new segment took the name in between. Put it back, never over a newer one.
    match shm::rename_noreplace(&to, &from) {
        Ok(()) => Ok(Removal::Replaced),
        Err(e) => Err(Error::Io(std::io::Error::other(format!(
            "segment '{name}' was replaced by a new object while it was being removed, and \
             that object could not be moved back ({e}); it is now '{aside}'"
        )))),
    }
}
