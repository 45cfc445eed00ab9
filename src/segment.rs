//! Shared-memory segments: named POSIX shared memory, anonymous memfd segments that travel as
//! file descriptors, and file-backed mappings.
//!
//! A [`Segment`] is a mapping plus the descriptor behind it. It hands out raw pointers only:
//! another process may write the same bytes at any moment, so no `&[u8]` over them can be sound.
//! [`Segment::read`] and [`Segment::write`] copy bytes in and out with bounds checks, and
//! [`Segment::atomic_u32`] / [`Segment::atomic_u64`] give atomics over aligned words.
//!
//! Files: this one has [`Segment`] (mapping, access, removal of its own name); `options.rs`
//! has [`SegmentOptions`] (creating segments, memfds and files); `removal.rs` the removal of
//! a name only while it names a given object (`remove_if_same`, for stale segments).
//!
//! # Examples
//!
//! ```
//! use shmchan::{Mode, Segment};
//!
//! # fn main() -> shmchan::Result<()> {
//! let name = format!("/shmchan-doc-segment-{}", std::process::id());
//! // Process A: create 4 KiB, mode 0600, removed from /dev/shm when `a` is dropped.
//! let a = Segment::options().unlink_on_drop(true).create(&name, 4096)?;
//! a.write(0, b"hello")?;
//!
//! // Process B (here the same process): attach read-only and copy the bytes out.
//! let b = Segment::open(&name, Mode::ReadOnly)?;
//! let mut buf = [0u8; 5];
//! b.read(0, &mut buf)?;
//! assert_eq!(&buf, b"hello");
//! assert!(b.as_mut_ptr().is_err()); // no way to write through a read-only segment
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};
use crate::sys::shm;

mod options;
mod removal;

pub use options::SegmentOptions;
pub(crate) use removal::{Removal, remove_if_same};

/// How a segment is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `PROT_READ`: the segment can be read, and the type offers no way to write through it.
    ReadOnly,
    /// `PROT_READ | PROT_WRITE`.
    ReadWrite,
}

/// What is behind a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Backing {
    Shm(String),
    Memfd,
    File(PathBuf),
}

/// A mapped shared-memory segment.
///
/// # Trust
///
/// Whoever can open a named segment (or a file) for writing can write any byte of it at any
/// time, and can also `ftruncate` the object: an access past the new end then raises `SIGBUS`,
/// which kills this process. That cannot be prevented for named segments (POSIX shared memory
/// cannot be sealed); [`Segment::len`] is the size at mapping time, and shmchan's own layouts
/// re-check the object's size when they attach, so only a truncation after that is fatal. The
/// default mode `0600` limits writers to your own uid (and root). Memfd segments are immune:
/// [`Segment::memfd`] seals them against shrinking (`F_SEAL_SHRINK`) and
/// [`Segment::from_fd`] refuses a descriptor without that seal. Growing an object is harmless.
///
/// Dropping it unmaps it (and removes the name if it was created with
/// [`SegmentOptions::unlink_on_drop`]); [`detach`](Segment::detach) does the same and can force
/// the removal. `Segment` is `Send` and `Sync`: it only hands out raw pointers, copies and
/// atomics.
pub struct Segment {
    map: MmapRaw,
    fd: OwnedFd,
    backing: Backing,
    mode: Mode,
    created: bool,
    unlink_on_drop: bool,
    dev_ino: (u64, u64),
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("backing", &self.backing)
            .field("len", &self.len())
            .field("mode", &self.mode)
            .field("created", &self.created)
            .field("unlink_on_drop", &self.unlink_on_drop)
            .finish()
    }
}

impl Segment {
    /// Options for creating segments; see [`SegmentOptions`].
    pub fn options() -> SegmentOptions {
        SegmentOptions::new()
    }

    /// Creates a named segment with default options (mode `0o600`, name kept on drop). See
    /// [`SegmentOptions::create`].
    ///
    /// # Errors
    ///
    /// As [`SegmentOptions::create`].
    pub fn create(name: &str, size: usize) -> Result<Segment> {
        SegmentOptions::new().create(name, size)
    }

    /// Opens the existing named segment `name`; its size is taken from `fstat`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a bad name, [`Error::NotFound`],
    /// [`Error::PermissionDenied`], [`Error::Corrupt`] if the object has size 0 (nothing to map:
    /// not a segment, or its creator has not sized it yet), [`Error::Io`].
    pub fn open(name: &str, mode: Mode) -> Result<Segment> {
        validate_name(name)?;
        let fd = shm::shm_open(name, mode == Mode::ReadWrite)
            .map_err(|e| Error::from_errno(e, || format!("segment '{name}'")))?;
        let (size, _, _) =
            shm::stat(&fd).map_err(|e| Error::from_errno(e, || format!("segment '{name}'")))?;
        let size = usize::try_from(size).map_err(|_| {
            Error::Corrupt(format!(
                "segment '{name}' is {size} bytes, too large to map"
            ))
        })?;
        if size == 0 {
            return Err(Error::Corrupt(format!(
                "segment '{name}' has size 0: nothing to map (not sized by its creator yet?)"
            )));
        }
        Segment::from_parts(fd, size, mode, Backing::Shm(name.to_owned()))
    }

    /// Opens `name` read-write, or creates it with `size` bytes; see
    /// [`SegmentOptions::open_or_create`].
    ///
    /// # Errors
    ///
    /// As [`SegmentOptions::open_or_create`].
    pub fn open_or_create(name: &str, size: usize) -> Result<Segment> {
        SegmentOptions::new().open_or_create(name, size)
    }

    /// Creates an anonymous memfd segment; see [`SegmentOptions::memfd`].
    ///
    /// # Errors
    ///
    /// As [`SegmentOptions::memfd`].
    pub fn memfd(size: usize) -> Result<Segment> {
        SegmentOptions::new().memfd(size)
    }

    /// Maps a segment received as a descriptor (a memfd from [`Segment::memfd`] in another
    /// process). The descriptor must be sealed against shrinking (`F_SEAL_SHRINK`), so the
    /// process that sent it cannot truncate it under our mapping and make us fault.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the descriptor is not sealed against shrinking, has size 0,
    /// or was not opened for writing while `mode` is [`Mode::ReadWrite`]; [`Error::Io`].
    pub fn from_fd(fd: OwnedFd, mode: Mode) -> Result<Segment> {
        let what = || "segment from a descriptor".to_owned();
        if !shm::is_shrink_sealed(&fd).map_err(|e| Error::from_errno(e, what))? {
            return Err(Error::InvalidArgument(
                "the descriptor is not sealed against shrinking (F_SEAL_SHRINK): its sender could \
                 truncate it and make this process fault; send a Segment::memfd"
                    .into(),
            ));
        }
        if mode == Mode::ReadWrite
            && !shm::is_writable(&fd).map_err(|e| Error::from_errno(e, what))?
        {
            return Err(Error::InvalidArgument(
                "the descriptor is read-only; map it with Mode::ReadOnly".into(),
            ));
        }
        let (size, _, _) = shm::stat(&fd).map_err(|e| Error::from_errno(e, what))?;
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| s > 0)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("the descriptor's object has size {size}"))
            })?;
        Segment::from_parts(fd, size, mode, Backing::Memfd)
    }

    /// Maps the whole existing file at `path` (`open` + `mmap(MAP_SHARED)`). Use
    /// [`SegmentOptions::create_file`] to create one.
    ///
    /// Files, unlike memfd segments, cannot be sealed: anyone who may write the file may also
    /// truncate it, which makes accesses past the new end fault. Map only files that processes
    /// you trust can write.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::PermissionDenied`], [`Error::InvalidArgument`] for an empty
    /// file, [`Error::Io`].
    pub fn map_file(path: impl AsRef<Path>, mode: Mode) -> Result<Segment> {
        let path = path.as_ref();
        let what = || format!("file '{}'", path.display());
        let fd = shm::open_file(path, mode == Mode::ReadWrite, false, 0)
            .map_err(|e| Error::from_errno(e, what))?;
        let (size, _, _) = shm::stat(&fd).map_err(|e| Error::from_errno(e, what))?;
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| s > 0)
            .ok_or_else(|| Error::InvalidArgument(format!("{} has size {size}", what())))?;
        Segment::from_parts(fd, size, mode, Backing::File(path.to_owned()))
    }

    /// Removes the name `name` from the system (`shm_unlink`). Processes that have it mapped
    /// keep their mappings; the memory is freed when the last one is gone.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a bad name, [`Error::NotFound`],
    /// [`Error::PermissionDenied`].
    pub fn unlink(name: &str) -> Result<()> {
        validate_name(name)?;
        shm::shm_unlink(name).map_err(|e| Error::from_errno(e, || format!("segment '{name}'")))
    }

    fn from_parts(fd: OwnedFd, size: usize, mode: Mode, backing: Backing) -> Result<Segment> {
        let mut opts = MmapOptions::new();
        opts.len(size);
        let mapped = match mode {
            Mode::ReadWrite => opts.map_raw(&fd),
            Mode::ReadOnly => opts.map_raw_read_only(&fd),
        };
        let map = mapped.map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("mapping {} ({size} bytes): {e}", describe(&backing)),
            ))
        })?;
        let (_, dev, ino) =
            shm::stat(&fd).map_err(|e| Error::from_errno(e, || describe(&backing)))?;
        Ok(Segment {
            map,
            fd,
            backing,
            mode,
            created: false,
            unlink_on_drop: false,
            dev_ino: (dev, ino),
        })
    }

    /// The mapped size in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Always `false`: a segment cannot be empty. (Present for the `len`/`is_empty` pair.)
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The segment's name for named segments (`/orders`); `None` for memfd and file segments.
    pub fn name(&self) -> Option<&str> {
        match &self.backing {
            Backing::Shm(n) => Some(n),
            _ => None,
        }
    }

    /// The file behind a file-backed segment.
    pub fn path(&self) -> Option<&Path> {
        match &self.backing {
            Backing::File(p) => Some(p),
            _ => None,
        }
    }

    /// How the segment is mapped.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The size of the object behind the mapping now (`fstat`), which a peer with write
    /// access to a named segment or a file can change under us; the mapped size
    /// ([`len`](Self::len)) stays as it was mapped.
    pub(crate) fn object_len(&self) -> Result<u64> {
        shm::stat(&self.fd)
            .map(|(size, _, _)| size)
            .map_err(|e| Error::from_errno(e, || self.describe()))
    }

    /// Device and inode of the object behind the mapping, as they were when it was mapped.
    pub(crate) fn dev_ino(&self) -> (u64, u64) {
        self.dev_ino
    }

    /// Whether this handle created the segment (rather than opening an existing one).
    pub fn is_creator(&self) -> bool {
        self.created
    }

    /// A human-readable description for messages: `segment '/orders'`, `memfd segment`,
    /// `file '/tmp/x'`.
    pub fn describe(&self) -> String {
        describe(&self.backing)
    }

    /// Start of the mapping, for reading. Another process may write these bytes at any time:
    /// read them with `ptr::read_volatile`, atomics or copies, never through a `&[u8]`.
    #[inline]
    pub fn as_ptr(&self) -> *const u8 {
        self.map.as_ptr()
    }

    /// Start of the mapping, for writing.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] if the segment is mapped read-only.
    #[inline]
    pub fn as_mut_ptr(&self) -> Result<*mut u8> {
        match self.mode {
            Mode::ReadWrite => Ok(self.map.as_mut_ptr()),
            Mode::ReadOnly => Err(Error::PermissionDenied(format!(
                "{} is mapped read-only",
                self.describe()
            ))),
        }
    }

    /// Checks that `offset..offset + len` lies inside the mapping.
    pub(crate) fn check_range(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(Error::InvalidArgument(format!(
                "range {offset}..{offset}+{len} is outside {} of {} bytes",
                self.describe(),
                self.len()
            ))),
        }
    }

    /// Copies `buf.len()` bytes at `offset` out of the segment. The bytes are a snapshot: a
    /// concurrent writer can leave a mix of old and new bytes, which is why readers validate
    /// what they copied rather than what is in shared memory. The copy is a plain
    /// `memcpy` into private memory (see the ring's `read_payload` for why not volatile
    /// word loads: measured 1.7-2.2x slower, for no protection validation does not give).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the range is outside the segment.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len())?;
        // SAFETY: the range is inside the mapping (checked above), which stays mapped while
        // `self` lives; `buf` is our own memory and cannot overlap a shared mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(self.as_ptr().add(offset), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    /// Copies `data` into the segment at `offset`.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] for a read-only segment, [`Error::InvalidArgument`] if the
    /// range is outside the segment.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        let base = self.as_mut_ptr()?;
        self.check_range(offset, data.len())?;
        // SAFETY: writable mapping (as_mut_ptr checked the mode), range inside it (checked).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), base.add(offset), data.len()) };
        Ok(())
    }

    /// An atomic view of the aligned 4-byte word at `offset`, for read-write segments. Use one
    /// width per word, in every process, forever.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] for a read-only segment (a store would fault);
    /// [`Error::InvalidArgument`] if the word is unaligned or outside the segment.
    pub fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32> {
        let base = self.as_mut_ptr()?;
        self.check_word(offset, 4)?;
        // SAFETY: in bounds and 4-aligned (checked; the mapping is page-aligned), mapped
        // read-write for the lifetime of `&self`. AtomicU32 tolerates concurrent writers.
        Ok(unsafe { AtomicU32::from_ptr(base.add(offset).cast()) })
    }

    /// An atomic view of the aligned 8-byte word at `offset`; see [`atomic_u32`](Self::atomic_u32).
    ///
    /// # Errors
    ///
    /// As [`atomic_u32`](Self::atomic_u32).
    pub fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64> {
        let base = self.as_mut_ptr()?;
        self.check_word(offset, 8)?;
        // SAFETY: in bounds and 8-aligned (checked; the mapping is page-aligned), mapped
        // read-write for the lifetime of `&self`. AtomicU64 tolerates concurrent writers.
        Ok(unsafe { AtomicU64::from_ptr(base.add(offset).cast()) })
    }

    fn check_word(&self, offset: usize, width: usize) -> Result<()> {
        if offset % width != 0 {
            return Err(Error::InvalidArgument(format!(
                "offset {offset} is not {width}-byte aligned"
            )));
        }
        self.check_range(offset, width)
    }

    /// Writes dirty pages of a file-backed segment to the file and waits (`msync(MS_SYNC)`).
    /// For shared-memory segments it is harmless and does nothing useful.
    ///
    /// # Errors
    ///
    /// [`Error::Io`].
    pub fn flush(&self) -> Result<()> {
        self.map.flush().map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("msync of {}: {e}", self.describe()),
            ))
        })
    }

    /// Unmaps the segment. With `force`, also removes its name (the `/dev/shm` entry or the
    /// file), whoever created it; otherwise the name is removed only if the segment was created
    /// with [`SegmentOptions::unlink_on_drop`].
    ///
    /// # Errors
    ///
    /// Removing the name can fail with [`Error::NotFound`] (someone else removed it) or
    /// [`Error::PermissionDenied`]; the segment is unmapped in every case.
    pub fn detach(mut self, force: bool) -> Result<()> {
        let unlink = force || self.unlink_on_drop;
        self.unlink_on_drop = false;
        let backing = self.backing.clone();
        drop(self);
        if !unlink {
            return Ok(());
        }
        match &backing {
            Backing::Shm(name) => Segment::unlink(name),
            Backing::File(path) => std::fs::remove_file(path).map_err(|e| {
                Error::from_errno(
                    rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO),
                    || format!("file '{}'", path.display()),
                )
            }),
            Backing::Memfd => Ok(()),
        }
    }

    /// Removes the name only while it still names our object (same device and inode), so that
    /// a drop never removes a newer segment that reused the name.
    pub(crate) fn unlink_if_ours(&self) {
        match &self.backing {
            Backing::Shm(name) => {
                if let Ok(fd) = shm::shm_open(name, false) {
                    if let Ok((_, dev, ino)) = shm::stat(&fd) {
                        if (dev, ino) == self.dev_ino {
                            let _ = shm::shm_unlink(name);
                        }
                    }
                }
            }
            Backing::File(path) => {
                use std::os::unix::fs::MetadataExt;
                if let Ok(md) = std::fs::metadata(path) {
                    if (md.dev(), md.ino()) == self.dev_ino {
                        let _ = std::fs::remove_file(path);
                    }
                }
            }
            Backing::Memfd => {}
        }
    }
}

impl AsFd for Segment {
    /// The descriptor behind the segment: pass a memfd segment's to another process, which maps
    /// it with [`Segment::from_fd`].
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.unlink_on_drop {
            self.unlink_if_ours();
        }
    }
}

fn describe(backing: &Backing) -> String {
    match backing {
        Backing::Shm(n) => format!("segment '{n}'"),
        Backing::Memfd => "memfd segment".to_owned(),
        Backing::File(p) => format!("file '{}'", p.display()),
    }
}

/// The POSIX rules for shared-memory names, checked before any system call: a leading `/`, at
/// least one more character, no other `/`, no NUL byte, not `/.` or `/..`, at most 255 bytes.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    let bad = |rule: &str| {
        Err(Error::InvalidArgument(format!(
            "segment name {name:?}: {rule}"
        )))
    };
    if !name.starts_with('/') {
        return bad("must start with '/' (e.g. \"/orders\")");
    }
    if name.len() < 2 {
        return bad("needs at least one character after the leading '/'");
    }
    if name[1..].contains('/') {
        return bad("may not contain '/' after the leading one");
    }
    if name.contains('\0') {
        return bad("may not contain a NUL byte");
    }
    if name == "/." || name == "/.." {
        return bad("may not be \"/.\" or \"/..\"");
    }
    if name.len() > 255 {
        return bad(&format!(
            "is {} bytes long, at most 255 are allowed",
            name.len()
        ));
    }
    Ok(())
}

fn validate_size(size: usize, what: &str) -> Result<()> {
    if size == 0 {
        return Err(Error::InvalidArgument(format!(
            "{what}: size must be at least 1 byte, got 0"
        )));
    }
    if size as u64 > i64::MAX as u64 {
        return Err(Error::InvalidArgument(format!(
            "{what}: size {size} exceeds the largest file size"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_posix_rules() {
        for bad in ["", "x", "/", "/a/b", "/.", "/..", "/a\0b"] {
            let e = validate_name(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{bad:?}: {e}");
        }
        let long = format!("/{}", "a".repeat(255));
        assert!(
            validate_name(&long)
                .unwrap_err()
                .to_string()
                .contains("256 bytes")
        );
        validate_name(&format!("/{}", "a".repeat(254))).unwrap();
        validate_name("/orders").unwrap();
    }
}
