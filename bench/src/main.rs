//! stasis-bench: how fast stasis dumps and restores, beside this machine's memory bandwidth.
//!
//! Run as root from the repository root:
//!
//! ```text
//! cargo run --release --manifest-path bench/Cargo.toml            # 64 MiB and 1 GiB, 5 runs
//! cargo run --release --manifest-path bench/Cargo.toml -- --help  # options
//! ```
//!
//! It builds the `stasis` binary (`cargo build --release` at the root) and drives it as a user
//! would. For each size, a victim (this binary, re-executed as `victim`) maps and touches that
//! much anonymous memory with a pattern, says it is ready, and spins reading the clock and
//! recording the largest gap between two readings in a small shared file mapping. Each run:
//!
//! 1. `stasis dump --leave-running -v4 -o LOG`: the dump time is the command's wall time; the
//!    frozen time is the victim's largest clock gap (seen from the outside of the tool), and
//!    the tool's own "released ... after" log line is reported beside it;
//! 2. the victim checks its whole pattern (the dump left it intact), then is killed, reaped,
//!    and /proc/PID is gone;
//! 3. `stasis restore -d`: the restore time is the command's wall time (it returns once the
//!    process runs with its original PID); the restored victim checks its whole pattern.
//!
//! One untimed warm-up run comes first (memory the VM left idle is slow on first touch), then
//! N timed runs; the table shows medians and the spread. The memcpy bandwidth, the cost of
//! populating fresh pages and the rate of writing a new file into the page cache (back to
//! back, and after a pause, when a VM host may have taken idle memory back) are measured in
//! the same run, so ratios compare like with like.

mod many;

use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const PAGE: usize = 4096;

type Res<T> = Result<T, String>;

// ---------------------------------------------------------------------------------------
// The control page shared between the bench and its victim (a MAP_SHARED file mapping).

/// Slots of the control page, each an AtomicU64.
mod slot {
    /// Set to 1 by the victim once its memory is filled.
    pub const READY: usize = 0;
    /// CLOCK_MONOTONIC in ns at the victim's last loop iteration.
    pub const HEARTBEAT: usize = 1;
    /// Largest gap between two loop iterations since the last reset, in ns.
    pub const MAX_GAP: usize = 2;
    /// Bumped by the bench for every command.
    pub const CMD_SEQ: usize = 3;
    pub const CMD: usize = 4;
    /// Set by the victim to CMD_SEQ once the command is done.
    pub const ACK_SEQ: usize = 5;
    pub const RESULT: usize = 6;
    /// Index of the first wrong word when a check fails.
    pub const BAD_INDEX: usize = 7;
}

const CMD_RESET_GAP: u64 = 1;
const CMD_VERIFY: u64 = 2;
const RESULT_OK: u64 = 1;
const RESULT_BAD: u64 = 2;

struct Ctrl {
    ptr: *mut AtomicU64,
}

impl Ctrl {
    /// Maps the control file (created with one page of zeroes) shared.
    fn map(path: &Path) -> Res<Ctrl> {
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh shared mapping of one page of a file we hold open; the kernel
        // picks the address. The mapping outlives the descriptor.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!(
                "mmap {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(Ctrl {
            ptr: p as *mut AtomicU64,
        })
    }

    fn at(&self, i: usize) -> &AtomicU64 {
        assert!(i < PAGE / 8);
        // SAFETY: the page is mapped for the life of the process (never unmapped) and
        // AtomicU64 has the layout of u64; i is in bounds.
        unsafe { &*self.ptr.add(i) }
    }

    fn get(&self, i: usize) -> u64 {
        self.at(i).load(Ordering::Acquire)
    }

    fn set(&self, i: usize, v: u64) {
        self.at(i).store(v, Ordering::Release)
    }
}

fn create_ctrl_file(path: &Path) -> Res<()> {
    fs::write(path, vec![0u8; PAGE]).map_err(|e| format!("create {}: {e}", path.display()))
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

// ---------------------------------------------------------------------------------------
// The victim.

fn pattern(seed: u64, i: u64) -> u64 {
    (seed ^ i)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .rotate_left(29)
        ^ i
}

/// `victim CTRL BYTES SEED`: fill BYTES of fresh anonymous memory, then spin until killed,
/// answering the bench's commands.
fn victim(args: &[String]) -> ! {
    // Only /dev/null on 0-2 (set by the bench); nothing inherited that stasis cannot dump.
    // SAFETY: close_range has no memory arguments.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    let ctrl = Ctrl::map(Path::new(&args[0])).unwrap_or_else(|_| std::process::exit(3));
    let bytes: usize = args[1].parse().unwrap_or_else(|_| std::process::exit(4));
    let seed: u64 = args[2].parse().unwrap_or_else(|_| std::process::exit(5));
    // SAFETY: a fresh private anonymous mapping; the kernel picks the address.
    let mem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if mem == libc::MAP_FAILED {
        std::process::exit(6);
    }
    let words = bytes / 8;
    // SAFETY: the mapping is `bytes` long, page-aligned and ours alone.
    let mem: &mut [u64] = unsafe { std::slice::from_raw_parts_mut(mem as *mut u64, words) };
    for (i, w) in mem.iter_mut().enumerate() {
        *w = pattern(seed, i as u64);
    }
    ctrl.set(slot::READY, 1);
    let mut seen_seq = ctrl.get(slot::CMD_SEQ);
    let mut last = monotonic_ns();
    let mut max_gap = 0u64;
    loop {
        let now = monotonic_ns();
        let gap = now.saturating_sub(last);
        if gap > max_gap {
            max_gap = gap;
            ctrl.set(slot::MAX_GAP, max_gap);
        }
        last = now;
        ctrl.set(slot::HEARTBEAT, now);
        let seq = ctrl.get(slot::CMD_SEQ);
        if seq != seen_seq {
            seen_seq = seq;
            match ctrl.get(slot::CMD) {
                CMD_RESET_GAP => {
                    max_gap = 0;
                    ctrl.set(slot::MAX_GAP, 0);
                }
                CMD_VERIFY => {
                    let bad = mem
                        .iter()
                        .enumerate()
                        .position(|(i, &w)| w != pattern(seed, i as u64));
                    match bad {
                        None => ctrl.set(slot::RESULT, RESULT_OK),
                        Some(i) => {
                            ctrl.set(slot::BAD_INDEX, i as u64);
                            ctrl.set(slot::RESULT, RESULT_BAD);
                        }
                    }
                }
                _ => {}
            }
            ctrl.set(slot::ACK_SEQ, seq);
            last = monotonic_ns(); // a command's own work is not a freeze
        }
    }
}

// ---------------------------------------------------------------------------------------
// Processes the bench owns, killed and reaped whatever happens.

fn pid_gone(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> Res<bool>) -> Res<()> {
    let end = Instant::now() + timeout;
    loop {
        if f()? {
            return Ok(());
        }
        if Instant::now() > end {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Kills `pid` (a child of ours, or an orphan re-parented to us as subreaper), reaps it and
/// waits until its /proc entry is gone, so that its PID can be restored.
fn kill_and_reap(pid: i32) -> Res<()> {
    // SAFETY: kill and waitpid have no memory arguments besides the status int we own.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        let mut st = 0;
        while libc::waitpid(pid, &mut st, libc::__WALL) < 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
        {}
    }
    wait_until(
        &format!("/proc/{pid} to go"),
        Duration::from_secs(10),
        || Ok(pid_gone(pid)),
    )
}

/// A process to kill and reap on every path.
struct Owned {
    pid: i32,
    child: Option<Child>,
    live: bool,
}

impl Owned {
    fn spawned(child: Child) -> Owned {
        Owned {
            pid: child.id() as i32,
            child: Some(child),
            live: true,
        }
    }
    fn adopted(pid: i32) -> Owned {
        Owned {
            pid,
            child: None,
            live: true,
        }
    }
    fn kill(&mut self) -> Res<()> {
        if !self.live {
            return Ok(());
        }
        self.live = false;
        match self.child.take() {
            Some(mut c) => {
                // Reaped through its Child handle: never signal the PID after that.
                let _ = c.kill();
                let _ = c.wait();
                let pid = self.pid;
                wait_until(
                    &format!("/proc/{pid} to go"),
                    Duration::from_secs(10),
                    || Ok(pid_gone(pid)),
                )
            }
            None => kill_and_reap(self.pid),
        }
    }
    fn exited(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(Some(_))),
            None => pid_gone(self.pid) || proc_state(self.pid) == Some('Z'),
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

fn proc_state(pid: i32) -> Option<char> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(") ")?.1.chars().next()
}

/// stdin/stdout/stderr on /dev/null and no other inherited descriptor: what stasis can dump.
fn quiet(cmd: &mut Command) -> &mut Command {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: close_range is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        })
    }
}

// ---------------------------------------------------------------------------------------
// Driving stasis.

struct Stasis {
    bin: PathBuf,
}

impl Stasis {
    /// Runs stasis with `args`; returns its wall time, or its stderr on failure.
    fn run(&self, args: &[&str]) -> Res<Duration> {
        let t = Instant::now();
        let out = Command::new(&self.bin)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run {}: {e}", self.bin.display()))?;
        let took = t.elapsed();
        if !out.status.success() {
            return Err(format!(
                "stasis {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(took)
    }
}

impl Stasis {
    /// `stasis dump -t PID -D IMAGES --leave-running -v4 -o LOG`; returns its wall time.
    fn dump_leave_running(&self, pid: i32, images: &Path, log: &Path) -> Res<Duration> {
        self.run(&[
            "dump",
            "-t",
            &pid.to_string(),
            "-D",
            &images.display().to_string(),
            "--leave-running",
            "-v4",
            "-o",
            &log.display().to_string(),
        ])
    }
}

/// Parses the `{:?}` of a Duration ("4.465804ms", "1.2s", "850.3µs", "12ns").
fn parse_debug_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    let secs = match unit {
        "s" => v,
        "ms" => v / 1e3,
        "µs" | "us" => v / 1e6,
        "ns" => v / 1e9,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// The frozen time stasis itself logged: "pid N: released (Resume) after 12.3ms".
fn frozen_from_log(log: &Path) -> Option<Duration> {
    let text = fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains("released ("))?;
    let after = line.rsplit_once(" after ")?.1;
    parse_debug_duration(after.split_whitespace().next()?)
}

fn dir_size(dir: &Path) -> Res<u64> {
    let mut total = 0;
    for e in fs::read_dir(dir).map_err(|e| format!("read {}: {e}", dir.display()))? {
        let e = e.map_err(|e| e.to_string())?;
        total += e.metadata().map_err(|e| e.to_string())?.len();
    }
    Ok(total)
}

// ---------------------------------------------------------------------------------------
// Measurements.

/// One run with a victim of `bytes` touched memory.
#[derive(Debug, Clone, Copy)]
struct MemRun {
    dump: Duration,
    frozen_victim: Duration,
    frozen_tool: Option<Duration>,
    image: u64,
    restore: Duration,
}

struct Bench {
    stasis: Stasis,
    work: PathBuf,
    self_exe: PathBuf,
    keep_logs: bool,
}

impl Bench {
    fn command(&self, ctrl: &Ctrl, cmd: u64, timeout: Duration) -> Res<()> {
        let seq = ctrl.get(slot::CMD_SEQ) + 1;
        ctrl.set(slot::RESULT, 0);
        ctrl.set(slot::CMD, cmd);
        ctrl.set(slot::CMD_SEQ, seq);
        wait_until("the victim to answer", timeout, || {
            Ok(ctrl.get(slot::ACK_SEQ) == seq)
        })
    }

    fn verify(&self, ctrl: &Ctrl, when: &str) -> Res<()> {
        self.command(ctrl, CMD_VERIFY, Duration::from_secs(60))
            .map_err(|e| format!("{when}: {e}"))?;
        match ctrl.get(slot::RESULT) {
            RESULT_OK => Ok(()),
            _ => Err(format!(
                "{when}: the victim's memory is wrong at word {} — stasis lost or corrupted memory",
                ctrl.get(slot::BAD_INDEX)
            )),
        }
    }

    fn mem_run(&self, bytes: u64, seed: u64) -> Res<MemRun> {
        let tag = format!("{}m-{seed}", bytes / MIB);
        let ctrl_path = self.work.join(format!("ctrl-{tag}"));
        let images = self.work.join(format!("img-{tag}"));
        let log = self.work.join(format!("dump-{tag}.log"));
        let pidfile = self.work.join(format!("pid-{tag}"));
        let _ = fs::remove_dir_all(&images);
        create_ctrl_file(&ctrl_path)?;
        let ctrl = Ctrl::map(&ctrl_path)?;

        let child = quiet(Command::new(&self.self_exe).args([
            "victim",
            &ctrl_path.display().to_string(),
            &bytes.to_string(),
            &seed.to_string(),
        ]))
        .spawn()
        .map_err(|e| format!("start the victim: {e}"))?;
        let mut victim = Owned::spawned(child);
        let pid = victim.pid;
        wait_until(
            "the victim to fill its memory",
            Duration::from_secs(120),
            || {
                if victim.exited() {
                    return Err("the victim exited before it was ready".into());
                }
                Ok(ctrl.get(slot::READY) == 1)
            },
        )?;
        std::thread::sleep(Duration::from_millis(50));
        self.command(&ctrl, CMD_RESET_GAP, Duration::from_secs(10))?;

        let images_s = images.display().to_string();
        let dump = self.stasis.dump_leave_running(pid, &images, &log)?;
        // Let the victim run a little so its gap after the release is recorded.
        let hb = ctrl.get(slot::HEARTBEAT);
        wait_until(
            "the victim to run after the dump",
            Duration::from_secs(10),
            || Ok(ctrl.get(slot::HEARTBEAT) != hb),
        )?;
        let frozen_victim = Duration::from_nanos(ctrl.get(slot::MAX_GAP));
        let frozen_tool = frozen_from_log(&log);
        self.verify(&ctrl, "after dump --leave-running")?;
        victim.kill()?;
        drop(victim);
        let image = dir_size(&images)?;

        let _ = fs::remove_file(&pidfile);
        ctrl.set(slot::READY, 0);
        let restore = self.stasis.run(&[
            "restore",
            "-D",
            &images_s,
            "-d",
            "--pidfile",
            &pidfile.display().to_string(),
        ]);
        // A failed restore cleans up after itself; a successful one leaves us the process.
        let restore = restore?;
        let mut restored = Owned::adopted(pid);
        let got: i32 = fs::read_to_string(&pidfile)
            .map_err(|e| format!("read pidfile: {e}"))?
            .trim()
            .parse()
            .map_err(|e| format!("bad pidfile: {e}"))?;
        if got != pid {
            return Err(format!("restored as pid {got}, not {pid}"));
        }
        self.verify(&ctrl, "after restore")?;
        restored.kill()?;
        let _ = fs::remove_dir_all(&images);
        let _ = fs::remove_file(&ctrl_path);
        if !self.keep_logs {
            let _ = fs::remove_file(&log);
        }
        let _ = fs::remove_file(&pidfile);
        Ok(MemRun {
            dump,
            frozen_victim,
            frozen_tool,
            image,
            restore,
        })
    }

    /// `sleep 1000`: dump (and kill) then restore; returns (dump, restore) wall times.
    fn tiny_run(&self, i: usize) -> Res<(Duration, Duration)> {
        let images = self.work.join(format!("img-tiny-{i}"));
        let _ = fs::remove_dir_all(&images);
        let child = quiet(Command::new("sleep").arg("1000"))
            .spawn()
            .map_err(|e| format!("start sleep: {e}"))?;
        let mut victim = Owned::spawned(child);
        let pid = victim.pid;
        wait_until("sleep to start sleeping", Duration::from_secs(10), || {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            Ok(comm.trim() == "sleep" && proc_state(pid) == Some('S'))
        })?;
        let images_s = images.display().to_string();
        let dump = self
            .stasis
            .run(&["dump", "-t", &pid.to_string(), "-D", &images_s])?;
        victim.kill()?;
        drop(victim);
        let restore = self.stasis.run(&["restore", "-D", &images_s, "-d"])?;
        let mut restored = Owned::adopted(pid);
        std::thread::sleep(Duration::from_millis(20));
        match proc_state(pid) {
            Some('S') | Some('R') => {}
            other => return Err(format!("restored sleep is not sleeping (state {other:?})")),
        }
        restored.kill()?;
        let _ = fs::remove_dir_all(&images);
        Ok((dump, restore))
    }
}

/// memcpy bandwidth over a `bytes` buffer (GiB/s, median of `reps` after a warm-up copy),
/// and the rate at which fresh anonymous pages are populated (GiB/s of first touches).
fn memory_baseline(bytes: usize, reps: usize) -> (f64, f64) {
    let mut src = vec![0u8; bytes];
    let mut dst = vec![0u8; bytes];
    for (i, b) in src.iter_mut().enumerate() {
        *b = i as u8;
    }
    dst.fill(1);
    dst.copy_from_slice(&src); // warm-up
    let mut rates = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&dst);
        rates.push(bytes as f64 / GIB as f64 / t.elapsed().as_secs_f64());
    }
    drop(src);
    drop(dst);

    let mut fills = Vec::new();
    for _ in 0..reps.min(3) {
        // SAFETY: a fresh private anonymous mapping, touched once per page, then unmapped.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            ) as *mut u8;
            assert!(
                p as *mut libc::c_void != libc::MAP_FAILED,
                "mmap for the page-fill test"
            );
            // Same as the victims' memory: no THP unless the system default gives it.
            let t = Instant::now();
            let mut off = 0;
            while off < bytes {
                std::ptr::write_volatile(p.add(off), 1);
                off += PAGE;
            }
            fills.push(bytes as f64 / GIB as f64 / t.elapsed().as_secs_f64());
            libc::munmap(p as *mut libc::c_void, bytes);
        }
    }
    (median_f(&mut rates), median_f(&mut fills))
}

/// How fast a new file of `bytes` is written into the page cache (no fsync: a dump does
/// not sync either), GiB/s, median of `reps`; each file is deleted after it is timed. With a
/// `pause` before each write, memory freed by the previous one has sat idle first (as the
/// image of the previous benchmark run has by the time of the next dump).
fn file_write_baseline(dir: &Path, bytes: usize, reps: usize, pause: Duration) -> Res<f64> {
    let chunk = vec![0x5au8; 8 << 20];
    let path = dir.join("write-test");
    let mut rates = Vec::new();
    for _ in 0..reps {
        std::thread::sleep(pause);
        let t = Instant::now();
        let mut f =
            fs::File::create(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            f.write_all(&chunk[..n])
                .map_err(|e| format!("write {}: {e}", path.display()))?;
            left -= n;
        }
        drop(f);
        rates.push(bytes as f64 / GIB as f64 / t.elapsed().as_secs_f64());
        let _ = fs::remove_file(&path);
    }
    Ok(median_f(&mut rates))
}

fn median_f(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn median_d(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

// ---------------------------------------------------------------------------------------
// Setup and report.

struct Options {
    sizes: Vec<u64>,
    runs: usize,
    tiny_runs: usize,
    memcpy_bytes: usize,
    stasis: Option<PathBuf>,
    work: Option<PathBuf>,
    keep_logs: bool,
    /// Idle time before each write of the "after idle" file-write baseline.
    idle_pause: Duration,
    /// Processes in the tree and threads in the process of the many-tasks runs.
    tree_tasks: usize,
    threads: usize,
    /// Only the many-tasks runs (no memory sizes, no tiny process, no memory baselines).
    many_only: bool,
}

const USAGE: &str = "\
usage: stasis-bench [--sizes 64M,1G] [--runs N] [--quick] [--stasis PATH] [--work-dir DIR]
                    [--keep-logs] [--many-only]

Builds stasis (cargo build --release at the repository root) unless --stasis is given,
then measures dump, frozen time, image size and restore for each size of touched
anonymous memory, a tiny process's dump and restore, and this machine's memcpy bandwidth.
Then a tree of 100 processes and a process with 1000 threads: dump, frozen time, restore,
beside the time the kernel takes to make as many tasks.
Defaults: --sizes 64M,1G --runs 5 (after one warm-up run per size). Needs root.
--quick: 16M, 10 processes, 100 threads, one run, a small memcpy buffer (a smoke test,
not a benchmark).
--keep-logs: keep each dump's -v4 log (dump-SIZE-RUN.log) in the work directory
(default: target/stasis-bench at the repository root).
--many-only: only the tree and the threaded process (with their kernel baselines).";

fn parse_size(s: &str) -> Res<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K') | Some('k') => (&s[..s.len() - 1], 1 << 10),
        Some('M') | Some('m') => (&s[..s.len() - 1], MIB),
        Some('G') | Some('g') => (&s[..s.len() - 1], GIB),
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    let bytes = n * mult;
    if bytes == 0 || !bytes.is_multiple_of(PAGE as u64) {
        return Err(format!("size {s:?} must be a non-zero multiple of 4K"));
    }
    Ok(bytes)
}

fn parse_args(args: &[String]) -> Res<Options> {
    let mut o = Options {
        sizes: vec![64 * MIB, GIB],
        runs: 5,
        tiny_runs: 5,
        memcpy_bytes: GIB as usize,
        stasis: None,
        work: None,
        keep_logs: false,
        idle_pause: Duration::from_secs(2),
        tree_tasks: 100,
        threads: 1000,
        many_only: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--sizes" => o.sizes = val()?.split(',').map(parse_size).collect::<Res<_>>()?,
            "--runs" => {
                o.runs = val()?
                    .parse()
                    .map_err(|_| "--runs needs a number".to_string())?;
                if o.runs == 0 {
                    return Err("--runs must be at least 1".into());
                }
            }
            "--quick" => {
                o.sizes = vec![16 * MIB];
                o.runs = 1;
                o.tiny_runs = 1;
                o.memcpy_bytes = 256 * MIB as usize;
                o.idle_pause = Duration::ZERO;
                o.tree_tasks = 10;
                o.threads = 100;
            }
            "--stasis" => o.stasis = Some(PathBuf::from(val()?)),
            "--work-dir" => o.work = Some(PathBuf::from(val()?)),
            "--keep-logs" => o.keep_logs = true,
            "--many-only" => o.many_only = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(o)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ lives in the repository")
        .to_path_buf()
}

/// Builds stasis at the repository root and returns the path of the binary.
fn build_stasis(root: &Path) -> Res<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!(
        "== building stasis: cargo build --release (in {})",
        root.display()
    );
    let st = Command::new(&cargo)
        .args(["build", "--release", "--bin", "stasis"])
        .current_dir(root)
        .status()
        .map_err(|e| format!("run {cargo}: {e}"))?;
    if !st.success() {
        return Err(format!("cargo build --release failed ({st})"));
    }
    let meta = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root)
        .output()
        .map_err(|e| format!("run {cargo} metadata: {e}"))?;
    let text = String::from_utf8_lossy(&meta.stdout);
    let key = "\"target_directory\":\"";
    let start = text
        .find(key)
        .ok_or("cargo metadata: no target_directory")?
        + key.len();
    let end = start + text[start..].find('"').ok_or("cargo metadata: bad JSON")?;
    let bin = PathBuf::from(&text[start..end])
        .join("release")
        .join("stasis");
    if !bin.exists() {
        return Err(format!("{} was not built", bin.display()));
    }
    Ok(bin)
}

fn spread(v: &[Duration]) -> String {
    let lo = v.iter().min().copied().unwrap_or_default();
    let hi = v.iter().max().copied().unwrap_or_default();
    format!(
        "{:.1}-{:.1} ms",
        lo.as_secs_f64() * 1e3,
        hi.as_secs_f64() * 1e3
    )
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn gibps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / GIB as f64 / d.as_secs_f64()
}

fn size_name(bytes: u64) -> String {
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{} GiB", bytes / GIB)
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match (args.first().map(String::as_str), args.len()) {
        (Some("victim"), 4) => victim(&args[1..]),
        (Some("victim-tree"), 3) => many::tree_victim(&args[1..]),
        (Some("victim-threads"), 3) => many::threads_victim(&args[1..]),
        _ => {}
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stasis-bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Res<()> {
    let o = parse_args(args)?;
    // SAFETY: geteuid has no arguments.
    if unsafe { libc::geteuid() } != 0 {
        return Err("run as root: stasis needs it to restore a process with its PID".into());
    }
    // Restored processes are orphaned when `stasis restore -d` exits; as subreaper we get
    // them at once (PID 1 may take seconds) and can reap them before restoring the PID again.
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "PR_SET_CHILD_SUBREAPER: {}",
            std::io::Error::last_os_error()
        ));
    }
    let root = repo_root();
    let bin = match &o.stasis {
        Some(p) => p.clone(),
        None => build_stasis(&root)?,
    };
    let work = o
        .work
        .clone()
        .unwrap_or_else(|| root.join("target").join("stasis-bench"));
    fs::create_dir_all(&work).map_err(|e| format!("create {}: {e}", work.display()))?;
    let bench = Bench {
        stasis: Stasis { bin },
        work: work.clone(),
        self_exe: std::env::current_exe().map_err(|e| format!("find own binary: {e}"))?,
        keep_logs: o.keep_logs,
    };

    eprintln!(
        "== baselines: memcpy of {} (warm), first touch of fresh pages, writing a new file",
        size_name(o.memcpy_bytes as u64)
    );
    // Other work on the machine skews every figure: say how busy it was.
    let load = fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    if o.many_only {
        return run_many(&o, &bench, &load);
    }
    let (memcpy, fill) = memory_baseline(o.memcpy_bytes, 5);
    let write = file_write_baseline(&work, o.memcpy_bytes, 3, Duration::ZERO)?;
    let write_idle = if o.idle_pause.is_zero() {
        String::new()
    } else {
        let r = file_write_baseline(&work, o.memcpy_bytes, 3, o.idle_pause)?;
        format!(", {r:.2} GiB/s after {:?} idle", o.idle_pause)
    };
    eprintln!(
        "   memcpy {memcpy:.2} GiB/s, fresh-page fill {fill:.2} GiB/s, new-file write {write:.2} GiB/s{write_idle}"
    );

    let mut rows = Vec::new();
    for &bytes in &o.sizes {
        eprintln!("== {}: warm-up run", size_name(bytes));
        bench.mem_run(bytes, 1)?;
        let mut runs = Vec::new();
        for r in 0..o.runs {
            let m = bench.mem_run(bytes, 100 + r as u64)?;
            eprintln!(
                "   run {}: dump {}, frozen {} (tool: {}), image {:.1} MiB, restore {}: memory verified",
                r + 1,
                ms(m.dump),
                ms(m.frozen_victim),
                m.frozen_tool.map(ms).unwrap_or_else(|| "?".into()),
                m.image as f64 / MIB as f64,
                ms(m.restore)
            );
            runs.push(m);
        }
        rows.push((bytes, runs));
    }

    eprintln!(
        "== tiny process (sleep 1000): warm-up, then {} runs",
        o.tiny_runs
    );
    bench.tiny_run(0)?;
    let mut tiny_dump = Vec::new();
    let mut tiny_restore = Vec::new();
    for i in 0..o.tiny_runs {
        let (d, r) = bench.tiny_run(i + 1)?;
        tiny_dump.push(d);
        tiny_restore.push(r);
    }
    let many_rows = many_runs(&o, &bench)?;
    if !o.keep_logs {
        let _ = fs::remove_dir(&work);
    }

    // The report.
    let mut out = std::io::stdout().lock();
    let w = |out: &mut std::io::StdoutLock, s: String| {
        let _ = writeln!(out, "{s}");
    };
    w(&mut out, String::new());
    w(
        &mut out,
        format!(
            "stasis benchmark — {} cores, kernel {}, median of {} run(s) after a warm-up",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim(),
            o.runs
        ),
    );
    w(
        &mut out,
        format!(
            "memcpy: {memcpy:.2} GiB/s   fresh-page fill: {fill:.2} GiB/s   load average at start: {load}\n\
             new-file write (page cache, no fsync): {write:.2} GiB/s back to back{write_idle}"
        ),
    );
    w(&mut out, String::new());
    w(
        &mut out,
        format!(
            "{:<9} {:>10} {:>14} {:>12} {:>11} {:>10} {:>11} {:>11} {:>12}",
            "touched",
            "dump",
            "frozen",
            "frozen(log)",
            "image",
            "restore",
            "dump GiB/s",
            "rest. GiB/s",
            "of memcpy d/r"
        ),
    );
    for (bytes, runs) in &rows {
        let dump = median_d(runs.iter().map(|r| r.dump).collect());
        let frozen = median_d(runs.iter().map(|r| r.frozen_victim).collect());
        let tool: Vec<Duration> = runs.iter().filter_map(|r| r.frozen_tool).collect();
        let frozen_log = if tool.is_empty() {
            "?".to_string()
        } else {
            ms(median_d(tool))
        };
        let image = runs.iter().map(|r| r.image).max().unwrap_or(0);
        let restore = median_d(runs.iter().map(|r| r.restore).collect());
        let (dg, rg) = (gibps(*bytes, dump), gibps(*bytes, restore));
        w(
            &mut out,
            format!(
                "{:<9} {:>10} {:>14} {:>12} {:>11} {:>10} {:>11.2} {:>11.2} {:>5.0}%/{:.0}%",
                size_name(*bytes),
                ms(dump),
                ms(frozen),
                frozen_log,
                format!("{:.1} MiB", image as f64 / MIB as f64),
                ms(restore),
                dg,
                rg,
                dg / memcpy * 100.0,
                rg / memcpy * 100.0
            ),
        );
    }
    w(
        &mut out,
        format!(
            "tiny process (sleep): dump {}, restore {} (median of {})",
            ms(median_d(tiny_dump.clone())),
            ms(median_d(tiny_restore.clone())),
            o.tiny_runs
        ),
    );
    w(&mut out, String::new());
    many_report(&mut out, &many_rows);
    if o.runs > 1 {
        w(&mut out, String::new());
        w(
            &mut out,
            "spread (min-max over the timed runs):".to_string(),
        );
        for (bytes, runs) in &rows {
            let col = |f: fn(&MemRun) -> Duration| spread(&runs.iter().map(f).collect::<Vec<_>>());
            w(
                &mut out,
                format!(
                    "  {:<9} dump {}, frozen {}, restore {}",
                    size_name(*bytes),
                    col(|r| r.dump),
                    col(|r| r.frozen_victim),
                    col(|r| r.restore)
                ),
            );
        }
        w(
            &mut out,
            format!(
                "  {:<9} dump {}, restore {}",
                "tiny",
                spread(&tiny_dump),
                spread(&tiny_restore)
            ),
        );
    }
    w(&mut out, String::new());
    w(
        &mut out,
        "dump/restore: wall time of `stasis dump --leave-running` / `stasis restore -d`; frozen: the\n\
         victim's largest gap between two clock readings (frozen(log): what stasis logged);\n\
         every run checked the victim's whole memory after the dump and after the restore.\n\
         A dump writes its image into the page cache: compare it with the new-file write rates."
            .to_string(),
    );
    w(
        &mut out,
        "targets (docs): 1 GiB dump and restore < 400 ms each, tiny restore < 20 ms;\n\
         CRIU 4.2 on this machine: dump 550-800 ms, restore 600 ms, frozen 430 ms, tiny 40 ms."
            .to_string(),
    );
    Ok(())
}

type ManyRow = (many::Kind, usize, Vec<many::ManyRun>, Duration);

/// The tree and the threaded process: a warm-up, `o.runs` runs, the kernel baseline.
fn many_runs(o: &Options, bench: &Bench) -> Res<Vec<ManyRow>> {
    let mut many_rows = Vec::new();
    for (kind, n) in [
        (many::Kind::Tree, o.tree_tasks),
        (many::Kind::Threads, o.threads),
    ] {
        eprintln!("== {}: warm-up, then {} runs", kind.name(n), o.runs);
        many::run(bench, kind, n, 0)?;
        let mut runs = Vec::new();
        for i in 0..o.runs {
            let m = many::run(bench, kind, n, i + 1)?;
            eprintln!(
                "   run {}: dump {}, frozen(log) {}, image {:.1} MiB, restore {}: every task back",
                i + 1,
                ms(m.dump),
                m.frozen.map(ms).unwrap_or_else(|| "?".into()),
                m.image as f64 / MIB as f64,
                ms(m.restore)
            );
            runs.push(m);
        }
        let base = many::baseline(kind, n);
        many_rows.push((kind, n, runs, base));
    }
    Ok(many_rows)
}

fn many_report(out: &mut std::io::StdoutLock, many_rows: &[ManyRow]) {
    let w = |out: &mut std::io::StdoutLock, s: String| {
        let _ = writeln!(out, "{s}");
    };
    w(
        out,
        format!(
            "{:<28} {:>10} {:>12} {:>11} {:>10} {:>12} {:>14}",
            "many tasks", "dump", "frozen(log)", "image", "restore", "baseline", "restore/base"
        ),
    );
    for (kind, n, runs, base) in many_rows {
        let dump = median_d(runs.iter().map(|r| r.dump).collect());
        let frozen: Vec<Duration> = runs.iter().filter_map(|r| r.frozen).collect();
        let frozen = if frozen.is_empty() {
            "?".to_string()
        } else {
            ms(median_d(frozen))
        };
        let restore = median_d(runs.iter().map(|r| r.restore).collect());
        let image = runs.iter().map(|r| r.image).max().unwrap_or(0);
        w(
            out,
            format!(
                "{:<28} {:>10} {:>12} {:>11} {:>10} {:>12} {:>13.1}x",
                kind.name(*n),
                ms(dump),
                frozen,
                format!("{:.1} MiB", image as f64 / MIB as f64),
                ms(restore),
                ms(*base),
                restore.as_secs_f64() / base.as_secs_f64().max(1e-9)
            ),
        );
    }
    w(
        out,
        "baseline: the kernel making as many tasks (fork+reap each process, or create+join\n\
         each thread), measured in this run."
            .to_string(),
    );
}

/// `--many-only`: the many-tasks runs and their table.
fn run_many(o: &Options, bench: &Bench, load: &str) -> Res<()> {
    let rows = many_runs(o, bench)?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\nstasis benchmark, many tasks — median of {} run(s) after a warm-up, load average at start: {load}",
        o.runs
    );
    many_report(&mut out, &rows);
    if !o.keep_logs {
        let _ = fs::remove_dir(&bench.work);
    }
    Ok(())
}
