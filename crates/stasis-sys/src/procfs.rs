//! Typed readers for the /proc files that checkpoint/restore needs.
//!
//! Every text file has a pure `parse_*(text)` function (unit-tested on sample texts) and a
//! reader that opens the file of a given pid and hands its contents to the parser. Parse
//! errors name the file and the 1-based line; a pure parser, which does not know the file,
//! reports the path as `<text>` and the reader replaces it with the real path.
//!
//! Text is decoded as UTF-8. A file that is not valid UTF-8 (a mapping or a descriptor of a
//! file whose name is not UTF-8) is an error naming the line, never a silently mangled name,
//! with one exception: the command name in `stat` and `status`, which the kernel truncates
//! to 15 bytes (possibly in the middle of a multi-byte character), is decoded lossily; use
//! [`comm`] for the exact bytes.

use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::str::FromStr;

/// Path reported by the pure parsers, which do not know which file the text came from.
const TEXT: &str = "<text>";

/// An error reading or parsing a /proc file.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    /// The file's contents did not have the expected format. `line` is 1-based, 0 for
    /// binary files or when the problem is not tied to one line.
    #[error("{path}: line {line}: {reason}")]
    Parse {
        path: String,
        line: usize,
        reason: String,
    },
}

impl ProcError {
    /// The file the error is about.
    pub fn path(&self) -> &str {
        match self {
            ProcError::Io { path, .. } | ProcError::Parse { path, .. } => path,
        }
    }

    /// True when the error means the process (or thread, or descriptor) no longer exists:
    /// ENOENT or ESRCH while opening or reading its /proc file.
    pub fn is_gone(&self) -> bool {
        match self {
            ProcError::Io { source, .. } => {
                matches!(
                    source.raw_os_error(),
                    Some(libc::ENOENT) | Some(libc::ESRCH)
                )
            }
            ProcError::Parse { .. } => false,
        }
    }

    fn in_file(self, file: &str) -> Self {
        match self {
            ProcError::Parse { line, reason, .. } => ProcError::Parse {
                path: file.to_string(),
                line,
                reason,
            },
            ProcError::Io { source, .. } => ProcError::Io {
                path: file.to_string(),
                source,
            },
        }
    }
}

fn perr(line: usize, reason: impl Into<String>) -> ProcError {
    ProcError::Parse {
        path: TEXT.to_string(),
        line,
        reason: reason.into(),
    }
}

fn io_err(path: &str, source: io::Error) -> ProcError {
    ProcError::Io {
        path: path.to_string(),
        source,
    }
}

fn read_bytes(path: &str) -> Result<Vec<u8>, ProcError> {
    fs::read(path).map_err(|e| io_err(path, e))
}

/// Reads a text file that must be valid UTF-8.
fn read_text(path: &str) -> Result<String, ProcError> {
    let bytes = read_bytes(path)?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..valid]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        ProcError::Parse {
            path: path.to_string(),
            line,
            reason: "not valid UTF-8 (a file name that is not UTF-8?)".to_string(),
        }
    })
}

fn read_link(path: &str) -> Result<String, ProcError> {
    let target = fs::read_link(path).map_err(|e| io_err(path, e))?;
    target
        .into_os_string()
        .into_string()
        .map_err(|raw| ProcError::Parse {
            path: path.to_string(),
            line: 0,
            reason: format!("link target {raw:?} is not valid UTF-8"),
        })
}

/// Runs a pure parser on the text of `path`.
fn read_parsed<T>(path: &str, parse: fn(&str) -> Result<T, ProcError>) -> Result<T, ProcError> {
    let text = read_text(path)?;
    parse(&text).map_err(|e| e.in_file(path))
}

fn read_parsed_lossy<T>(
    path: &str,
    parse: fn(&str) -> Result<T, ProcError>,
) -> Result<T, ProcError> {
    let bytes = read_bytes(path)?;
    let text = String::from_utf8_lossy(&bytes);
    parse(&text).map_err(|e| e.in_file(path))
}

fn num<T: FromStr>(s: &str, line: usize, what: &str) -> Result<T, ProcError> {
    s.parse::<T>()
        .map_err(|_| perr(line, format!("{what}: invalid number {s:?}")))
}

fn hex_u64(s: &str, line: usize, what: &str) -> Result<u64, ProcError> {
    u64::from_str_radix(s, 16).map_err(|_| perr(line, format!("{what}: invalid hex number {s:?}")))
}

fn hex_u32(s: &str, line: usize, what: &str) -> Result<u32, ProcError> {
    u32::from_str_radix(s, 16).map_err(|_| perr(line, format!("{what}: invalid hex number {s:?}")))
}

fn oct_u32(s: &str, line: usize, what: &str) -> Result<u32, ProcError> {
    u32::from_str_radix(s, 8).map_err(|_| perr(line, format!("{what}: invalid octal number {s:?}")))
}

fn single_char(s: &str, line: usize, what: &str) -> Result<char, ProcError> {
    let mut it = s.chars();
    match (it.next(), it.next()) {
        (Some(c), None) => Ok(c),
        _ => Err(perr(
            line,
            format!("{what}: expected one character, got {s:?}"),
        )),
    }
}

// ---------------------------------------------------------------------------------------
// /proc/PID/stat
// ---------------------------------------------------------------------------------------

/// The fields of /proc/PID/stat (or /proc/PID/task/TID/stat) that checkpointing needs.
///
/// The address fields (`start_code` ... `env_end`) read as 0 when the reader may not
/// ptrace the target, and for kernel threads and zombies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    pub tty_nr: i32,
    pub flags: u32,
    pub nice: i64,
    pub num_threads: i64,
    pub start_time: u64,
    pub start_code: u64,
    pub end_code: u64,
    pub start_stack: u64,
    pub rt_priority: u32,
    pub policy: u32,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    pub exit_code: i32,
}

/// The whitespace-separated fields after the `(comm)` of a stat line; field numbers are
/// those of proc(5) (field 3 is the state).
struct StatFields<'a>(Vec<&'a str>);

impl StatFields<'_> {
    fn raw(&self, n: usize, what: &str) -> Result<&str, ProcError> {
        n.checked_sub(3)
            .and_then(|i| self.0.get(i))
            .copied()
            .ok_or_else(|| perr(1, format!("field {n} ({what}) missing")))
    }

    fn get<T: FromStr>(&self, n: usize, what: &str) -> Result<T, ProcError> {
        num(self.raw(n, what)?, 1, what)
    }
}

/// Parses the text of /proc/PID/stat. The command name may contain spaces, parentheses
/// and even newlines: it runs from the first '(' to the last ')'.
pub fn parse_stat(text: &str) -> Result<Stat, ProcError> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let open = text
        .find('(')
        .ok_or_else(|| perr(1, "no '(' opening the command name"))?;
    let close = text
        .rfind(')')
        .ok_or_else(|| perr(1, "no ')' closing the command name"))?;
    if close < open {
        return Err(perr(1, "')' before '(' around the command name"));
    }
    let pid = num(text[..open].trim(), 1, "pid")?;
    let comm = text[open + 1..close].to_string();
    let after = &text[close + 1..];
    if !after.starts_with(' ') {
        return Err(perr(1, "no space after the command name"));
    }
    let f = StatFields(after.split_ascii_whitespace().collect());
    Ok(Stat {
        pid,
        comm,
        state: single_char(f.raw(3, "state")?, 1, "state")?,
        ppid: f.get(4, "ppid")?,
        pgrp: f.get(5, "pgrp")?,
        session: f.get(6, "session")?,
        tty_nr: f.get(7, "tty_nr")?,
        flags: f.get(9, "flags")?,
        nice: f.get(19, "nice")?,
        num_threads: f.get(20, "num_threads")?,
        start_time: f.get(22, "starttime")?,
        start_code: f.get(26, "startcode")?,
        end_code: f.get(27, "endcode")?,
        start_stack: f.get(28, "startstack")?,
        rt_priority: f.get(40, "rt_priority")?,
        policy: f.get(41, "policy")?,
        start_data: f.get(45, "start_data")?,
        end_data: f.get(46, "end_data")?,
        start_brk: f.get(47, "start_brk")?,
        arg_start: f.get(48, "arg_start")?,
        arg_end: f.get(49, "arg_end")?,
        env_start: f.get(50, "env_start")?,
        env_end: f.get(51, "env_end")?,
        exit_code: f.get(52, "exit_code")?,
    })
}

/// Reads /proc/PID/stat.
pub fn stat(pid: i32) -> Result<Stat, ProcError> {
    read_parsed_lossy(&format!("/proc/{pid}/stat"), parse_stat)
}

/// Reads /proc/PID/task/TID/stat.
pub fn task_stat(pid: i32, tid: i32) -> Result<Stat, ProcError> {
    read_parsed_lossy(&format!("/proc/{pid}/task/{tid}/stat"), parse_stat)
}

/// The exact bytes of a thread's command name (/proc/PID/task/TID/comm, without the
/// trailing newline), for restoring names that are not valid UTF-8.
pub fn comm(pid: i32, tid: i32) -> Result<Vec<u8>, ProcError> {
    let mut bytes = read_bytes(&format!("/proc/{pid}/task/{tid}/comm"))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    Ok(bytes)
}

// ---------------------------------------------------------------------------------------
// /proc/PID/status
// ---------------------------------------------------------------------------------------

/// The fields of /proc/PID/status that checkpointing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The command name, with the kernel's escapes (`\n`, `\\`) undone.
    pub name: String,
    /// None for zombies and on kernels before 4.7.
    pub umask: Option<u32>,
    pub state: char,
    pub tgid: i32,
    pub pid: i32,
    pub ppid: i32,
    pub tracer_pid: i32,
    /// Real, effective, saved, filesystem.
    pub uid: [u32; 4],
    /// Real, effective, saved, filesystem.
    pub gid: [u32; 4],
    pub groups: Vec<u32>,
    /// The pid in each nested pid namespace, outermost (the reader's) first.
    pub ns_pid: Vec<i32>,
    pub threads: u32,
    pub sig_pnd: u64,
    pub shd_pnd: u64,
    pub sig_blk: u64,
    pub sig_ign: u64,
    pub sig_cgt: u64,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    pub no_new_privs: bool,
    /// 0 disabled, 1 strict, 2 filter (0 on kernels without CONFIG_SECCOMP).
    pub seccomp: u32,
    /// 0 on kernels before 5.9.
    pub seccomp_filters: u32,
    /// THP_enabled (kernels from 6.x): false after PR_SET_THP_DISABLE.
    pub thp_enabled: Option<bool>,
}

/// Undoes C-style escapes (`\n`, `\\`, `\t`, octal `\ooo`...) as /proc prints them.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 == b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = b[i + 1];
        let simple = match c {
            b'n' => Some(b'\n'),
            b't' => Some(b'\t'),
            b'r' => Some(b'\r'),
            b'f' => Some(0x0c),
            b'v' => Some(0x0b),
            b'a' => Some(0x07),
            b'e' => Some(0x1b),
            b'\\' => Some(b'\\'),
            b'"' => Some(b'"'),
            _ => None,
        };
        if let Some(v) = simple {
            out.push(v);
            i += 2;
            continue;
        }
        let digits = b[i + 1..]
            .iter()
            .take(3)
            .take_while(|d| (b'0'..=b'7').contains(d))
            .count();
        if digits > 0 {
            let v = b[i + 1..i + 1 + digits]
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            // Three octal digits can exceed a byte ("\777"): keep such text as it is.
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 1 + digits;
                continue;
            }
        }
        out.push(b'\\');
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn four_u32(v: &str, line: usize, what: &str) -> Result<[u32; 4], ProcError> {
    let parts: Vec<&str> = v.split_ascii_whitespace().collect();
    if parts.len() != 4 {
        return Err(perr(
            line,
            format!("{what}: expected 4 numbers, got {}", parts.len()),
        ));
    }
    let mut out = [0u32; 4];
    for (o, p) in out.iter_mut().zip(parts) {
        *o = num(p, line, what)?;
    }
    Ok(out)
}

fn required<T>(v: Option<T>, key: &str) -> Result<T, ProcError> {
    v.ok_or_else(|| perr(0, format!("no {key:?} line")))
}

/// Parses the text of /proc/PID/status.
pub fn parse_status(text: &str) -> Result<Status, ProcError> {
    let mut name = None;
    let mut umask = None;
    let mut state = None;
    let (mut tgid, mut pid, mut ppid, mut tracer_pid) = (None, None, None, None);
    let (mut uid, mut gid, mut groups, mut ns_pid, mut threads) = (None, None, None, None, None);
    let (mut sig_pnd, mut shd_pnd, mut sig_blk, mut sig_ign, mut sig_cgt) =
        (None, None, None, None, None);
    let (mut cap_inh, mut cap_prm, mut cap_eff, mut cap_bnd, mut cap_amb) =
        (None, None, None, None, None);
    let mut no_new_privs = None;
    let mut seccomp = None;
    let mut seccomp_filters = None;
    let mut thp_enabled = None;

    for (idx, raw) in text.lines().enumerate() {
        let ln = idx + 1;
        if raw.is_empty() {
            continue;
        }
        let (key, value) = raw
            .split_once(':')
            .ok_or_else(|| perr(ln, format!("no ':' in {raw:?}")))?;
        let v = value.trim();
        match key {
            "Name" => {
                // Only the separator tab is stripped: a name may end in a space.
                let v = value.strip_prefix('\t').unwrap_or(value);
                name = Some(unescape(v));
            }
            "Umask" => umask = Some(oct_u32(v, ln, key)?),
            "State" => {
                let c = v.chars().next().ok_or_else(|| perr(ln, "State: empty"))?;
                state = Some(c);
            }
            "Tgid" => tgid = Some(num(v, ln, key)?),
            "Pid" => pid = Some(num(v, ln, key)?),
            "PPid" => ppid = Some(num(v, ln, key)?),
            "TracerPid" => tracer_pid = Some(num(v, ln, key)?),
            "Uid" => uid = Some(four_u32(v, ln, key)?),
            "Gid" => gid = Some(four_u32(v, ln, key)?),
            "Groups" => {
                groups = Some(
                    v.split_ascii_whitespace()
                        .map(|g| num(g, ln, key))
                        .collect::<Result<Vec<u32>, _>>()?,
                )
            }
            "NSpid" => {
                ns_pid = Some(
                    v.split_ascii_whitespace()
                        .map(|g| num(g, ln, key))
                        .collect::<Result<Vec<i32>, _>>()?,
                )
            }
            "Threads" => threads = Some(num(v, ln, key)?),
            "SigPnd" => sig_pnd = Some(hex_u64(v, ln, key)?),
            "ShdPnd" => shd_pnd = Some(hex_u64(v, ln, key)?),
            "SigBlk" => sig_blk = Some(hex_u64(v, ln, key)?),
            "SigIgn" => sig_ign = Some(hex_u64(v, ln, key)?),
            "SigCgt" => sig_cgt = Some(hex_u64(v, ln, key)?),
            "CapInh" => cap_inh = Some(hex_u64(v, ln, key)?),
            "CapPrm" => cap_prm = Some(hex_u64(v, ln, key)?),
            "CapEff" => cap_eff = Some(hex_u64(v, ln, key)?),
            "CapBnd" => cap_bnd = Some(hex_u64(v, ln, key)?),
            "CapAmb" => cap_amb = Some(hex_u64(v, ln, key)?),
            "NoNewPrivs" => no_new_privs = Some(num::<u32>(v, ln, key)? != 0),
            "Seccomp" => seccomp = Some(num(v, ln, key)?),
            "Seccomp_filters" => seccomp_filters = Some(num(v, ln, key)?),
            "THP_enabled" => thp_enabled = Some(num::<u32>(v, ln, key)? != 0),
            _ => {}
        }
    }

    let pid: i32 = required(pid, "Pid")?;
    Ok(Status {
        name: required(name, "Name")?,
        umask,
        state: required(state, "State")?,
        tgid: required(tgid, "Tgid")?,
        pid,
        ppid: required(ppid, "PPid")?,
        tracer_pid: required(tracer_pid, "TracerPid")?,
        uid: required(uid, "Uid")?,
        gid: required(gid, "Gid")?,
        groups: required(groups, "Groups")?,
        ns_pid: ns_pid.unwrap_or_else(|| vec![pid]),
        threads: required(threads, "Threads")?,
        sig_pnd: required(sig_pnd, "SigPnd")?,
        shd_pnd: required(shd_pnd, "ShdPnd")?,
        sig_blk: required(sig_blk, "SigBlk")?,
        sig_ign: required(sig_ign, "SigIgn")?,
        sig_cgt: required(sig_cgt, "SigCgt")?,
        cap_inh: required(cap_inh, "CapInh")?,
        cap_prm: required(cap_prm, "CapPrm")?,
        cap_eff: required(cap_eff, "CapEff")?,
        cap_bnd: required(cap_bnd, "CapBnd")?,
        cap_amb: cap_amb.unwrap_or(0),
        no_new_privs: no_new_privs.unwrap_or(false),
        seccomp: seccomp.unwrap_or(0),
        seccomp_filters: seccomp_filters.unwrap_or(0),
        thp_enabled,
    })
}

/// Reads /proc/PID/status.
pub fn status(pid: i32) -> Result<Status, ProcError> {
    read_parsed_lossy(&format!("/proc/{pid}/status"), parse_status)
}

/// Reads /proc/PID/task/TID/status.
pub fn task_status(pid: i32, tid: i32) -> Result<Status, ProcError> {
    read_parsed_lossy(&format!("/proc/{pid}/task/{tid}/status"), parse_status)
}

// ---------------------------------------------------------------------------------------
// /proc/PID/maps and smaps
// ---------------------------------------------------------------------------------------

/// One line of /proc/PID/maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapsEntry {
    pub start: u64,
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    /// 's' (MAP_SHARED) rather than 'p'.
    pub shared: bool,
    pub offset: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    /// The name as the kernel shows it (empty for anonymous memory), without the
    /// " (deleted)" suffix. Newlines in file names appear as `\012`, as the kernel prints
    /// them (it does not escape backslashes, so this cannot be undone reliably).
    pub path: String,
    /// The name ended in " (deleted)": the file was unlinked (memfd, SysV shm and
    /// /dev/zero shared mappings always show this). A file really named "x (deleted)"
    /// is indistinguishable here; check with map_files if it matters.
    pub deleted: bool,
}

impl MapsEntry {
    /// A kernel-provided special mapping such as `[vdso]`, `[vvar]`, `[vvar_vclock]`,
    /// `[vsyscall]` or `[uprobes]`: a name in brackets other than `[heap]`, `[stack]`
    /// (`[stack:TID]` on old kernels), `[anon:NAME]` and `[anon_shmem:NAME]`.
    pub fn is_special(&self) -> bool {
        let p = self.path.as_str();
        p.starts_with('[')
            && p != "[heap]"
            && p != "[stack]"
            && !p.starts_with("[stack:")
            && !p.starts_with("[anon:")
            && !p.starts_with("[anon_shmem:")
    }

    /// Size in bytes (`end - start`).
    pub fn size(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
}

/// The kernel pads the header of a maps line to this many characters before the name
/// (`25 + sizeof(void *) * 6 - 1` on 64-bit), then writes one more space.
const MAPS_NAME_PAD: usize = 72;

/// Takes the next space-separated token of `line` at or after `*pos`.
fn next_token<'a>(line: &'a str, pos: &mut usize) -> Option<(&'a str, usize)> {
    let bytes = line.as_bytes();
    let mut s = *pos;
    while s < bytes.len() && bytes[s] == b' ' {
        s += 1;
    }
    let mut e = s;
    while e < bytes.len() && bytes[e] != b' ' {
        e += 1;
    }
    *pos = e;
    (e > s).then(|| (&line[s..e], e))
}

fn parse_maps_line(line: &str, ln: usize) -> Result<MapsEntry, ProcError> {
    let mut pos = 0;
    let mut field = |what: &str| {
        next_token(line, &mut pos).ok_or_else(|| perr(ln, format!("{what} missing in {line:?}")))
    };
    let (range, _) = field("address range")?;
    let (perms, _) = field("permissions")?;
    let (offset, _) = field("offset")?;
    let (dev, _) = field("device")?;
    let (inode, inode_end) = field("inode")?;

    let (start, end) = range
        .split_once('-')
        .ok_or_else(|| perr(ln, format!("address range {range:?} has no '-'")))?;
    let start = hex_u64(start, ln, "start address")?;
    let end = hex_u64(end, ln, "end address")?;
    if start > end {
        return Err(perr(ln, format!("start {start:#x} above end {end:#x}")));
    }

    let p = perms.as_bytes();
    let flag = |i: usize, yes: u8, no: u8| match p.get(i) {
        Some(&c) if c == yes => Ok(true),
        Some(&c) if c == no => Ok(false),
        _ => Err(perr(ln, format!("bad permissions {perms:?}"))),
    };
    if p.len() != 4 {
        return Err(perr(ln, format!("bad permissions {perms:?}")));
    }
    let read = flag(0, b'r', b'-')?;
    let write = flag(1, b'w', b'-')?;
    let exec = flag(2, b'x', b'-')?;
    let shared = flag(3, b's', b'p')?;

    let offset = hex_u64(offset, ln, "offset")?;
    let (maj, min) = dev
        .split_once(':')
        .ok_or_else(|| perr(ln, format!("device {dev:?} has no ':'")))?;
    let dev_major = hex_u32(maj, ln, "device major")?;
    let dev_minor = hex_u32(min, ln, "device minor")?;
    let inode = num(inode, ln, "inode")?;

    // The name starts right after the padding (so a name may itself start with spaces);
    // if the line does not have the kernel's exact padding, take what follows the blanks.
    let bytes = line.as_bytes();
    let header_len = inode_end + 1;
    let exact = MAPS_NAME_PAD.max(header_len) + 1;
    let name = if bytes.len() > exact && bytes[inode_end..exact].iter().all(|&b| b == b' ') {
        &line[exact..]
    } else {
        line[inode_end..].trim_start_matches(' ')
    };
    let (path, deleted) = match name.strip_suffix(" (deleted)") {
        Some(p) => (p, true),
        None => (name, false),
    };

    Ok(MapsEntry {
        start,
        end,
        read,
        write,
        exec,
        shared,
        offset,
        dev_major,
        dev_minor,
        inode,
        path: path.to_string(),
        deleted,
    })
}

/// Parses the text of /proc/PID/maps.
pub fn parse_maps(text: &str) -> Result<Vec<MapsEntry>, ProcError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| parse_maps_line(l, i + 1))
        .collect()
}

/// Reads /proc/PID/maps.
pub fn maps(pid: i32) -> Result<Vec<MapsEntry>, ProcError> {
    read_parsed(&format!("/proc/{pid}/maps"), parse_maps)
}

/// One mapping of /proc/PID/smaps with the counters checkpointing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmapsEntry {
    pub map: MapsEntry,
    pub rss_kb: u64,
    pub anonymous_kb: u64,
    pub swap_kb: u64,
    pub locked_kb: u64,
    pub anon_huge_kb: u64,
    /// The two-letter VmFlags ("rd", "wr", "sd", "dd", "hg", "nh", "gu"...).
    pub vm_flags: Vec<String>,
}

/// Parses the text of /proc/PID/smaps.
pub fn parse_smaps(text: &str) -> Result<Vec<SmapsEntry>, ProcError> {
    let mut out: Vec<SmapsEntry> = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        let ln = idx + 1;
        let first = match line.split_ascii_whitespace().next() {
            Some(f) => f,
            None => continue,
        };
        let Some(key) = first.strip_suffix(':') else {
            out.push(SmapsEntry {
                map: parse_maps_line(line, ln)?,
                rss_kb: 0,
                anonymous_kb: 0,
                swap_kb: 0,
                locked_kb: 0,
                anon_huge_kb: 0,
                vm_flags: Vec::new(),
            });
            continue;
        };
        let cur = out
            .last_mut()
            .ok_or_else(|| perr(ln, format!("field {key:?} before the first mapping")))?;
        let value = line[line.find(':').map_or(line.len(), |i| i + 1)..].trim();
        let slot = match key {
            "Rss" => &mut cur.rss_kb,
            "Anonymous" => &mut cur.anonymous_kb,
            "Swap" => &mut cur.swap_kb,
            "Locked" => &mut cur.locked_kb,
            "AnonHugePages" => &mut cur.anon_huge_kb,
            "VmFlags" => {
                cur.vm_flags = value.split_ascii_whitespace().map(String::from).collect();
                continue;
            }
            _ => continue,
        };
        let mut parts = value.split_ascii_whitespace();
        let n = parts
            .next()
            .ok_or_else(|| perr(ln, format!("{key}: no value")))?;
        *slot = num(n, ln, key)?;
        match parts.next() {
            None | Some("kB") => {}
            Some(u) => return Err(perr(ln, format!("{key}: unexpected unit {u:?}"))),
        }
    }
    Ok(out)
}

/// Reads /proc/PID/smaps.
pub fn smaps(pid: i32) -> Result<Vec<SmapsEntry>, ProcError> {
    read_parsed(&format!("/proc/{pid}/smaps"), parse_smaps)
}

// ---------------------------------------------------------------------------------------
// /proc/PID/fdinfo, fd, task, children, links
// ---------------------------------------------------------------------------------------

/// /proc/PID/fdinfo/FD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdInfo {
    pub pos: u64,
    /// The open-file flags (O_*), printed in octal by the kernel.
    pub flags: u32,
    pub mnt_id: u64,
    /// 0 on kernels before 5.14, which do not print it.
    pub ino: u64,
    /// Every other line, in order, split at the first ':' with key and value trimmed
    /// ("eventfd-count", "tfd", "inotify wd", "lock", "sigmask", ...). A line without ':'
    /// has the whole line as key and an empty value.
    pub extra: Vec<(String, String)>,
}

/// Parses the text of /proc/PID/fdinfo/FD.
pub fn parse_fdinfo(text: &str) -> Result<FdInfo, ProcError> {
    let (mut pos, mut flags, mut mnt_id, mut ino) = (None, None, None, None);
    let mut extra = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        let ln = idx + 1;
        if line.trim().is_empty() {
            continue;
        }
        let (key, value) = match line.split_once(':') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (line.trim(), ""),
        };
        match key {
            "pos" if pos.is_none() => pos = Some(num(value, ln, key)?),
            "flags" if flags.is_none() => flags = Some(oct_u32(value, ln, key)?),
            "mnt_id" if mnt_id.is_none() => mnt_id = Some(num(value, ln, key)?),
            "ino" if ino.is_none() => ino = Some(num(value, ln, key)?),
            _ => extra.push((key.to_string(), value.to_string())),
        }
    }
    Ok(FdInfo {
        pos: required(pos, "pos")?,
        flags: required(flags, "flags")?,
        mnt_id: required(mnt_id, "mnt_id")?,
        ino: ino.unwrap_or(0),
        extra,
    })
}

/// Reads /proc/PID/fdinfo/FD.
pub fn fdinfo(pid: i32, fd: i32) -> Result<FdInfo, ProcError> {
    read_parsed(&format!("/proc/{pid}/fdinfo/{fd}"), parse_fdinfo)
}

/// The numeric entries of a /proc directory, sorted.
fn numeric_dir(path: &str) -> Result<Vec<i32>, ProcError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(path).map_err(|e| io_err(path, e))? {
        let entry = entry.map_err(|e| io_err(path, e))?;
        let name = entry.file_name();
        let n = name
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
            .ok_or_else(|| ProcError::Parse {
                path: path.to_string(),
                line: 0,
                reason: format!("entry {name:?} is not a number"),
            })?;
        out.push(n);
    }
    out.sort_unstable();
    Ok(out)
}

/// The open descriptors of a process (/proc/PID/fd), sorted.
pub fn fds(pid: i32) -> Result<Vec<i32>, ProcError> {
    numeric_dir(&format!("/proc/{pid}/fd"))
}

/// What descriptor FD of PID points to (readlink /proc/PID/fd/FD): a path, or
/// "pipe:[INO]", "socket:[INO]", "anon_inode:[eventfd]"...
pub fn fd_target(pid: i32, fd: i32) -> Result<String, ProcError> {
    read_link(&format!("/proc/{pid}/fd/{fd}"))
}

/// The threads of a process (/proc/PID/task), sorted.
pub fn threads(pid: i32) -> Result<Vec<i32>, ProcError> {
    numeric_dir(&format!("/proc/{pid}/task"))
}

/// Parses the text of /proc/PID/task/TID/children: space-separated pids.
pub fn parse_children(text: &str) -> Result<Vec<i32>, ProcError> {
    text.split_ascii_whitespace()
        .map(|s| num(s, 1, "child pid"))
        .collect()
}

/// The children of thread TID of PID (/proc/PID/task/TID/children), in the kernel's order.
pub fn children(pid: i32, tid: i32) -> Result<Vec<i32>, ProcError> {
    read_parsed(&format!("/proc/{pid}/task/{tid}/children"), parse_children)
}

/// readlink /proc/PID/NAME, for NAME in "cwd", "root", "exe" (or any other link there,
/// such as "ns/pid").
pub fn link(pid: i32, name: &str) -> Result<String, ProcError> {
    read_link(&format!("/proc/{pid}/{name}"))
}

// ---------------------------------------------------------------------------------------
// /proc/PID/limits
// ---------------------------------------------------------------------------------------

/// One resource limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The RLIMIT_* number.
    pub resource: u32,
    pub soft: u64,
    /// `u64::MAX` (RLIM_INFINITY) for "unlimited", here and in `soft`.
    pub hard: u64,
}

/// Row names of /proc/PID/limits and their RLIMIT_* numbers (the kernel prints them in
/// this order, from its own table in fs/proc/base.c).
const LIMIT_ROWS: [(&str, u32); 16] = [
    ("Max cpu time", 0),           // RLIMIT_CPU
    ("Max file size", 1),          // RLIMIT_FSIZE
    ("Max data size", 2),          // RLIMIT_DATA
    ("Max stack size", 3),         // RLIMIT_STACK
    ("Max core file size", 4),     // RLIMIT_CORE
    ("Max resident set", 5),       // RLIMIT_RSS
    ("Max processes", 6),          // RLIMIT_NPROC
    ("Max open files", 7),         // RLIMIT_NOFILE
    ("Max locked memory", 8),      // RLIMIT_MEMLOCK
    ("Max address space", 9),      // RLIMIT_AS
    ("Max file locks", 10),        // RLIMIT_LOCKS
    ("Max pending signals", 11),   // RLIMIT_SIGPENDING
    ("Max msgqueue size", 12),     // RLIMIT_MSGQUEUE
    ("Max nice priority", 13),     // RLIMIT_NICE
    ("Max realtime priority", 14), // RLIMIT_RTPRIO
    ("Max realtime timeout", 15),  // RLIMIT_RTTIME
];

fn limit_value(s: &str, ln: usize, what: &str) -> Result<u64, ProcError> {
    if s == "unlimited" {
        Ok(u64::MAX)
    } else {
        num(s, ln, what)
    }
}

/// Parses the text of /proc/PID/limits. An unknown row is an error: it would be a limit
/// that a checkpoint could not carry.
pub fn parse_limits(text: &str) -> Result<Vec<Limit>, ProcError> {
    let mut out = Vec::with_capacity(LIMIT_ROWS.len());
    for (idx, line) in text.lines().enumerate() {
        let ln = idx + 1;
        if line.trim().is_empty() || (idx == 0 && line.starts_with("Limit ")) {
            continue;
        }
        let (name, resource) = LIMIT_ROWS
            .iter()
            .find(|(name, _)| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('\t'))
            })
            .ok_or_else(|| perr(ln, format!("unknown limit row {:?}", line.trim_end())))?;
        let mut parts = line[name.len()..].split_ascii_whitespace();
        let soft = parts
            .next()
            .ok_or_else(|| perr(ln, format!("{name}: no soft limit")))?;
        let hard = parts
            .next()
            .ok_or_else(|| perr(ln, format!("{name}: no hard limit")))?;
        out.push(Limit {
            resource: *resource,
            soft: limit_value(soft, ln, name)?,
            hard: limit_value(hard, ln, name)?,
        });
    }
    Ok(out)
}

/// Reads /proc/PID/limits.
pub fn limits(pid: i32) -> Result<Vec<Limit>, ProcError> {
    read_parsed(&format!("/proc/{pid}/limits"), parse_limits)
}

// ---------------------------------------------------------------------------------------
// auxv, personality, oom_score_adj, existence, kernel release
// ---------------------------------------------------------------------------------------

/// Parses the raw bytes of /proc/PID/auxv into native-endian u64 words, up to and
/// including the AT_NULL pair.
pub fn parse_auxv(bytes: &[u8]) -> Result<Vec<u64>, ProcError> {
    if !bytes.chunks_exact(16).remainder().is_empty() {
        return Err(perr(
            0,
            format!(
                "{} bytes is not a whole number of (type, value) pairs",
                bytes.len()
            ),
        ));
    }
    let mut words = Vec::with_capacity(bytes.len() / 8);
    for pair in bytes.chunks_exact(16) {
        let mut k = [0u8; 8];
        let mut v = [0u8; 8];
        k.copy_from_slice(&pair[..8]);
        v.copy_from_slice(&pair[8..]);
        let key = u64::from_ne_bytes(k);
        words.push(key);
        words.push(u64::from_ne_bytes(v));
        if key == 0 {
            return Ok(words);
        }
    }
    Err(perr(0, "no AT_NULL entry"))
}

/// Reads /proc/PID/auxv as u64 words, up to and including the AT_NULL pair.
pub fn auxv(pid: i32) -> Result<Vec<u64>, ProcError> {
    let path = format!("/proc/{pid}/auxv");
    parse_auxv(&read_bytes(&path)?).map_err(|e| e.in_file(&path))
}

fn parse_personality(text: &str) -> Result<u32, ProcError> {
    hex_u32(text.trim(), 1, "personality")
}

/// Reads /proc/PID/personality (hex text). Needs ptrace access to PID.
pub fn personality(pid: i32) -> Result<u32, ProcError> {
    read_parsed(&format!("/proc/{pid}/personality"), parse_personality)
}

fn parse_oom_score_adj(text: &str) -> Result<i32, ProcError> {
    num(text.trim(), 1, "oom_score_adj")
}

/// Reads /proc/PID/oom_score_adj.
pub fn oom_score_adj(pid: i32) -> Result<i32, ProcError> {
    read_parsed(&format!("/proc/{pid}/oom_score_adj"), parse_oom_score_adj)
}

/// True if a process (or thread) with this id exists in the reader's pid namespace,
/// zombies included.
pub fn pid_exists(pid: i32) -> bool {
    pid > 0 && fs::symlink_metadata(format!("/proc/{pid}")).is_ok()
}

/// The running kernel's release (/proc/sys/kernel/osrelease), or "unknown".
pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

// ---------------------------------------------------------------------------------------
// /proc/PID/pagemap
// ---------------------------------------------------------------------------------------

/// Page present in RAM.
pub const PM_PRESENT: u64 = 1 << 63;
/// Page swapped out.
pub const PM_SWAP: u64 = 1 << 62;
/// Page is file-backed or shared anonymous.
pub const PM_FILE: u64 = 1 << 61;
/// Page mapped exclusively (only by this process).
pub const PM_EXCLUSIVE: u64 = 1 << 56;
/// Page written since the last clear_refs "4" (needs CONFIG_MEM_SOFT_DIRTY).
pub const PM_SOFT_DIRTY: u64 = 1 << 55;
/// Page write-protected by userfaultfd (since 5.17).
pub const PM_UFFD_WP: u64 = 1 << 57;
/// The pte is a guard region installed by MADV_GUARD_INSTALL (since 6.15).
pub const PM_GUARD_REGION: u64 = 1 << 58;
/// Page frame number (present pages; zero without CAP_SYS_ADMIN) or swap type/offset.
pub const PM_PFN_MASK: u64 = (1 << 55) - 1;

/// The system page size.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// An open /proc/PID/pagemap: one u64 entry per virtual page.
#[derive(Debug)]
pub struct Pagemap {
    file: fs::File,
    path: String,
    page: u64,
    buf: Vec<u8>,
}

impl Pagemap {
    /// Opens /proc/PID/pagemap (needs ptrace access to PID).
    pub fn open(pid: i32) -> Result<Self, ProcError> {
        let path = format!("/proc/{pid}/pagemap");
        let file = fs::File::open(&path).map_err(|e| io_err(&path, e))?;
        Ok(Self {
            file,
            path,
            page: page_size(),
            buf: Vec::new(),
        })
    }

    /// Replaces the contents of `out` with the entries of the `pages` pages starting at
    /// virtual address `start` (which must be page-aligned), read with one pread.
    pub fn read(&mut self, start: u64, pages: usize, out: &mut Vec<u64>) -> Result<(), ProcError> {
        let invalid =
            |msg: String| io_err(&self.path, io::Error::new(io::ErrorKind::InvalidInput, msg));
        if start & (self.page - 1) != 0 {
            return Err(invalid(format!("address {start:#x} is not page-aligned")));
        }
        let offset = start / self.page * 8;
        let len = pages
            .checked_mul(8)
            .ok_or_else(|| invalid(format!("{pages} pages is too many")))?;
        self.buf.clear();
        self.buf.resize(len, 0);
        let mut done = 0;
        while done < len {
            // usize -> u64 never truncates on the 64-bit targets this crate supports.
            let at = offset + done as u64;
            match self.file.read_at(&mut self.buf[done..], at) {
                Ok(0) => {
                    return Err(io_err(
                        &self.path,
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "end of pagemap at address {:#x} ({} of {pages} pages read from {start:#x})",
                                start.saturating_add((done / 8) as u64 * self.page),
                                done / 8
                            ),
                        ),
                    ))
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(&self.path, e)),
            }
        }
        out.clear();
        out.extend(self.buf.chunks_exact(8).map(|c| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            u64::from_ne_bytes(w)
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_SELF: &str = "3876 (cat) R 3874 3874 3003 0 -1 4194304 100 0 0 0 0 0 0 0 20 0 1 0 108564 3133440 388 18446744073709551615 94539334799360 94539334819241 140722546111248 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 94539334835248 94539334836864 94539668180992 140722546117148 140722546117168 140722546117168 140722546118635 0\n";

    fn line_of(e: &ProcError) -> usize {
        match e {
            ProcError::Parse { line, .. } => *line,
            ProcError::Io { .. } => usize::MAX,
        }
    }

    #[test]
    fn stat_plain() {
        let s = parse_stat(STAT_SELF).unwrap();
        assert_eq!(s.pid, 3876);
        assert_eq!(s.comm, "cat");
        assert_eq!(s.state, 'R');
        assert_eq!((s.ppid, s.pgrp, s.session, s.tty_nr), (3874, 3874, 3003, 0));
        assert_eq!(s.flags, 4194304);
        assert_eq!((s.nice, s.num_threads, s.start_time), (0, 1, 108564));
        assert_eq!(s.start_code, 94539334799360);
        assert_eq!(s.end_code, 94539334819241);
        assert_eq!(s.start_stack, 140722546111248);
        assert_eq!((s.rt_priority, s.policy), (0, 0));
        assert_eq!(s.start_data, 94539334835248);
        assert_eq!(s.end_data, 94539334836864);
        assert_eq!(s.start_brk, 94539668180992);
        assert_eq!(s.arg_start, 140722546117148);
        assert_eq!(s.arg_end, 140722546117168);
        assert_eq!(s.env_start, 140722546117168);
        assert_eq!(s.env_end, 140722546118635);
        assert_eq!(s.exit_code, 0);
    }

    #[test]
    fn stat_tricky_comm() {
        for comm in [
            "a b",
            ") (",
            "x) R 1 2 3 (",
            "(",
            ")",
            "",
            "new\nline",
            "  ",
        ] {
            let text = STAT_SELF.replacen("(cat)", &format!("({comm})"), 1);
            let s = parse_stat(&text).unwrap_or_else(|e| panic!("{comm:?}: {e}"));
            assert_eq!(s.comm, comm);
            assert_eq!(s.state, 'R');
            assert_eq!(s.ppid, 3874);
            assert_eq!(s.exit_code, 0);
        }
    }

    #[test]
    fn stat_negative_and_large() {
        let text = STAT_SELF.replacen(" 20 0 1 0 ", " 39 19 7 0 ", 1).replacen(
            " 3874 3874 3003 0 -1",
            " 1 3874 3003 34816 -1",
            1,
        );
        let s = parse_stat(&text).unwrap();
        assert_eq!((s.nice, s.num_threads, s.tty_nr, s.ppid), (19, 7, 34816, 1));
        let text = STAT_SELF.replacen(" 20 0 1 0 ", " 0 -20 1 0 ", 1);
        assert_eq!(parse_stat(&text).unwrap().nice, -20);
    }

    #[test]
    fn stat_errors() {
        assert!(parse_stat("").is_err());
        assert!(parse_stat("12 cat R 1").is_err());
        assert!(parse_stat("12 (cat) R 1 2 3").is_err());
        assert!(parse_stat(")12 (cat R 1 2 3").is_err());
        assert!(parse_stat("x (cat) R 1 2 3").is_err());
        // truncated: the last field missing
        let cut = STAT_SELF.trim_end().rsplit_once(' ').unwrap().0;
        let e = parse_stat(cut).unwrap_err();
        assert!(e.to_string().contains("exit_code"), "{e}");
        // a non-number
        let bad = STAT_SELF.replacen(" 3874 3874", " 38x4 3874", 1);
        let e = parse_stat(&bad).unwrap_err();
        assert!(e.to_string().contains("ppid"), "{e}");
        assert_eq!(line_of(&e), 1);
        // two-character state
        let bad = STAT_SELF.replacen(") R ", ") RR ", 1);
        assert!(parse_stat(&bad).is_err());
        // extra trailing fields from a future kernel are fine
        let more = format!("{} 7 8\n", STAT_SELF.trim_end());
        assert_eq!(parse_stat(&more).unwrap().exit_code, 0);
    }

    const STATUS: &str = "Name:\tcat\nUmask:\t0022\nState:\tR (running)\nTgid:\t3877\nNgid:\t0\nPid:\t3877\nPPid:\t3874\nTracerPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nFDSize:\t256\nGroups:\t \nNStgid:\t3877\nNSpid:\t3877\nNSpgid:\t3874\nNSsid:\t3003\nKthread:\t0\nVmPeak:\t    3060 kB\nVmSize:\t    3060 kB\nThreads:\t1\nSigQ:\t0/96365\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nSigCgt:\t0000000000000000\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t0\nSeccomp_filters:\t0\nSpeculation_Store_Bypass:\tvulnerable\nTHP_enabled:\t1\nCpus_allowed_list:\t0-1\nvoluntary_ctxt_switches:\t0\n";

    #[test]
    fn status_plain() {
        let s = parse_status(STATUS).unwrap();
        assert_eq!(s.name, "cat");
        assert_eq!(s.umask, Some(0o22));
        assert_eq!(s.state, 'R');
        assert_eq!((s.tgid, s.pid, s.ppid, s.tracer_pid), (3877, 3877, 3874, 0));
        assert_eq!(s.uid, [0; 4]);
        assert_eq!(s.gid, [0; 4]);
        assert!(s.groups.is_empty());
        assert_eq!(s.ns_pid, vec![3877]);
        assert_eq!(s.threads, 1);
        assert_eq!(s.cap_prm, 0x1fffeffffff);
        assert_eq!(s.cap_eff, 0x1fffeffffff);
        assert_eq!(s.cap_bnd, 0x1fffeffffff);
        assert_eq!(s.cap_amb, 0);
        assert!(!s.no_new_privs);
        assert_eq!((s.seccomp, s.seccomp_filters), (0, 0));
        assert_eq!(s.thp_enabled, Some(true));
    }

    #[test]
    fn status_variants() {
        let text = STATUS
            .replace("Name:\tcat", "Name:\tmy\\\\pro\\ng ")
            .replace("Umask:\t0022\n", "")
            .replace("State:\tR (running)", "State:\tt (tracing stop)")
            .replace("TracerPid:\t0", "TracerPid:\t42")
            .replace("Uid:\t0\t0\t0\t0", "Uid:\t1000\t1001\t1002\t1003")
            .replace("Groups:\t ", "Groups:\t4 24 27 ")
            .replace("NSpid:\t3877", "NSpid:\t3877\t12\t1")
            .replace("SigBlk:\t0000000000000000", "SigBlk:\tfffffffe7ffbfeff")
            .replace("NoNewPrivs:\t0", "NoNewPrivs:\t1")
            .replace(
                "Seccomp:\t0\nSeccomp_filters:\t0",
                "Seccomp:\t2\nSeccomp_filters:\t3",
            )
            .replace("THP_enabled:\t1\n", "");
        let s = parse_status(&text).unwrap();
        assert_eq!(s.name, "my\\pro\ng ");
        assert_eq!(s.umask, None);
        assert_eq!(s.state, 't');
        assert_eq!(s.tracer_pid, 42);
        assert_eq!(s.uid, [1000, 1001, 1002, 1003]);
        assert_eq!(s.groups, vec![4, 24, 27]);
        assert_eq!(s.ns_pid, vec![3877, 12, 1]);
        assert_eq!(s.sig_blk, 0xfffffffe7ffbfeff);
        assert!(s.no_new_privs);
        assert_eq!((s.seccomp, s.seccomp_filters), (2, 3));
        assert_eq!(s.thp_enabled, None);
    }

    #[test]
    fn status_errors() {
        let e = parse_status(&STATUS.replace("PPid:\t3874", "PPid:\tx")).unwrap_err();
        assert_eq!(line_of(&e), 7);
        assert!(e.to_string().contains("PPid"), "{e}");
        let e = parse_status(&STATUS.replace("Uid:\t0\t0\t0\t0", "Uid:\t0\t0")).unwrap_err();
        assert_eq!(line_of(&e), 9);
        let e = parse_status(&STATUS.replace("SigCgt:\t0000000000000000\n", "")).unwrap_err();
        assert!(e.to_string().contains("SigCgt"), "{e}");
        assert!(parse_status(&STATUS.replace("SigPnd:\t0", "SigPnd:\tz")).is_err());
        assert!(parse_status("garbage without colon\n").is_err());
        assert!(parse_status("").is_err());
    }

    #[test]
    fn unescape_cases() {
        assert_eq!(unescape("plain"), "plain");
        assert_eq!(unescape("a\\nb"), "a\nb");
        assert_eq!(unescape("a\\\\b"), "a\\b");
        assert_eq!(unescape("a\\012b"), "a\nb");
        assert_eq!(unescape("trailing\\"), "trailing\\");
        assert_eq!(unescape("\\777"), "\\777");
        assert_eq!(unescape("\\q"), "\\q");
    }

    const MAPS: &str = "\
562d6055b000-562d6055d000 r--p 00000000 fe:00 247030                     /usr/bin/cat
562d73aae000-562d73acf000 rw-p 00000000 00:00 0                          [heap]
7f3383b0c000-7f3383b2e000 rw-p 00000000 00:00 0 
7f3383d74000-7f3383d7b000 r--s 00000000 fe:00 325745                     /usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache
7f3383d7e000-7f3383d82000 r--p 00000000 00:00 0                          [vvar]
7f3383d82000-7f3383d84000 r--p 00000000 00:00 0                          [vvar_vclock]
7f3383d84000-7f3383d86000 r-xp 00000000 00:00 0                          [vdso]
7f3383d87000-7f3383dad000 r-xp 00001000 103:02 325843                    /tmp/my dir/lib (x).so (deleted)
7f3383dad000-7f3383db7000 rw-s 00000000 00:01 1041                       /memfd:buf (deleted)
7f3383db7000-7f3383db9000 rw-p 00000000 00:00 0                          [anon:my name]
7ffd43128000-7ffd43149000 rw-p 00000000 00:00 0                          [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    #[test]
    fn maps_lines() {
        let m = parse_maps(MAPS).unwrap();
        assert_eq!(m.len(), 12);
        assert_eq!(m[0].start, 0x562d6055b000);
        assert_eq!(m[0].end, 0x562d6055d000);
        assert!(m[0].read && !m[0].write && !m[0].exec && !m[0].shared);
        assert_eq!(
            (m[0].dev_major, m[0].dev_minor, m[0].inode),
            (0xfe, 0, 247030)
        );
        assert_eq!(m[0].path, "/usr/bin/cat");
        assert!(!m[0].deleted && !m[0].is_special());

        assert_eq!(m[1].path, "[heap]");
        assert!(!m[1].is_special());
        assert_eq!(m[2].path, "");
        assert!(!m[2].is_special() && !m[2].deleted);
        assert_eq!(m[2].size(), 0x22000);
        assert!(m[3].shared);
        for i in [4, 5, 6, 11] {
            assert!(m[i].is_special(), "{}", m[i].path);
        }
        assert_eq!(m[5].path, "[vvar_vclock]");
        assert!(m[6].exec);

        assert_eq!(m[7].path, "/tmp/my dir/lib (x).so");
        assert!(m[7].deleted && m[7].exec);
        assert_eq!(m[7].offset, 0x1000);
        assert_eq!((m[7].dev_major, m[7].dev_minor), (0x103, 2));
        assert_eq!(m[8].path, "/memfd:buf");
        assert!(m[8].deleted && m[8].shared && m[8].write);
        assert_eq!(m[9].path, "[anon:my name]");
        assert!(!m[9].is_special());
        assert_eq!(m[10].path, "[stack]");
        assert!(!m[10].is_special());
        assert_eq!(m[11].start, 0xffffffffff600000);
        assert!(m[11].exec && !m[11].read);
    }

    #[test]
    fn maps_name_padding() {
        // Exact kernel padding: a name that itself starts with spaces keeps them.
        let head = "7f0000000000-7f0000001000 r--p 00000000 fe:00 12 ";
        let line = format!("{head:<72} /  odd");
        assert_eq!(parse_maps(&line).unwrap()[0].path, "/  odd");
        let line = format!("{head:<72}  /lead");
        assert_eq!(parse_maps(&line).unwrap()[0].path, " /lead");
        // A header longer than the padding: one extra space, then the name.
        let head =
            "ffffffffff600000-ffffffffff601000 --xp 123456789abc 00:00 12345678901234567890 ";
        let line = format!("{head} /x y");
        let m = parse_maps(&line).unwrap();
        assert_eq!(m[0].path, "/x y");
        assert_eq!(m[0].inode, 12345678901234567890);
        // Hand-written single-space lines.
        let m =
            parse_maps("1000-2000 rw-p 00000000 00:00 0 [heap]\n3000-4000 ---p 0 0:0 0\n").unwrap();
        assert_eq!(m[0].path, "[heap]");
        assert_eq!(m[1].path, "");
        assert!(!m[1].read && !m[1].write && !m[1].exec);
    }

    #[test]
    fn maps_errors() {
        for (bad, what) in [
            ("1000 rw-p 0 00:00 0\n", "no dash"),
            ("1000-zz rw-p 0 00:00 0\n", "bad hex"),
            ("2000-1000 rw-p 0 00:00 0\n", "reversed"),
            ("1000-2000 rw-x 0 00:00 0\n", "bad share flag"),
            ("1000-2000 rw 0 00:00 0\n", "short perms"),
            ("1000-2000 rw-p 0 0000 0\n", "no colon in dev"),
            ("1000-2000 rw-p 0 00:00\n", "no inode"),
            ("1000-2000 rw-p 0 00:00 x\n", "bad inode"),
        ] {
            assert!(parse_maps(bad).is_err(), "{what}");
        }
        let text = format!("{MAPS}1000-2000 rw-p 0 00:00\n");
        assert_eq!(line_of(&parse_maps(&text).unwrap_err()), 13);
    }

    const SMAPS: &str = "\
560d93030000-560d93032000 r--p 00000000 fe:00 247282                     /usr/bin/head
Size:                  8 kB
KernelPageSize:        4 kB
Rss:                   8 kB
Anonymous:             0 kB
AnonHugePages:         0 kB
Swap:                  0 kB
Locked:                0 kB
THPeligible:           0
VmFlags: rd mr mw me 
7f4953e4a000-7f4953e4c000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   4 kB
VmFlags: rd ex mr mw me de 
7f0000000000-7f0000400000 rw-p 00000000 00:00 0 
Size:               4096 kB
Rss:                2048 kB
Anonymous:          2048 kB
AnonHugePages:      2048 kB
Swap:                 12 kB
Locked:                4 kB
ProtectionKey:         0
VmFlags: rd wr mr mw me ac hg 
";

    #[test]
    fn smaps_entries() {
        let s = parse_smaps(SMAPS).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].map.path, "/usr/bin/head");
        assert_eq!(s[0].rss_kb, 8);
        assert_eq!(s[0].vm_flags, ["rd", "mr", "mw", "me"]);
        assert!(s[1].map.is_special());
        assert_eq!(s[1].vm_flags.last().map(String::as_str), Some("de"));
        assert_eq!(s[2].map.path, "");
        assert_eq!(
            (
                s[2].rss_kb,
                s[2].anonymous_kb,
                s[2].anon_huge_kb,
                s[2].swap_kb,
                s[2].locked_kb
            ),
            (2048, 2048, 2048, 12, 4)
        );
        assert!(s[2].vm_flags.iter().any(|f| f == "hg"));
    }

    #[test]
    fn smaps_errors() {
        assert!(parse_smaps("Rss: 4 kB\n").is_err());
        let e =
            parse_smaps(&SMAPS.replace("Swap:                 12 kB", "Swap: x kB")).unwrap_err();
        assert_eq!(line_of(&e), 19);
        assert!(parse_smaps(&SMAPS.replace("Rss:                   4 kB", "Rss: 4 MB")).is_err());
        assert!(parse_smaps("").unwrap().is_empty());
    }

    #[test]
    fn fdinfo_variants() {
        let f = parse_fdinfo("pos:\t7205\nflags:\t0100001\nmnt_id:\t27\nino:\t10010682\n").unwrap();
        assert_eq!(f.pos, 7205);
        assert_eq!(f.flags, 0o100001);
        assert_eq!((f.mnt_id, f.ino), (27, 10010682));
        assert!(f.extra.is_empty());

        let epoll = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\n\
tfd:        5 events:       19 data:                5  pos:0 ino:3f sdev:d\n\
tfd:        6 events:       19 data:                6  pos:0 ino:40 sdev:d\n";
        let f = parse_fdinfo(epoll).unwrap();
        assert_eq!(f.flags, 0o2000002);
        assert_eq!(f.extra.len(), 2);
        assert_eq!(f.extra[0].0, "tfd");
        assert!(f.extra[0].1.starts_with("5 events:"));

        let ino = "pos:\t0\nflags:\t00\nmnt_id:\t15\ninotify wd:1 ino:2 sdev:3 mask:fff\nodd\n";
        let f = parse_fdinfo(ino).unwrap();
        assert_eq!(f.ino, 0);
        assert_eq!(
            f.extra[0],
            ("inotify wd".into(), "1 ino:2 sdev:3 mask:fff".into())
        );
        assert_eq!(f.extra[1], ("odd".into(), String::new()));
    }

    #[test]
    fn fdinfo_errors() {
        assert!(parse_fdinfo("pos:\t0\nflags:\t09\nmnt_id:\t1\n").is_err());
        assert!(parse_fdinfo("pos:\t0\nmnt_id:\t1\n").is_err());
        let e = parse_fdinfo("pos:\tx\nflags:\t0\nmnt_id:\t1\n").unwrap_err();
        assert_eq!(line_of(&e), 1);
    }

    const LIMITS: &str = "\
Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max file size             unlimited            unlimited            bytes     
Max data size             unlimited            unlimited            bytes     
Max stack size            8388608              unlimited            bytes     
Max core file size        0                    unlimited            bytes     
Max resident set          unlimited            unlimited            bytes     
Max processes             96365                96365                processes 
Max open files            20000                20000                files     
Max locked memory         8388608              8388608              bytes     
Max address space         unlimited            unlimited            bytes     
Max file locks            unlimited            unlimited            locks     
Max pending signals       96365                96365                signals   
Max msgqueue size         819200               819200               bytes     
Max nice priority         0                    0                    
Max realtime priority     0                    0                    
Max realtime timeout      unlimited            unlimited            us        
";

    #[test]
    fn limits_table() {
        let l = parse_limits(LIMITS).unwrap();
        assert_eq!(l.len(), 16);
        for (i, lim) in l.iter().enumerate() {
            assert_eq!(lim.resource as usize, i);
        }
        assert_eq!(l[3].soft, 8388608);
        assert_eq!(l[3].hard, u64::MAX);
        assert_eq!((l[7].soft, l[7].hard), (20000, 20000));
        assert_eq!((l[13].soft, l[13].hard), (0, 0));
        // the table agrees with libc's RLIMIT_* numbers
        let libc_numbers = [
            i64::from(libc::RLIMIT_CPU),
            i64::from(libc::RLIMIT_FSIZE),
            i64::from(libc::RLIMIT_DATA),
            i64::from(libc::RLIMIT_STACK),
            i64::from(libc::RLIMIT_CORE),
            i64::from(libc::RLIMIT_RSS),
            i64::from(libc::RLIMIT_NPROC),
            i64::from(libc::RLIMIT_NOFILE),
            i64::from(libc::RLIMIT_MEMLOCK),
            i64::from(libc::RLIMIT_AS),
            i64::from(libc::RLIMIT_LOCKS),
            i64::from(libc::RLIMIT_SIGPENDING),
            i64::from(libc::RLIMIT_MSGQUEUE),
            i64::from(libc::RLIMIT_NICE),
            i64::from(libc::RLIMIT_RTPRIO),
            i64::from(libc::RLIMIT_RTTIME),
        ];
        for ((_, n), want) in LIMIT_ROWS.iter().zip(libc_numbers) {
            assert_eq!(i64::from(*n), want);
        }
    }

    #[test]
    fn limits_errors() {
        assert!(parse_limits("Max cpu time  x  unlimited  seconds\n").is_err());
        assert!(parse_limits("Max cpu time  unlimited\n").is_err());
        let e = parse_limits(&format!("{LIMITS}Max brain size  1  2  neurons\n")).unwrap_err();
        assert_eq!(line_of(&e), 18);
        assert!(parse_limits("Max cpu timer 1 2\n").is_err());
    }

    #[test]
    fn auxv_words() {
        let mut bytes = Vec::new();
        for w in [33u64, 0x7fff0000, 6, 4096, 0, 0, 99, 99] {
            bytes.extend_from_slice(&w.to_ne_bytes());
        }
        assert_eq!(
            parse_auxv(&bytes).unwrap(),
            vec![33, 0x7fff0000, 6, 4096, 0, 0]
        );
        assert!(parse_auxv(&bytes[..8 * 4]).is_err());
        assert!(parse_auxv(&bytes[..8 * 5]).is_err());
        assert!(parse_auxv(&[]).is_err());
    }

    #[test]
    fn small_files() {
        assert_eq!(parse_personality("00000000\n").unwrap(), 0);
        assert_eq!(parse_personality("00400000\n").unwrap(), 0x400000);
        assert!(parse_personality("zz\n").is_err());
        assert_eq!(parse_oom_score_adj("-1000\n").unwrap(), -1000);
        assert!(parse_oom_score_adj("\n").is_err());
        assert_eq!(parse_children("12 13 400 ").unwrap(), vec![12, 13, 400]);
        assert!(parse_children("").unwrap().is_empty());
        assert!(parse_children("12 x").is_err());
    }

    // --- readers, against the test process itself ---

    fn me() -> i32 {
        i32::try_from(std::process::id()).unwrap()
    }

    #[test]
    fn read_self() {
        let pid = me();
        let st = stat(pid).unwrap();
        assert_eq!(st.pid, pid);
        assert!(st.start_code > 0 && st.start_code < st.end_code);
        assert!(st.arg_start < st.arg_end && st.env_start <= st.env_end);
        let tst = task_stat(pid, pid).unwrap();
        assert_eq!(tst.pid, pid);

        let s = status(pid).unwrap();
        assert_eq!((s.pid, s.tgid), (pid, pid));
        assert_eq!(s.ppid, st.ppid);
        assert!(s.umask.is_some());
        assert!(s.threads >= 1);
        assert_eq!(task_status(pid, pid).unwrap().pid, pid);
        assert_eq!(s.ns_pid.first(), Some(&pid));

        let m = maps(pid).unwrap();
        assert!(m.iter().any(|e| e.path == "[stack]"));
        assert!(m.iter().any(|e| e.path == "[vdso]" && e.is_special()));
        let sm = smaps(pid).unwrap();
        assert!(sm.iter().any(|e| e.rss_kb > 0 && !e.vm_flags.is_empty()));

        let fd = fds(pid).unwrap();
        assert!(fd.windows(2).all(|w| w[0] < w[1]));
        let t = threads(pid).unwrap();
        assert!(t.contains(&pid));
        assert!(t.windows(2).all(|w| w[0] < w[1]));
        children(pid, pid).unwrap();
        assert!(link(pid, "exe").unwrap().starts_with('/'));
        assert!(link(pid, "cwd").unwrap().starts_with('/'));
        assert_eq!(link(pid, "root").unwrap(), "/");
        assert_eq!(comm(pid, pid).unwrap(), st.comm.as_bytes());

        let l = limits(pid).unwrap();
        assert_eq!(l.len(), 16);
        let a = auxv(pid).unwrap();
        assert!(a.len() >= 2 && a.len() & 1 == 0);
        assert_eq!(&a[a.len() - 2..], &[0, 0]);
        assert!(a.chunks(2).any(|p| p[0] == 6 && p[1] == page_size())); // AT_PAGESZ
        personality(pid).unwrap();
        oom_score_adj(pid).unwrap();
        assert!(pid_exists(pid));
        assert!(!pid_exists(0) && !pid_exists(-5));
        assert!(!kernel_release().is_empty());
    }

    #[test]
    fn read_fd_of_self() {
        let f = fs::File::open("/proc/self/status").unwrap();
        use std::os::fd::AsRawFd;
        let fd = f.as_raw_fd();
        let info = fdinfo(me(), fd).unwrap();
        assert_eq!(info.pos, 0);
        assert_eq!(info.flags & 0o3, 0); // O_RDONLY
        assert!(info.flags & 0o2000000 != 0); // O_CLOEXEC, set by std
        assert!(info.mnt_id > 0);
        assert!(fds(me()).unwrap().contains(&fd));
        assert!(fd_target(me(), fd).unwrap().ends_with("/status"));
    }

    #[test]
    fn read_errors_name_the_file() {
        // pid_max is at most 4194304, so this pid never exists.
        let e = stat(99_999_999).unwrap_err();
        assert!(e.is_gone());
        assert_eq!(e.path(), "/proc/99999999/stat");
        assert!(e.to_string().contains("/proc/99999999/stat"));
        assert!(maps(99_999_999).unwrap_err().is_gone());
        assert!(!pid_exists(99_999_999));
    }

    #[test]
    fn pagemap_self() {
        let page = page_size();
        let buf = vec![7u8; usize::try_from(page * 4).unwrap()];
        let addr = buf.as_ptr() as u64;
        let first = addr.div_ceil(page) * page;
        let mut pm = Pagemap::open(me()).unwrap();
        let mut out = vec![1, 2, 3];
        pm.read(first, 2, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        for e in &out {
            assert!(e & PM_PRESENT != 0, "{e:#x}");
            assert!(e & PM_FILE == 0);
        }
        pm.read(first, 0, &mut out).unwrap();
        assert!(out.is_empty());
        assert!(pm.read(first + 1, 1, &mut out).is_err());
        // beyond the end of the user address space
        let e = pm.read(0xffff_ffff_ffff_f000, 2, &mut out).unwrap_err();
        assert!(e.to_string().contains("pagemap"), "{e}");
    }

    #[test]
    fn real_thread_names() {
        let pid = me();
        for name in ["x) (y z", "new\nline\\x"] {
            let tid = std::thread::Builder::new()
                .name(name.to_string())
                .spawn(|| {
                    // SAFETY: gettid has no preconditions.
                    let tid = unsafe { libc::gettid() };
                    let st = task_stat(me(), tid).unwrap();
                    let status = task_status(me(), tid).unwrap();
                    (tid, st, status)
                })
                .unwrap()
                .join()
                .unwrap();
            let (tid, st, status) = tid;
            assert_eq!(st.pid, tid);
            assert_eq!(st.comm, name);
            assert_eq!(st.state, 'R');
            assert_eq!(status.name, name);
            assert_eq!((status.pid, status.tgid), (tid, pid));
        }
    }

    #[test]
    fn real_deleted_mapping_with_spaces() {
        use std::os::fd::AsRawFd;
        let dir = std::env::temp_dir().join(format!("stasis procfs test {}", me()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lib (x) (deleted).so");
        fs::write(&path, vec![1u8; 8192]).unwrap();
        let file = fs::File::open(&path).unwrap();
        // SAFETY: a fresh private read-only mapping of a file we own; unmapped below and
        // never dereferenced.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                4096,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED);
        let before = maps(me()).unwrap();
        fs::remove_file(&path).unwrap();
        fs::remove_dir(&dir).unwrap();
        let after = maps(me()).unwrap();
        // SAFETY: unmapping exactly the mapping created above.
        unsafe { libc::munmap(addr, 8192) };
        let start = addr as u64;
        let b = before.iter().find(|e| e.start == start).unwrap();
        assert_eq!(b.path, path.to_str().unwrap());
        assert!(!b.deleted);
        assert_eq!((b.offset, b.size()), (4096, 8192));
        let a = after.iter().find(|e| e.start == start).unwrap();
        assert_eq!(a.path, path.to_str().unwrap());
        assert!(a.deleted);
        assert!(!a.is_special());
    }

    /// Truncated and corrupted inputs give errors or values, never panics.
    #[test]
    fn mutations_never_panic() {
        let samples = [
            STAT_SELF,
            STATUS,
            MAPS,
            SMAPS,
            LIMITS,
            "pos:\t1\nflags:\t02\nmnt_id:\t3\n",
        ];
        let subs = ["", " ", "\n", ":", "(", ")", "-", "x", "9", "é", "\\", "\t"];
        let run = |t: &str| {
            let _ = parse_stat(t);
            let _ = parse_status(t);
            let _ = parse_maps(t);
            let _ = parse_smaps(t);
            let _ = parse_fdinfo(t);
            let _ = parse_limits(t);
            let _ = parse_children(t);
            let _ = parse_auxv(t.as_bytes());
        };
        for sample in samples {
            let bounds: Vec<usize> = (0..=sample.len())
                .filter(|&i| sample.is_char_boundary(i))
                .collect();
            for (n, &i) in bounds.iter().enumerate() {
                run(&sample[..i]);
                let next = bounds.get(n + 1).copied().unwrap_or(i);
                for sub in subs {
                    let mut t = String::with_capacity(sample.len() + 4);
                    t.push_str(&sample[..i]);
                    t.push_str(sub);
                    t.push_str(&sample[next..]);
                    run(&t);
                }
            }
        }
    }
}
