//! Access to another task's memory, and read-only mappings of image files.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;

use crate::{SysError, SysResult};

/// The kernel's limit on iovecs per call.
pub const IOV_MAX: usize = 1024;

/// One contiguous range in the other task and where it goes in our buffer.
#[derive(Debug, Clone, Copy)]
pub struct RemoteRange {
    pub addr: u64,
    pub len: usize,
}

/// Reads `ranges` of task `pid` into `buf` (packed, in order) with process_vm_readv, in as
/// few calls as the kernel allows. Returns the number of bytes read; a short count means a
/// range could not be read (the caller falls back to /proc/PID/mem for the rest).
pub fn read_ranges(pid: i32, ranges: &[RemoteRange], buf: &mut [u8]) -> SysResult<usize> {
    let total: usize = ranges.iter().map(|r| r.len).sum();
    assert!(buf.len() >= total, "buffer too small for the ranges");
    let mut done = 0usize;
    let mut idx = 0usize;
    let mut skip = 0usize; // bytes of ranges[idx] already read
    while idx < ranges.len() {
        let mut remote: Vec<libc::iovec> = Vec::with_capacity(IOV_MAX);
        let mut want = 0usize;
        for (k, r) in ranges[idx..].iter().take(IOV_MAX).enumerate() {
            let off = if k == 0 { skip } else { 0 };
            remote.push(libc::iovec {
                iov_base: (r.addr as usize + off) as *mut libc::c_void,
                iov_len: r.len - off,
            });
            want += r.len - off;
        }
        let local = libc::iovec {
            iov_base: buf[done..].as_mut_ptr().cast(),
            iov_len: want,
        };
        // SAFETY: `local` points into `buf`, which has at least `want` bytes left after
        // `done` (checked by the assert above); the remote iovecs are only addresses in the
        // other process, which the kernel validates.
        let r = unsafe {
            libc::process_vm_readv(pid, &local, 1, remote.as_ptr(), remote.len() as u64, 0)
        };
        if r < 0 {
            let e = SysError::last("process_vm_readv", format!("pid {pid}"));
            if done > 0 || e.errno.0 == libc::EFAULT {
                return Ok(done);
            }
            return Err(e);
        }
        let got = r as usize;
        done += got;
        if got < want {
            return Ok(done);
        }
        // Advance idx/skip past what was read.
        advance(|i| ranges[i].len, ranges.len(), &mut idx, &mut skip, got);
    }
    Ok(done)
}

/// Moves a cursor (element `idx`, `skip` bytes into it) over `done` bytes of a list of
/// `count` elements whose lengths `len_of` gives, past every element it finishes (empty
/// ones included).
fn advance(
    len_of: impl Fn(usize) -> usize,
    count: usize,
    idx: &mut usize,
    skip: &mut usize,
    mut done: usize,
) {
    while *idx < count {
        let left = len_of(*idx) - *skip;
        if done < left {
            *skip += done;
            return;
        }
        done -= left;
        *idx += 1;
        *skip = 0;
    }
}

/// Writes `data` (packed) to `ranges` of task `pid` with process_vm_writev. Every range
/// must be writable in the target. Fails unless every byte was written.
pub fn write_ranges(pid: i32, ranges: &[RemoteRange], data: &[u8]) -> SysResult<()> {
    let total: usize = ranges.iter().map(|r| r.len).sum();
    assert!(data.len() >= total, "data shorter than the ranges");
    let mut off = 0usize;
    for chunk in ranges.chunks(IOV_MAX) {
        let want: usize = chunk.iter().map(|r| r.len).sum();
        let mut written = 0usize;
        // A call may stop short (e.g. at a range the kernel splits); continue from there.
        while written < want {
            let mut remote = Vec::with_capacity(chunk.len());
            let mut pos = 0usize;
            for r in chunk {
                let (start, end) = (pos, pos + r.len);
                pos = end;
                if end <= written {
                    continue;
                }
                let skip = written.saturating_sub(start);
                remote.push(libc::iovec {
                    iov_base: (r.addr as usize + skip) as *mut libc::c_void,
                    iov_len: r.len - skip,
                });
            }
            let local = libc::iovec {
                iov_base: data[off + written..].as_ptr() as *mut libc::c_void,
                iov_len: want - written,
            };
            // SAFETY: `local` covers `want - written` bytes of `data` (checked by the assert);
            // the kernel only reads from it. Remote addresses are validated by the kernel.
            let r = unsafe {
                libc::process_vm_writev(pid, &local, 1, remote.as_ptr(), remote.len() as u64, 0)
            };
            if r <= 0 {
                let addr = remote.first().map(|v| v.iov_base as u64).unwrap_or(0);
                return Err(SysError::last(
                    "process_vm_writev",
                    format!("pid {pid} at {addr:#x}"),
                ));
            }
            written += r as usize;
        }
        off += want;
    }
    Ok(())
}

/// Writes each `(address, bytes)` piece to task `pid` with process_vm_writev, up to
/// IOV_MAX pieces a call. Every piece must be writable in the target. Fails unless every
/// byte was written. `pid` may be the caller's own PID (a restore child filling memory it
/// mapped for the image before it forks).
pub fn write_pieces(pid: i32, pieces: &[(u64, &[u8])]) -> SysResult<()> {
    let mut idx = 0usize;
    let mut skip = 0usize; // bytes of pieces[idx] already written
    while idx < pieces.len() {
        let batch = &pieces[idx..pieces.len().min(idx + IOV_MAX)];
        let mut local = Vec::with_capacity(batch.len());
        let mut remote = Vec::with_capacity(batch.len());
        for (k, (addr, data)) in batch.iter().enumerate() {
            let off = if k == 0 { skip } else { 0 };
            local.push(libc::iovec {
                iov_base: data[off..].as_ptr() as *mut libc::c_void,
                iov_len: data.len() - off,
            });
            remote.push(libc::iovec {
                iov_base: (*addr as usize + off) as *mut libc::c_void,
                iov_len: data.len() - off,
            });
        }
        // SAFETY: every local iovec covers a live byte slice that the kernel only reads;
        // remote addresses are validated by the kernel against the target's mappings.
        let r = unsafe {
            libc::process_vm_writev(
                pid,
                local.as_ptr(),
                local.len() as u64,
                remote.as_ptr(),
                remote.len() as u64,
                0,
            )
        };
        if r <= 0 {
            let addr = remote.first().map(|v| v.iov_base as u64).unwrap_or(0);
            return Err(SysError::last(
                "process_vm_writev",
                format!("pid {pid} at {addr:#x}"),
            ));
        }
        advance(
            |i| pieces[i].1.len(),
            pieces.len(),
            &mut idx,
            &mut skip,
            r as usize,
        );
    }
    Ok(())
}

/// /proc/PID/mem: reads and writes that ignore page protections (FOLL_FORCE).
#[derive(Debug)]
pub struct ProcMem {
    pid: i32,
    file: File,
}

impl ProcMem {
    pub fn open(pid: i32) -> SysResult<Self> {
        let path = format!("/proc/{pid}/mem");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| {
                SysError::new("open", path, crate::Errno(e.raw_os_error().unwrap_or(0)))
            })?;
        Ok(Self { pid, file })
    }

    pub fn read(&self, addr: u64, buf: &mut [u8]) -> SysResult<()> {
        self.file.read_exact_at(buf, addr).map_err(|e| {
            SysError::new(
                "pread(/proc/PID/mem)",
                format!("pid {} at {addr:#x}+{}", self.pid, buf.len()),
                crate::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        })
    }

    pub fn write(&self, addr: u64, data: &[u8]) -> SysResult<()> {
        self.file.write_all_at(data, addr).map_err(|e| {
            SysError::new(
                "pwrite(/proc/PID/mem)",
                format!("pid {} at {addr:#x}+{}", self.pid, data.len()),
                crate::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        })
    }
}

/// A whole file mapped read-only into our address space (for page files: restore reads
/// page contents straight from the page cache, one copy into the target).
pub struct MappedFile {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value; sharing &[u8] across threads
// is sound.
unsafe impl Send for MappedFile {}
// SAFETY: as above, only shared read access is handed out.
unsafe impl Sync for MappedFile {}

impl MappedFile {
    pub fn open(file: &File, what: &str) -> SysResult<Self> {
        let len = file
            .metadata()
            .map_err(|e| SysError::new("fstat", what, crate::Errno(e.raw_os_error().unwrap_or(0))))?
            .len() as usize;
        if len == 0 {
            return Ok(Self {
                ptr: std::ptr::null_mut(),
                len: 0,
            });
        }
        // SAFETY: a fresh read-only private mapping of a file we hold open; the kernel picks
        // the address, so nothing of ours is replaced.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_POPULATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(SysError::last("mmap", what.to_string()));
        }
        Ok(Self { ptr, len })
    }

    pub fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: ptr..ptr+len is a live read-only mapping owned by self. The image files are
        // ours and not modified while restoring (a concurrent writer could change bytes, never
        // validity of the memory).
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping exactly the mapping this value created.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}
