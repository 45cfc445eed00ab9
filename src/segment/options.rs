//! [`SegmentOptions`]: creating named segments, memfd segments and files.

#[cfg(doc)]
use std::os::fd::AsFd; // for the link to `Segment::as_fd`
use std::os::fd::OwnedFd;
use std::path::Path;

use super::{Backing, Mode, Segment, validate_name, validate_size};
use crate::error::{Error, Result};
use crate::sys::shm;

/// Options for creating segments, in the style of `std::fs::OpenOptions`.
///
/// Defaults: permissions `0o600` (only the creating user can open the segment), and the name
/// stays in place when the segment is dropped.
#[derive(Debug, Clone)]
pub struct SegmentOptions {
    permissions: u32,
    unlink_on_drop: bool,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl SegmentOptions {
    /// Default options: mode `0o600`, no unlink on drop.
    pub fn new() -> Self {
        SegmentOptions {
            permissions: 0o600,
            unlink_on_drop: false,
        }
    }

    /// The permission bits of a created segment or file (`0o600` by default). Only the low nine
    /// bits are used; they are applied exactly, whatever the process's umask.
    pub fn permissions(mut self, mode: u32) -> Self {
        self.permissions = mode & 0o777;
        self
    }

    /// Whether dropping the [`Segment`] removes its name (from `/dev/shm`, or the file). The
    /// name is only removed while it still refers to this segment's object, never a newer
    /// object of the same name.
    pub fn unlink_on_drop(mut self, yes: bool) -> Self {
        self.unlink_on_drop = yes;
        self
    }

    /// Creates a named POSIX shared-memory segment of `size` bytes (zero-filled) and maps it
    /// read-write: `shm_open(O_CREAT|O_EXCL)`, `ftruncate`, `mmap(MAP_SHARED)`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a bad name or a zero size, [`Error::AlreadyExists`] if the
    /// name is taken, [`Error::PermissionDenied`], or [`Error::Io`].
    pub fn create(&self, name: &str, size: usize) -> Result<Segment> {
        validate_name(name)?;
        validate_size(size, name)?;
        let fd = shm::shm_create_excl(name, self.permissions)
            .map_err(|e| Error::from_errno(e, || format!("segment '{name}'")))?;
        // From here on the name exists: remove it again if sizing or mapping fails.
        self.size_and_map(fd, size, Backing::Shm(name.to_owned()), || {
            format!("sizing segment '{name}'")
        })
    }

    /// Opens the segment `name` read-write if it exists, otherwise creates it with `size` bytes.
    /// [`Segment::is_creator`] tells which happened.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create) and [`Segment::open`]; [`Error::Mismatch`] if the existing
    /// segment is smaller than `size`.
    pub fn open_or_create(&self, name: &str, size: usize) -> Result<Segment> {
        validate_name(name)?;
        validate_size(size, name)?;
        // Another process may unlink between our EEXIST and our open; a few rounds settle it.
        let mut last = None;
        for _ in 0..16 {
            match self.create(name, size) {
                Err(Error::AlreadyExists(_)) => {}
                other => return other,
            }
            match Segment::open(name, Mode::ReadWrite) {
                Ok(seg) => {
                    if seg.len() < size {
                        return Err(Error::Mismatch {
                            segment: format!("segment '{name}'"),
                            what: "size in bytes",
                            expected: size as u64,
                            found: seg.len() as u64,
                        });
                    }
                    let mut seg = seg;
                    seg.unlink_on_drop = self.unlink_on_drop;
                    return Ok(seg);
                }
                Err(Error::NotFound(m)) => last = Some(Error::NotFound(m)),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::AlreadyExists(name.to_owned())))
    }

    /// Creates an anonymous segment (`memfd_create`) of `size` bytes, sealed against shrinking.
    /// It has no name; share it by passing [`Segment::as_fd`] to another process (over a Unix
    /// socket with `SCM_RIGHTS`, or by inheritance), which maps it with [`Segment::from_fd`].
    /// It vanishes with its last descriptor and mapping.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a zero size, or [`Error::Io`].
    pub fn memfd(&self, size: usize) -> Result<Segment> {
        validate_size(size, "memfd segment")?;
        let fd = shm::memfd("shmchan")
            .map_err(|e| Error::from_errno(e, || "memfd_create".to_owned()))?;
        shm::truncate(&fd, size as u64)
            .map_err(|e| Error::from_errno(e, || "sizing memfd segment".to_owned()))?;
        shm::seal_shrink(&fd)
            .map_err(|e| Error::from_errno(e, || "sealing memfd segment".to_owned()))?;
        let mut seg = Segment::from_parts(fd, size, Mode::ReadWrite, Backing::Memfd)?;
        seg.created = true;
        Ok(seg)
    }

    /// Creates the file `path` (it must not exist) with `size` zero bytes and maps it
    /// read-write. Writes reach the file; [`Segment::flush`] waits until they are on disk.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a zero size, [`Error::AlreadyExists`],
    /// [`Error::PermissionDenied`], [`Error::NotFound`] (missing directory), [`Error::Io`].
    pub fn create_file(&self, path: impl AsRef<Path>, size: usize) -> Result<Segment> {
        let path = path.as_ref();
        let what = || format!("file '{}'", path.display());
        validate_size(size, &what())?;
        let fd = shm::open_file(path, true, true, self.permissions)
            .map_err(|e| Error::from_errno(e, what))?;
        self.size_and_map(fd, size, Backing::File(path.to_owned()), what)
    }

    /// Sizes and maps an object this call just created, as a created segment; on failure
    /// removes its name again (`backing`), so a failed create leaves nothing behind.
    fn size_and_map(
        &self,
        fd: OwnedFd,
        size: usize,
        backing: Backing,
        what: impl Fn() -> String,
    ) -> Result<Segment> {
        let built = shm::truncate(&fd, size as u64)
            .map_err(|e| Error::from_errno(e, &what))
            .and_then(|()| Segment::from_parts(fd, size, Mode::ReadWrite, backing.clone()));
        match built {
            Ok(mut seg) => {
                seg.created = true;
                seg.unlink_on_drop = self.unlink_on_drop;
                Ok(seg)
            }
            Err(e) => {
                match &backing {
                    Backing::Shm(name) => {
                        let _ = shm::shm_unlink(name);
                    }
                    Backing::File(path) => {
                        let _ = std::fs::remove_file(path);
                    }
                    Backing::Memfd => {}
                }
                Err(e)
            }
        }
    }
}
