//! The test harness shared by the integration tests: builds the victim programs of
//! `testprogs/`, runs them, and drives the real `stasis` binary through dump and
//! restore cycles. See `testprogs/README.md` for the victim protocol.
//!
//! Every wait has a timeout; a failing test panics with the victim's output, the tool's
//! stderr and the tail of its log, and never leaves processes behind (a `Session` kills
//! what it started when dropped). Scratch directories are removed unless the
//! environment has `STASIS_TEST_KEEP=1` (then their path is printed on failure).

#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant, SystemTime};

pub mod tree;

/// How long a victim may take to print READY.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `stasis dump` may take.
pub const DUMP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a restored process may take to finish after the go file (or a restore to fail).
pub const RESTORE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a process may take to disappear after being killed.
pub const GONE_TIMEOUT: Duration = Duration::from_secs(10);

// ---- paths and building --------------------------------------------------------------

/// The `stasis` binary cargo built for these tests.
pub fn stasis_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stasis"))
}

/// The workspace root (where `testprogs/` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn testprogs_dir() -> PathBuf {
    workspace_root().join("testprogs")
}

/// `<target dir>/testprogs`, where compiled victims go.
pub fn victim_build_dir() -> PathBuf {
    let bin = stasis_bin();
    let profile_dir = bin.parent().expect("binary has a parent");
    let target = profile_dir.parent().unwrap_or(profile_dir);
    target.join("testprogs")
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

fn mtime(p: &Path) -> Option<SystemTime> {
    fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Builds `out` from `sources` with `cmd` unless `out` is newer than every source.
/// Compiles to a temporary name and renames, so concurrent test binaries never see a
/// half-written executable.
fn build_if_stale(out: &Path, sources: &[PathBuf], mut cmd: Command) -> PathBuf {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let newest_src = sources.iter().filter_map(|s| mtime(s)).max();
    if let (Some(built), Some(src)) = (mtime(out), newest_src) {
        if built >= src {
            return out.to_path_buf();
        }
    }
    for s in sources {
        assert!(s.exists(), "victim source {} is missing", s.display());
    }
    fs::create_dir_all(out.parent().unwrap()).expect("create victim build dir");
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    cmd.arg("-o").arg(&tmp);
    let res = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run the compiler for {}: {e}", out.display()));
    if !res.status.success() {
        let _ = fs::remove_file(&tmp);
        panic!(
            "building victim {} failed ({:?}):\n{}{}",
            out.display(),
            cmd,
            String::from_utf8_lossy(&res.stdout),
            String::from_utf8_lossy(&res.stderr)
        );
    }
    fs::rename(&tmp, out).expect("rename built victim");
    out.to_path_buf()
}

/// Compiles `testprogs/NAME.c` with the system C compiler.
pub fn build_c(name: &str, extra_flags: &[&str]) -> PathBuf {
    let src = testprogs_dir().join(format!("{name}.c"));
    let header = testprogs_dir().join("victim.h");
    let out = victim_build_dir().join(name);
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let mut cmd = Command::new(cc);
    cmd.args(["-O1", "-g", "-Wall"]).args(extra_flags).arg(&src);
    build_if_stale(&out, &[src, header], cmd)
}

/// Compiles the single-file Rust program `testprogs/NAME.rs` (std only).
pub fn build_rust(name: &str) -> PathBuf {
    let src = testprogs_dir().join(format!("{name}.rs"));
    let out = victim_build_dir().join(name);
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut cmd = Command::new(rustc);
    cmd.args(["-O", "--edition", "2021"]).arg(&src);
    build_if_stale(&out, &[src], cmd)
}

/// The python3 to run script victims with (Debian's, if there is one).
pub fn python3() -> PathBuf {
    let sys = Path::new("/usr/bin/python3");
    if sys.exists() {
        sys.to_path_buf()
    } else {
        PathBuf::from("python3")
    }
}

// ---- process-level setup ---------------------------------------------------------------

static SUBREAPER: Once = Once::new();

/// Makes the test process a child subreaper, so that processes orphaned by a restore
/// tool (e.g. `restore -d`, or a killed tool) come to us to be reaped.
pub fn ensure_subreaper() {
    SUBREAPER.call_once(|| {
        if let Err(e) = stasis_sys::process::set_child_subreaper() {
            panic!("PR_SET_CHILD_SUBREAPER: {e}");
        }
    });
}

/// Panics unless we are root: the tool and several victims need it.
pub fn require_root() {
    let euid = stasis_sys::process::euid();
    assert_eq!(
        euid, 0,
        "these tests must run as root (CI runs them as root)"
    );
}

// ---- scratch directories -----------------------------------------------------------------

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory for one test: victim output, go file, victim files, images, logs.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let tag: String = tag
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let dir =
            std::env::temp_dir().join(format!("stasis-test-{}-{n}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("tmp")).expect("create scratch dir");
        Scratch { dir }
    }
    /// The victim's stdout and stderr.
    pub fn out(&self) -> PathBuf {
        self.dir.join("victim.out")
    }
    /// The go file.
    pub fn go(&self) -> PathBuf {
        self.dir.join("go")
    }
    /// `$STASIS_TMP` of the victim: where it keeps its files.
    pub fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }
    /// An image directory (not created: dump must create it).
    pub fn images(&self, n: usize) -> PathBuf {
        self.dir.join(format!("images-{n}"))
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    pub fn output(&self) -> String {
        read_lossy(&self.out())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("STASIS_TEST_KEEP").is_some() {
            if std::thread::panicking() {
                eprintln!("(kept scratch directory {})", self.dir.display());
            }
            return;
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

pub fn read_lossy(p: &Path) -> String {
    match fs::read(p) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => format!("<cannot read {}: {e}>", p.display()),
    }
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut s = String::new();
    if start > 0 {
        let _ = writeln!(s, "[... {start} lines before ...]");
    }
    for l in &lines[start..] {
        let _ = writeln!(s, "{l}");
    }
    s
}

// ---- /proc helpers -------------------------------------------------------------------------

pub fn proc_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A field of /proc/PID/status.
pub fn status_field(pid: i32, key: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}

/// The state letter of /proc/PID/stat (R, S, D, T, t, Z...).
pub fn proc_state(pid: i32) -> Option<char> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    after.chars().next()
}

pub fn proc_ppid(pid: i32) -> Option<i32> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    after.split(' ').nth(1)?.parse().ok()
}

pub fn proc_comm(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end_matches('\n').to_string())
}

fn describe_proc(pid: i32) -> String {
    if !proc_exists(pid) {
        return format!("pid {pid} does not exist");
    }
    format!(
        "pid {pid}: comm {:?}, state {:?}, ppid {:?}, TracerPid {:?}, wchan {:?}",
        proc_comm(pid),
        proc_state(pid),
        proc_ppid(pid),
        status_field(pid, "TracerPid"),
        fs::read_to_string(format!("/proc/{pid}/wchan")).ok()
    )
}

fn kill(pid: i32, sig: i32) {
    let _ = stasis_sys::process::kill(pid, sig);
}

/// Reaps pid if it is a zombie child of ours (e.g. reparented to us, the subreaper).
fn reap_nohang(pid: i32) -> Option<ExitStatus> {
    stasis_sys::process::try_wait(pid)
        .ok()
        .flatten()
        .map(ExitStatus::from_raw)
}

/// Waits until /proc/PID is gone (reaping it if it is our child), or panics.
pub fn wait_gone(pid: i32, what: &str) {
    let start = Instant::now();
    while proc_exists(pid) {
        reap_nohang(pid);
        if start.elapsed() > GONE_TIMEOUT {
            panic!(
                "{what}: pid {pid} still exists {GONE_TIMEOUT:?} after it should be gone: {}",
                describe_proc(pid)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Exit status as a shell would show it: the code, or 128+N when killed by signal N.
pub fn status_code(st: ExitStatus) -> i32 {
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}

// ---- terminals ----------------------------------------------------------------------------

/// A pseudo-terminal for programs that must run on a terminal (--shell-job). A thread
/// copies everything written to it into a file (without the '\r' the line discipline
/// adds), so the usual output checks work; the slave is handed out as stdio.
pub struct Pty {
    pub slave_path: PathBuf,
    slave: OwnedFd,
}

impl Pty {
    /// Opens a new pseudo-terminal whose output is appended to `copy_to`.
    pub fn open(copy_to: &Path) -> Pty {
        let (master, slave_path) = stasis_sys::pty::open_pty()
            .unwrap_or_else(|e| panic!("setting up a pseudo-terminal: {e}"));
        let slave: OwnedFd = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&slave_path)
            .unwrap_or_else(|e| panic!("open {}: {e}", slave_path.display()))
            .into();
        let out = copy_to.to_path_buf();
        std::thread::spawn(move || {
            let mut master = fs::File::from(master);
            let mut buf = [0u8; 4096];
            loop {
                // ends with EIO once no one holds the slave any more
                let n = match std::io::Read::read(&mut master, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let data: Vec<u8> = buf[..n].iter().copied().filter(|&b| b != b'\r').collect();
                if let Ok(mut f) = fs::OpenOptions::new().append(true).create(true).open(&out) {
                    let _ = f.write_all(&data);
                }
            }
        });
        Pty { slave_path, slave }
    }

    /// The slave, for a child's stdin, stdout or stderr.
    pub fn stdio(&self) -> Stdio {
        Stdio::from(self.slave.try_clone().expect("dup pty slave"))
    }
}

// ---- running the tool ------------------------------------------------------------------------

/// What one finished `stasis` command left.
#[derive(Debug)]
pub struct ToolRun {
    pub what: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub log: String,
}

impl ToolRun {
    pub fn code(&self) -> i32 {
        status_code(self.status)
    }
    pub fn report(&self) -> String {
        format!(
            "--- {} exited with {} ---\n--- stdout ---\n{}--- stderr ---\n{}--- log (tail) ---\n{}",
            self.what,
            self.code(),
            tail_lines(&self.stdout, 40),
            tail_lines(&self.stderr, 60),
            tail_lines(&self.log, 80)
        )
    }
    /// Panics unless stderr has no sign of a Rust panic.
    pub fn assert_no_panic(&self) {
        assert!(
            self.code() != 101 && !self.stderr.contains("panicked"),
            "stasis panicked:\n{}",
            self.report()
        );
    }
}

/// A `stasis` process in flight; its stdout/stderr go to files (never pipes, so that
/// nothing can block on them).
pub struct Tool {
    pub what: String,
    pub child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    log: Option<PathBuf>,
    /// How it was started, to start it again (`again`): directory, tag, arguments.
    start: (PathBuf, String, Vec<OsString>),
}

impl Tool {
    /// Starts `stasis ARGS` in `dir`, with output files named after `tag` in `dir`.
    pub fn spawn(dir: &Path, tag: &str, args: &[OsString], log: Option<PathBuf>) -> Tool {
        Tool::spawn_with_stdin(dir, tag, args, log, Stdio::null())
    }

    /// Like `spawn`, with the given stdin (a terminal for `restore --shell-job`).
    pub fn spawn_with_stdin(
        dir: &Path,
        tag: &str,
        args: &[OsString],
        log: Option<PathBuf>,
        stdin: Stdio,
    ) -> Tool {
        let stdout = dir.join(format!("{tag}.stdout"));
        let stderr = dir.join(format!("{tag}.stderr"));
        let mut cmd = Command::new(stasis_bin());
        cmd.args(args)
            .current_dir(dir)
            .stdin(stdin)
            .stdout(fs::File::create(&stdout).expect("create tool stdout"))
            .stderr(fs::File::create(&stderr).expect("create tool stderr"));
        if let Some(l) = &log {
            cmd.arg("-o").arg(l).arg("-v4");
        }
        let what = format!(
            "stasis {}",
            args.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", stasis_bin().display()));
        Tool {
            what,
            child,
            stdout,
            stderr,
            log,
            start: (dir.to_path_buf(), tag.to_string(), args.to_vec()),
        }
    }

    /// The same command started again (stdin null), with output files of its own.
    pub fn again(&self, n: usize) -> Tool {
        let (dir, tag, args) = &self.start;
        let tag = format!("{tag}-again-{n}");
        let log = self.log.as_ref().map(|_| dir.join(format!("{tag}.log")));
        Tool::spawn(dir, &tag, args, log)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn try_finish(&mut self) -> Option<ToolRun> {
        match self.child.try_wait() {
            Ok(Some(st)) => Some(self.collect(st)),
            _ => None,
        }
    }

    fn collect(&self, status: ExitStatus) -> ToolRun {
        ToolRun {
            what: self.what.clone(),
            status,
            stdout: read_lossy(&self.stdout),
            stderr: read_lossy(&self.stderr),
            log: self.log.as_deref().map(read_lossy).unwrap_or_default(),
        }
    }

    /// Waits for the tool to exit; on timeout kills it and returns None.
    pub fn wait(&mut self, timeout: Duration) -> Option<ToolRun> {
        let st = wait_child(&mut self.child, timeout)?;
        Some(self.collect(st))
    }

    /// What the tool has written so far (for messages about a tool still running).
    pub fn partial_report(&self) -> String {
        format!(
            "--- {} (still running, pid {}) ---\n--- stderr so far ---\n{}--- log so far (tail) ---\n{}",
            self.what,
            self.pid(),
            tail_lines(&read_lossy(&self.stderr), 40),
            tail_lines(&self.log.as_deref().map(read_lossy).unwrap_or_default(), 60)
        )
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = wait_child(&mut self.child, GONE_TIMEOUT);
    }
}

/// Runs `stasis ARGS` to completion in `dir` (no log file), with a timeout.
pub fn run_stasis<S: AsRef<OsStr>>(
    dir: &Path,
    tag: &str,
    args: &[S],
    timeout: Duration,
) -> ToolRun {
    let args: Vec<OsString> = args.iter().map(|a| a.as_ref().to_os_string()).collect();
    let mut t = Tool::spawn(dir, tag, &args, None);
    match t.wait(timeout) {
        Some(r) => r,
        None => {
            let rep = t.partial_report();
            t.kill();
            panic!("{} did not finish within {timeout:?}\n{rep}", t.what);
        }
    }
}

/// A PID no process has now (counting down from pid_max).
pub fn unused_pid() -> i32 {
    let max: i32 = fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32768);
    (1000..max)
        .rev()
        .find(|p| !proc_exists(*p))
        .expect("no free pid")
}

/// True if `text` contains any of `words`, ignoring case.
pub fn mentions(text: &str, words: &[&str]) -> bool {
    let t = text.to_lowercase();
    words.iter().any(|w| t.contains(&w.to_lowercase()))
}

/// Waits for `pid` (a child of ours, e.g. left by `restore -d`) to exit and reaps it.
pub fn wait_reaped(pid: i32, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(st) = reap_nohang(pid) {
            return Some(st);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---- victims --------------------------------------------------------------------------------

type ReadyFn = dyn Fn(&Session) -> bool + Send + Sync;
type GoFn = dyn Fn(&Session) + Send + Sync;
type SetupFn = dyn Fn(&Scratch) + Send + Sync;

/// How a victim is run and what counts as success.
#[derive(Clone)]
pub struct Victim {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Sent to the victim every 50 ms once the go file exists (for victims in pause()).
    pub wake_signal: Option<i32>,
    /// Ready test; default: the output has a line "READY".
    pub ready: Option<Arc<ReadyFn>>,
    /// Extra action after the go file is created (real programs).
    pub on_go: Option<Arc<GoFn>>,
    /// Prepares the scratch directory before the victim starts (input files...).
    pub before_start: Option<Arc<SetupFn>>,
    /// Expected exit code; with `expect_pass` the output must also end with PASS.
    pub exit_code: i32,
    pub expect_pass: bool,
    pub ready_timeout: Duration,
    /// Run on a pseudo-terminal (stdin, stdout, stderr) instead of /dev/null and a file.
    pub terminal: bool,
}

impl Victim {
    pub fn program(name: &str, program: impl Into<PathBuf>) -> Victim {
        Victim {
            name: name.to_string(),
            program: program.into(),
            args: Vec::new(),
            wake_signal: None,
            ready: None,
            on_go: None,
            before_start: None,
            exit_code: 0,
            expect_pass: true,
            ready_timeout: READY_TIMEOUT,
            terminal: false,
        }
    }
    /// `testprogs/NAME.c`, compiled.
    pub fn c(name: &str) -> Victim {
        Victim::program(name, build_c(name, &[]))
    }
    /// `testprogs/NAME.rs`, compiled.
    pub fn rust(name: &str) -> Victim {
        Victim::program(name, build_rust(name))
    }
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Victim {
        self.args.push(a.as_ref().to_os_string());
        self
    }
    pub fn args_of<I, S>(mut self, args: I) -> Victim
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }
    /// Also the name shown in messages and scratch directories.
    pub fn named(mut self, name: &str) -> Victim {
        self.name = name.to_string();
        self
    }
    pub fn wake_signal(mut self, sig: i32) -> Victim {
        self.wake_signal = Some(sig);
        self
    }
    pub fn ready_when(mut self, f: impl Fn(&Session) -> bool + Send + Sync + 'static) -> Victim {
        self.ready = Some(Arc::new(f));
        self
    }
    pub fn on_go(mut self, f: impl Fn(&Session) + Send + Sync + 'static) -> Victim {
        self.on_go = Some(Arc::new(f));
        self
    }
    pub fn before_start(mut self, f: impl Fn(&Scratch) + Send + Sync + 'static) -> Victim {
        self.before_start = Some(Arc::new(f));
        self
    }
    /// A program that does not follow the PASS protocol: only its exit code counts.
    pub fn expect_exit(mut self, code: i32) -> Victim {
        self.exit_code = code;
        self.expect_pass = false;
        self
    }
    /// Run it with stdin, stdout and stderr on a new pseudo-terminal.
    pub fn on_terminal(mut self) -> Victim {
        self.terminal = true;
        self
    }
    pub fn ready_timeout(mut self, d: Duration) -> Victim {
        self.ready_timeout = d;
        self
    }
}

/// A copy of the victim's files (its `$STASIS_TMP` and its output file) at dump time,
/// to put back before restoring an image a second time (after the original went on
/// and changed them). Files are rewritten in place, so their inodes stay the same.
pub struct FileSnapshot {
    files: Vec<(PathBuf, Vec<u8>)>,
}

fn collect_files(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            collect_files(&p, out);
        } else if ft.is_file() {
            if let Ok(data) = fs::read(&p) {
                out.push((p, data));
            }
        }
    }
}

impl FileSnapshot {
    pub fn take(s: &Scratch, extra: &[PathBuf]) -> FileSnapshot {
        let mut files = Vec::new();
        collect_files(&s.tmp(), &mut files);
        for p in std::iter::once(s.out()).chain(extra.iter().cloned()) {
            if let Ok(d) = fs::read(&p) {
                files.push((p, d));
            }
        }
        FileSnapshot { files }
    }
    pub fn rewind(&self) {
        for (p, data) in &self.files {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .open(p)
                .unwrap_or_else(|e| panic!("rewind {}: {e}", p.display()));
            f.set_len(data.len() as u64).expect("truncate");
            f.seek(SeekFrom::Start(0)).expect("seek");
            f.write_all(data).expect("rewrite");
        }
    }
}

/// What a failing restore may do with the victim's PID.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PidRule {
    /// The original process still has it (restore must refuse: "in use").
    InUse,
    /// The image is refused before anything is created: the PID never appears.
    NeverAppears,
    /// The process may have been created, but must be gone when the tool exits.
    NothingLeft,
}

/// One victim under test and everything started for it. Dropping it kills the victim
/// (original or restored) and any tool still running.
pub struct Session {
    pub victim: Victim,
    pub scratch: Scratch,
    pub pid: i32,
    /// The original process, while it is ours.
    original: Option<Child>,
    /// Its comm at READY (to recognise the restored process).
    pub comm: String,
    /// Tools still running (restores waiting for the restored process).
    tools: Vec<Tool>,
    /// Whether `pid` may be a restored victim that is ours to kill on drop.
    restored: bool,
    pub started: Instant,
    /// Pseudo-terminals made for the victim and for restores (kept open until the end).
    pub ptys: Vec<Pty>,
}

impl Session {
    /// Starts the victim and waits for READY.
    pub fn start(v: &Victim) -> Session {
        require_root();
        ensure_subreaper();
        let scratch = Scratch::new(&v.name);
        if let Some(f) = &v.before_start {
            f(&scratch);
        }
        let out = fs::File::create(scratch.out()).expect("create output file");
        let mut ptys = Vec::new();
        let (stdin, stdout, stderr) = if v.terminal {
            let pty = Pty::open(&scratch.out());
            let io = (pty.stdio(), pty.stdio(), pty.stdio());
            ptys.push(pty);
            io
        } else {
            let err = out.try_clone().expect("dup output file");
            (Stdio::null(), Stdio::from(out), Stdio::from(err))
        };
        let mut cmd = Command::new(&v.program);
        // descriptors inherited from whoever runs the tests (a CI runner's pipes, a shell's
        // job-control fds) are not part of the victim
        stasis_sys::process::close_fds_above_2_on_exec(&mut cmd);
        let child = cmd
            .args(&v.args)
            .env("STASIS_GO", scratch.go())
            .env("STASIS_TMP", scratch.tmp())
            .current_dir(&scratch.dir)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start victim {}: {e}", v.program.display()));
        let mut s = Session {
            victim: v.clone(),
            scratch,
            pid: child.id() as i32,
            original: Some(child),
            comm: String::new(),
            tools: Vec::new(),
            restored: false,
            started: Instant::now(),
            ptys,
        };
        s.wait_ready();
        s
    }

    pub fn output(&self) -> String {
        self.scratch.output()
    }

    fn context(&self) -> String {
        format!(
            "[{}] victim {} (pid {})\n--- victim output ({}) ---\n{}--- process ---\n{}\n",
            self.victim.name,
            self.victim.program.display(),
            self.pid,
            self.scratch.out().display(),
            tail_lines(&self.output(), 60),
            describe_proc(self.pid)
        )
    }

    /// Panics with everything known about the run.
    pub fn fail(&mut self, msg: &str) -> ! {
        let mut text = format!("{msg}\n{}", self.context());
        for t in &self.tools {
            text.push_str(&t.partial_report());
        }
        self.cleanup();
        panic!("{text}");
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            let ready = match &self.victim.ready {
                Some(f) => f.clone()(self),
                None => self.output().lines().any(|l| l == "READY"),
            };
            if ready {
                break;
            }
            if let Some(c) = self.original.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.original = None;
                    self.fail(&format!(
                        "victim exited before it was ready, with {}",
                        status_code(st)
                    ));
                }
            }
            if start.elapsed() > self.victim.ready_timeout {
                let t = self.victim.ready_timeout;
                self.fail(&format!("victim not ready within {t:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.comm = proc_comm(self.pid).unwrap_or_default();
    }

    fn log_path(&self, tag: &str) -> PathBuf {
        self.scratch.path(&format!("{tag}.log"))
    }

    /// Runs `stasis dump -t PID -D images EXTRA` and returns what it did.
    pub fn dump(&mut self, images: &Path, extra: &[&str]) -> ToolRun {
        let tag = format!(
            "dump-{}",
            images.file_name().unwrap_or_default().to_string_lossy()
        );
        let mut args: Vec<OsString> = vec![
            "dump".into(),
            "-t".into(),
            self.pid.to_string().into(),
            "-D".into(),
            images.into(),
        ];
        args.extend(extra.iter().map(OsString::from));
        let mut t = Tool::spawn(&self.scratch.dir, &tag, &args, Some(self.log_path(&tag)));
        match t.wait(DUMP_TIMEOUT) {
            Some(r) => r,
            None => {
                let rep = t.partial_report();
                t.kill();
                self.fail(&format!(
                    "stasis dump did not finish within {DUMP_TIMEOUT:?}\n{rep}"
                ));
            }
        }
    }

    /// Dumps and requires success.
    pub fn dump_ok(&mut self, images: &Path, extra: &[&str]) -> ToolRun {
        let r = self.dump(images, extra);
        if r.code() != 0 {
            let rep = r.report();
            self.fail(&format!("stasis dump failed (exit {}):\n{rep}", r.code()));
        }
        r.assert_no_panic();
        r
    }

    /// After a dump without --leave-running: the process must die; reap it and wait
    /// until its PID is free.
    pub fn reap_killed(&mut self) {
        if let Some(mut c) = self.original.take() {
            match wait_child(&mut c, GONE_TIMEOUT) {
                Some(st) => {
                    if st.signal().is_none() {
                        self.original = None;
                        self.fail(&format!(
                            "after the dump the victim exited by itself with {} instead of being killed",
                            status_code(st)
                        ));
                    }
                }
                None => {
                    self.original = Some(c);
                    self.fail(&format!(
                        "stasis dump exited 0 but the victim is still alive {GONE_TIMEOUT:?} later (dump must kill it)"
                    ));
                }
            }
        } else {
            // a restored process, child of a restore tool: the tool reaps it
        }
        wait_gone(self.pid, &self.victim.name);
    }

    /// Starts `stasis restore -D images EXTRA` (not detached) and returns its index.
    pub fn spawn_restore(&mut self, images: &Path, extra: &[&str]) -> usize {
        let tag = format!(
            "restore-{}-{}",
            images.file_name().unwrap_or_default().to_string_lossy(),
            self.tools.len()
        );
        let mut args: Vec<OsString> = vec!["restore".into(), "-D".into(), images.into()];
        args.extend(extra.iter().map(OsString::from));
        let t = Tool::spawn(&self.scratch.dir, &tag, &args, Some(self.log_path(&tag)));
        self.tools.push(t);
        self.restored = true;
        self.tools.len() - 1
    }

    /// Starts `stasis restore -D images EXTRA` with a new pseudo-terminal as its stdin
    /// (the "current terminal" for --shell-job); what is written to that terminal goes
    /// to the victim's output file too. Returns the tool's index and the terminal.
    pub fn spawn_restore_on_terminal(&mut self, images: &Path, extra: &[&str]) -> (usize, PathBuf) {
        let pty = Pty::open(&self.scratch.out());
        let path = pty.slave_path.clone();
        let tag = format!("restore-tty-{}", self.tools.len());
        let mut args: Vec<OsString> = vec!["restore".into(), "-D".into(), images.into()];
        args.extend(extra.iter().map(OsString::from));
        let t = Tool::spawn_with_stdin(
            &self.scratch.dir,
            &tag,
            &args,
            Some(self.log_path(&tag)),
            pty.stdio(),
        );
        self.ptys.push(pty);
        self.tools.push(t);
        self.restored = true;
        (self.tools.len() - 1, path)
    }

    /// Waits until the restored process runs on its own: PID present, not traced, not
    /// stopped, with the victim's comm, steadily for 100 ms. Returns `Some` only when
    /// the restore tool already exited (the restored program finished by itself), which
    /// is accepted for programs that do not wait for the go file.
    ///
    /// A restore that fails because a PID or TID of the image is another process's is
    /// started again, twice at most: on a busy machine PIDs wrap around, and a process of
    /// another test can take a thread's TID between the original's end and the restore.
    pub fn wait_restored(&mut self, tool: usize) -> Option<ToolRun> {
        let start = Instant::now();
        let mut steady_since: Option<Instant> = None;
        let mut again = 0;
        loop {
            if let Some(r) = self.tools[tool].try_finish() {
                let taken = r.code() == 1 && r.stderr.contains("is in use by a running process");
                if taken && again < 2 {
                    again += 1;
                    eprintln!("{}: restore again: {}", self.victim.name, r.stderr.trim());
                    std::thread::sleep(Duration::from_millis(300));
                    self.tools[tool] = self.tools[tool].again(again);
                    continue;
                }
                if self.victim.expect_pass || proc_exists(self.pid) {
                    let rep = r.report();
                    self.fail(&format!(
                        "the restore tool exited ({}) before the restored process was seen running (no go file was given yet)\n{rep}",
                        r.code()
                    ));
                }
                return Some(r);
            }
            let ok = proc_exists(self.pid)
                && status_field(self.pid, "TracerPid").as_deref() == Some("0")
                && matches!(proc_state(self.pid), Some('R' | 'S' | 'D'))
                && proc_comm(self.pid).as_deref() == Some(self.comm.as_str());
            if ok {
                let since = *steady_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_millis(100) {
                    return None;
                }
            } else {
                steady_since = None;
            }
            if start.elapsed() > RESTORE_TIMEOUT {
                self.fail(&format!(
                    "the restored process was not running on its own (untraced, comm {:?}) within {RESTORE_TIMEOUT:?}",
                    self.comm
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Restores `images`, lets the restored process finish (go file) and checks the
    /// result, as reported by the restore tool.
    pub fn restore_and_finish(&mut self, images: &Path, what: &str) -> String {
        let t = self.spawn_restore(images, &[]);
        if let Some(run) = self.wait_restored(t) {
            // a program that finished on its own before we saw it running
            self.tools.remove(t);
            let out = self.output();
            self.check_result(what, run.code(), &out, Some(&run));
            wait_gone(self.pid, &self.victim.name);
            self.restored = false;
            run.assert_no_panic();
            return out;
        }
        self.go();
        self.finish_restored(t, what)
    }

    /// Creates the go file and runs the victim's go action.
    pub fn go(&self) {
        fs::write(self.scratch.go(), b"go\n").expect("create go file");
        if let Some(f) = &self.victim.on_go {
            f.clone()(self);
        }
    }

    pub fn remove_go(&self) {
        let _ = fs::remove_file(self.scratch.go());
    }

    fn poke(&self) {
        if let Some(sig) = self.victim.wake_signal {
            if proc_exists(self.pid) && proc_state(self.pid) != Some('Z') {
                kill(self.pid, sig);
            }
        }
    }

    /// After go: waits for the original process to exit and checks the result.
    pub fn finish_original(&mut self, what: &str) -> String {
        let mut c = self
            .original
            .take()
            .expect("the original process is not ours");
        let start = Instant::now();
        let st = loop {
            if let Ok(Some(st)) = c.try_wait() {
                break st;
            }
            if start.elapsed() > RESTORE_TIMEOUT {
                self.original = Some(c);
                self.fail(&format!("{what}: the victim did not finish within {RESTORE_TIMEOUT:?} after the go file"));
            }
            self.poke();
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = self.output();
        self.check_result(what, status_code(st), &out, None);
        out
    }

    /// After go: waits for restore tool `tool` to exit and checks that it reports the
    /// restored process's success.
    pub fn finish_restored(&mut self, tool: usize, what: &str) -> String {
        let start = Instant::now();
        let run = loop {
            if let Some(r) = self.tools[tool].try_finish() {
                break r;
            }
            if start.elapsed() > RESTORE_TIMEOUT {
                self.fail(&format!(
                    "{what}: the restored process did not finish within {RESTORE_TIMEOUT:?} after the go file"
                ));
            }
            self.poke();
            std::thread::sleep(Duration::from_millis(20));
        };
        self.tools.remove(tool);
        let out = self.output();
        self.check_result(what, run.code(), &out, Some(&run));
        // the restore tool reaped it
        wait_gone(self.pid, &self.victim.name);
        self.restored = false;
        run.assert_no_panic();
        out
    }

    fn check_result(&mut self, what: &str, code: i32, out: &str, tool: Option<&ToolRun>) {
        let last = out
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let who = if tool.is_some() {
            "the restore tool (reporting the restored process)"
        } else {
            "the victim"
        };
        let mut problem = None;
        if code != self.victim.exit_code {
            problem = Some(format!(
                "{who} exited with {code}, expected {}",
                self.victim.exit_code
            ));
        } else if self.victim.expect_pass && last != "PASS" {
            problem = Some(format!(
                "the victim's output does not end with PASS (last line {last:?})"
            ));
        }
        if let Some(p) = problem {
            let rep = tool.map(|t| t.report()).unwrap_or_default();
            self.fail(&format!("{what}: {p}\n{rep}"));
        }
    }

    /// Panics unless the original process is alive, not traced and not stopped.
    pub fn assert_running_untraced(&mut self, what: &str) {
        std::thread::sleep(Duration::from_millis(50));
        let alive = self
            .original
            .as_mut()
            .map(|c| matches!(c.try_wait(), Ok(None)))
            .unwrap_or(false);
        let tracer = status_field(self.pid, "TracerPid");
        let state = proc_state(self.pid);
        if !alive || tracer.as_deref() != Some("0") || !matches!(state, Some('R' | 'S' | 'D')) {
            self.fail(&format!(
                "{what}: the victim should be running untraced, but alive={alive}, TracerPid={tracer:?}, state={state:?}"
            ));
        }
    }

    /// Waits for restore tool `tool` to exit (e.g. after its process was dumped again).
    pub fn wait_tool(&mut self, tool: usize, what: &str) -> ToolRun {
        match self.tools[tool].wait(RESTORE_TIMEOUT) {
            Some(r) => {
                self.tools.remove(tool);
                r
            }
            None => self.fail(&format!(
                "{what}: the restore tool did not exit within {RESTORE_TIMEOUT:?}"
            )),
        }
    }

    /// Runs a restore that must fail: exit 1, no panic, a message on stderr mentioning
    /// one of `words`, and what `rule` says about the victim's PID. Returns the run.
    pub fn restore_must_fail(
        &mut self,
        images: &Path,
        words: &[&str],
        rule: PidRule,
        what: &str,
    ) -> ToolRun {
        let pid_in_use = rule == PidRule::InUse;
        let idx = self.spawn_restore(images, &[]);
        let start = Instant::now();
        let mut appeared = false;
        let run = loop {
            if !pid_in_use && proc_exists(self.pid) {
                appeared = true;
            }
            if let Some(r) = self.tools[idx].try_finish() {
                break r;
            }
            if start.elapsed() > RESTORE_TIMEOUT {
                self.fail(&format!("{what}: the restore that should fail did not finish within {RESTORE_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        self.tools.remove(idx);
        let mut left_behind = false;
        if !pid_in_use {
            self.restored = false;
            // a restore that created the process must have killed (and reaped) it
            let t = Instant::now();
            while proc_exists(self.pid) && t.elapsed() < Duration::from_secs(1) {
                reap_nohang(self.pid);
                std::thread::sleep(Duration::from_millis(5));
            }
            if proc_exists(self.pid) {
                left_behind = true;
                self.restored = true;
            }
        }
        let rep = run.report();
        if run.code() != 1 {
            self.fail(&format!(
                "{what}: restore exited with {}, expected 1\n{rep}",
                run.code()
            ));
        }
        if run.code() == 101 || run.stderr.contains("panicked") {
            self.fail(&format!("{what}: restore panicked\n{rep}"));
        }
        if !mentions(&run.stderr, words) {
            self.fail(&format!(
                "{what}: the error message does not mention any of {words:?}\n{rep}"
            ));
        }
        if left_behind {
            self.fail(&format!(
                "{what}: the restore failed but left a process with the victim's pid {} behind\n{rep}",
                self.pid
            ));
        }
        if appeared && rule == PidRule::NeverAppears {
            self.fail(&format!(
                "{what}: the restore failed, but a process with the victim's pid {} appeared while it ran (a failed restore must be refused before creating anything, or clean up)\n{rep}",
                self.pid
            ));
        }
        run
    }

    /// Resumes a process left stopped (--leave-stopped).
    pub fn cont(&self) {
        kill(self.pid, libc::SIGCONT);
    }

    /// Kills everything this session started that is still there.
    fn cleanup(&mut self) {
        if self.restored && proc_exists(self.pid) {
            let ours = proc_ppid(self.pid).is_some_and(|pp| {
                pp == std::process::id() as i32 || self.tools.iter().any(|t| t.pid() == pp)
            });
            if ours {
                kill(self.pid, libc::SIGKILL);
            }
        }
        for t in &mut self.tools {
            t.kill();
        }
        self.tools.clear();
        if let Some(mut c) = self.original.take() {
            let _ = c.kill();
            let _ = wait_child(&mut c, GONE_TIMEOUT);
        }
        if self.restored {
            let start = Instant::now();
            while proc_exists(self.pid) && start.elapsed() < Duration::from_secs(2) {
                reap_nohang(self.pid);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.cleanup();
    }
}

// ---- cycles -----------------------------------------------------------------------------

/// What a finished cycle leaves for further checks.
pub struct Finished {
    pub session: Session,
    pub output: String,
    /// From the start of the victim to the end of the last run.
    pub elapsed: Duration,
}

impl Finished {
    pub fn scratch(&self) -> &Scratch {
        &self.session.scratch
    }
}

/// Control: the victim alone, no dump: it must PASS (proves the victim itself works).
pub fn run_control(v: &Victim) -> Finished {
    let mut s = Session::start(v);
    s.go();
    let output = s.finish_original("standalone run (no dump)");
    Finished {
        elapsed: s.started.elapsed(),
        session: s,
        output,
    }
}

/// dump, kill, restore: the restored process must PASS.
pub fn run_cycle(v: &Victim) -> Finished {
    let mut s = Session::start(v);
    let images = s.scratch.images(1);
    s.dump_ok(&images, &[]);
    s.reap_killed();
    let output = s.restore_and_finish(&images, "dump, kill, restore");
    Finished {
        elapsed: s.started.elapsed(),
        session: s,
        output,
    }
}

/// dump, restore, dump the restored process again, restore again: PASS.
pub fn run_double_cycle(v: &Victim) -> Finished {
    let mut s = Session::start(v);
    let first = s.scratch.images(1);
    let second = s.scratch.images(2);
    s.dump_ok(&first, &[]);
    s.reap_killed();
    let t1 = s.spawn_restore(&first, &[]);
    if s.wait_restored(t1).is_some() {
        s.fail("the restored process finished before it could be dumped a second time");
    }
    s.dump_ok(&second, &[]);
    // the first restore tool was the restored process's parent: it must report the
    // SIGKILL of the second dump as 128+9
    let r1 = s.wait_tool(t1, "second dump");
    if r1.code() != 128 + libc::SIGKILL {
        let rep = r1.report();
        s.fail(&format!(
            "the first restore tool exited with {} after its process was dumped (and killed) again; expected {} (128+SIGKILL)\n{rep}",
            r1.code(),
            128 + libc::SIGKILL
        ));
    }
    s.reap_killed();
    let output = s.restore_and_finish(&second, "dump, restore, dump, restore");
    Finished {
        elapsed: s.started.elapsed(),
        session: s,
        output,
    }
}

/// dump --leave-running: the original goes on and PASSes; then the same image is
/// restored (after putting the victim's files back as they were at dump time) and
/// PASSes again. The victim must not change its files before the go file (they are
/// copied when the dump returns).
pub fn run_leave_running(v: &Victim) -> Finished {
    let mut s = Session::start(v);
    let images = s.scratch.images(1);
    s.dump_ok(&images, &["--leave-running"]);
    let snap = FileSnapshot::take(&s.scratch, &[]);
    s.assert_running_untraced("after dump --leave-running");
    s.go();
    let first = s.finish_original("the original after dump --leave-running");
    fs::write(s.scratch.path("original.out"), &first).expect("save output");
    wait_gone(s.pid, &v.name);
    s.remove_go();
    snap.rewind();
    let output = s.restore_and_finish(&images, "restore of a --leave-running image");
    Finished {
        elapsed: s.started.elapsed(),
        session: s,
        output,
    }
}
