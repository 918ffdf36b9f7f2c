//! threads_victim: a Rust program (std only) whose threads, channels and shared state
//! survive dump, kill and restore.
//!
//! Threads, each with a name, a thread_local value, and its tid recorded at start:
//!
//! - 4 producers send numbered messages over one `mpsc` channel (cloned senders);
//! - a worker forwards each message, transformed, over a second channel;
//! - a consumer adds them up in an `Arc<Mutex<Totals>>` and checks that every producer's
//!   sequence numbers arrive in order;
//! - a stuffer sends 100 numbers into a `sync_channel(2)` that nobody reads before the go
//!   file, so it is blocked in `send`;
//! - a parker waits in `thread::park` for an unpark after the go file;
//! - a sleeper is in one `thread::sleep` of 2.5 s that started before READY;
//! - readers of an `RwLock` check an invariant the main thread keeps while writing.
//!
//! Before READY every producer sends PHASE1 messages and the consumer has taken them all;
//! then the producers wait on a `Condvar` for phase 2. After the go file the main thread
//! starts phase 2 (PHASE2 more messages each), unparks the parker, drains the bounded
//! channel, writes the RwLock a number of times, waits for every thread (with a
//! deadline), and checks: message count and sum, order, the 100 numbers in order, the
//! sleep's length, every thread's name (std and /proc comm), tid and thread_local.
//!
//! Build: rustc -O --edition 2021 -o threads_victim testprogs/threads_victim.rs

use std::cell::Cell;
use std::fs::File;
use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

const PRODUCERS: u64 = 4;
const PHASE1: u64 = 2000;
const PHASE2: u64 = 3000;
const STUFFED: u64 = 100;
const SLEEP: Duration = Duration::from_millis(2500);
const DEADLINE: Duration = Duration::from_secs(20);

thread_local! {
    static TLS: Cell<u64> = const { Cell::new(0) };
}

fn say(s: &str) {
    // SAFETY: fd 1 is open for the whole life of the process; ManuallyDrop keeps it open.
    let mut out = ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
    let _ = out.write_all(s.as_bytes());
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ceb9fe1a85ec53);
    x ^ (x >> 33)
}

fn value_of(producer: u64, seq: u64) -> u64 {
    mix(producer * 1_000_000 + seq)
}

fn transform(v: u64) -> u64 {
    v.wrapping_mul(3).wrapping_add(1)
}

/// The calling thread's tid, from the /proc/thread-self link ("PID/task/TID").
fn tid() -> u32 {
    let link = std::fs::read_link("/proc/thread-self").expect("read /proc/thread-self");
    link.to_string_lossy()
        .rsplit('/')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("parse /proc/thread-self")
}

fn comm_of_self() -> String {
    std::fs::read_to_string("/proc/thread-self/comm")
        .map(|s| s.trim_end_matches('\n').to_string())
        .unwrap_or_else(|e| format!("<{e}>"))
}

struct Msg {
    producer: u64,
    seq: u64,
    value: u64,
}

#[derive(Default)]
struct Totals {
    count: u64,
    sum: u64,
    next_seq: [u64; PRODUCERS as usize],
    out_of_order: u64,
}

/// Everything the threads share.
struct Shared {
    totals: Mutex<Totals>,
    /// Changes when the consumer took a message (the main thread waits on it).
    consumed: Condvar,
    phase: Mutex<u32>,
    phase_cv: Condvar,
    failures: Mutex<Vec<String>>,
    /// (a, b) with b == 2 * a at all times, written by the main thread.
    rw: RwLock<(u64, u64)>,
    rw_reads: AtomicU64,
    stop_readers: AtomicBool,
    parked: AtomicBool,
    unparked: AtomicBool,
    sleeping: AtomicBool,
    tids: Mutex<Vec<(String, u32)>>,
}

impl Shared {
    fn fail(&self, msg: String) {
        self.failures.lock().unwrap().push(msg);
    }
}

/// What every thread does first: record its tid and set its thread_local.
fn enter(sh: &Shared, tls: u64) -> u32 {
    let t = tid();
    TLS.with(|c| c.set(tls));
    let name = thread::current().name().unwrap_or("?").to_string();
    sh.tids.lock().unwrap().push((name, t));
    t
}

/// What every thread checks last: tid, name (std and kernel) and thread_local.
fn check_self(sh: &Shared, tid_before: u32, tls: u64) {
    let name = thread::current().name().unwrap_or("?").to_string();
    let now = tid();
    if now != tid_before {
        sh.fail(format!("thread {name}: tid is {now}, it was {tid_before}"));
    }
    let comm = comm_of_self();
    if comm != name {
        sh.fail(format!("thread {name}: /proc comm is {comm:?}"));
    }
    let v = TLS.with(|c| c.get());
    if v != tls {
        sh.fail(format!(
            "thread {name}: thread_local is {v}, expected {tls}"
        ));
    }
}

fn wait_phase(sh: &Shared, want: u32) {
    let mut p = sh.phase.lock().unwrap();
    while *p < want {
        p = sh.phase_cv.wait(p).unwrap();
    }
}

fn producer(sh: Arc<Shared>, id: u64, tx: Sender<Msg>) {
    let t = enter(&sh, 100 + id);
    for seq in 0..PHASE1 {
        let _ = tx.send(Msg {
            producer: id,
            seq,
            value: value_of(id, seq),
        });
    }
    wait_phase(&sh, 2);
    for seq in PHASE1..PHASE1 + PHASE2 {
        let _ = tx.send(Msg {
            producer: id,
            seq,
            value: value_of(id, seq),
        });
    }
    drop(tx);
    check_self(&sh, t, 100 + id);
}

fn worker(sh: Arc<Shared>, rx: Receiver<Msg>, tx: Sender<Msg>) {
    let t = enter(&sh, 200);
    for m in rx {
        let _ = tx.send(Msg {
            value: transform(m.value),
            ..m
        });
    }
    drop(tx);
    check_self(&sh, t, 200);
}

fn consumer(sh: Arc<Shared>, rx: Receiver<Msg>) {
    let t = enter(&sh, 300);
    for m in rx {
        let mut tot = sh.totals.lock().unwrap();
        tot.count += 1;
        tot.sum = tot.sum.wrapping_add(m.value);
        let p = m.producer as usize;
        if m.seq != tot.next_seq[p] {
            tot.out_of_order += 1;
        }
        tot.next_seq[p] = m.seq + 1;
        drop(tot);
        sh.consumed.notify_all();
    }
    check_self(&sh, t, 300);
}

fn stuffer(sh: Arc<Shared>, tx: std::sync::mpsc::SyncSender<u64>) {
    let t = enter(&sh, 400);
    for i in 0..STUFFED {
        if tx.send(mix(i)).is_err() {
            sh.fail(format!("stuffer: send {i} failed"));
            break;
        }
    }
    check_self(&sh, t, 400);
}

fn parker(sh: Arc<Shared>) {
    let t = enter(&sh, 500);
    sh.parked.store(true, Ordering::SeqCst);
    while !sh.unparked.load(Ordering::SeqCst) {
        thread::park();
    }
    check_self(&sh, t, 500);
}

fn sleeper(sh: Arc<Shared>) {
    let t = enter(&sh, 600);
    let start = Instant::now();
    sh.sleeping.store(true, Ordering::SeqCst);
    thread::sleep(SLEEP);
    let el = start.elapsed();
    if el < SLEEP {
        sh.fail(format!(
            "sleeper: thread::sleep({SLEEP:?}) returned after {el:?}"
        ));
    }
    check_self(&sh, t, 600);
}

fn reader(sh: Arc<Shared>, id: u64) {
    let t = enter(&sh, 700 + id);
    while !sh.stop_readers.load(Ordering::SeqCst) {
        {
            let g = sh.rw.read().unwrap();
            if g.1 != 2 * g.0 {
                sh.fail(format!("reader {id}: RwLock invariant broken: {:?}", *g));
                break;
            }
        }
        sh.rw_reads.fetch_add(1, Ordering::Relaxed);
        thread::sleep(Duration::from_millis(1));
    }
    check_self(&sh, t, 700 + id);
}

fn spawn<F: FnOnce() + Send + 'static>(
    name: &str,
    done: &Sender<String>,
    f: F,
) -> thread::JoinHandle<()> {
    let done = done.clone();
    let n = name.to_string();
    thread::Builder::new()
        .name(name.to_string())
        .stack_size(256 << 10)
        .spawn(move || {
            f();
            let _ = done.send(n);
        })
        .expect("spawn thread")
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > DEADLINE {
            say(&format!("FAIL: setup: {what} not within {DEADLINE:?}\n"));
            std::process::exit(1);
        }
        thread::sleep(Duration::from_millis(2));
    }
}

fn main() {
    let go = std::env::var_os("STASIS_GO").expect("STASIS_GO is not set");
    let main_tid = tid();
    TLS.with(|c| c.set(1));
    let sh = Arc::new(Shared {
        totals: Mutex::new(Totals::default()),
        consumed: Condvar::new(),
        phase: Mutex::new(1),
        phase_cv: Condvar::new(),
        failures: Mutex::new(Vec::new()),
        rw: RwLock::new((0, 0)),
        rw_reads: AtomicU64::new(0),
        stop_readers: AtomicBool::new(false),
        parked: AtomicBool::new(false),
        unparked: AtomicBool::new(false),
        sleeping: AtomicBool::new(false),
        tids: Mutex::new(Vec::new()),
    });
    let (done_tx, done_rx) = channel::<String>();
    let mut handles = Vec::new();
    let mut names = Vec::new();

    let (tx1, rx1) = channel::<Msg>();
    let (tx2, rx2) = channel::<Msg>();
    let (stx, srx) = sync_channel::<u64>(2);
    {
        let s = sh.clone();
        names.push("consumer".to_string());
        handles.push(spawn("consumer", &done_tx, move || consumer(s, rx2)));
        let s = sh.clone();
        names.push("worker".to_string());
        handles.push(spawn("worker", &done_tx, move || worker(s, rx1, tx2)));
    }
    for id in 0..PRODUCERS {
        let s = sh.clone();
        let tx = tx1.clone();
        let name = format!("producer-{id}");
        names.push(name.clone());
        handles.push(spawn(&name, &done_tx, move || producer(s, id, tx)));
    }
    drop(tx1);
    {
        let s = sh.clone();
        names.push("stuffer".to_string());
        handles.push(spawn("stuffer", &done_tx, move || stuffer(s, stx)));
    }
    let parker_handle = {
        let s = sh.clone();
        names.push("parker".to_string());
        spawn("parker", &done_tx, move || parker(s))
    };
    let parker_thread = parker_handle.thread().clone();
    handles.push(parker_handle);
    {
        let s = sh.clone();
        names.push("sleeper".to_string());
        handles.push(spawn("sleeper", &done_tx, move || sleeper(s)));
    }
    for id in 0..2 {
        let s = sh.clone();
        let name = format!("reader-{id}");
        names.push(name.clone());
        handles.push(spawn(&name, &done_tx, move || reader(s, id)));
    }
    drop(done_tx);
    let nthreads = names.len();

    // phase 1 done: every message taken, every thread in place
    {
        let start = Instant::now();
        let mut tot = sh.totals.lock().unwrap();
        while tot.count < PRODUCERS * PHASE1 {
            let (t, _) = sh
                .consumed
                .wait_timeout(tot, Duration::from_millis(100))
                .unwrap();
            tot = t;
            if start.elapsed() > DEADLINE {
                say(&format!(
                    "FAIL: setup: only {} messages consumed within {DEADLINE:?}\n",
                    tot.count
                ));
                std::process::exit(1);
            }
        }
    }
    wait_until("all threads started", || {
        sh.tids.lock().unwrap().len() == nthreads
    });
    wait_until("parker parked and sleeper sleeping", || {
        sh.parked.load(Ordering::SeqCst) && sh.sleeping.load(Ordering::SeqCst)
    });
    wait_until("readers reading", || {
        sh.rw_reads.load(Ordering::SeqCst) > 10
    });
    let tids_before = sh.tids.lock().unwrap().clone();
    let count_ready = sh.totals.lock().unwrap().count;

    say("READY\n");
    while !Path::new(&go).exists() {
        thread::sleep(Duration::from_millis(10));
    }

    let mut fails: Vec<String> = Vec::new();
    if tid() != main_tid {
        fails.push(format!("main thread: tid is {}, it was {main_tid}", tid()));
    }
    if TLS.with(|c| c.get()) != 1 {
        fails.push("main thread: thread_local changed".to_string());
    }
    // the same threads, with the same tids and names, are still there
    for (name, t) in &tids_before {
        let comm = std::fs::read_to_string(format!("/proc/self/task/{t}/comm"))
            .map(|s| s.trim_end_matches('\n').to_string());
        match comm {
            Ok(c) if &c == name => {}
            Ok(c) => fails.push(format!("thread {name} (tid {t}): comm is {c:?}")),
            Err(e) => fails.push(format!("thread {name} (tid {t}): /proc/self/task/{t}: {e}")),
        }
    }
    {
        let tot = sh.totals.lock().unwrap();
        if tot.count != count_ready {
            fails.push(format!(
                "{} messages were consumed at READY, {} now (before phase 2)",
                count_ready, tot.count
            ));
        }
    }

    // phase 2
    *sh.phase.lock().unwrap() = 2;
    sh.phase_cv.notify_all();
    sh.unparked.store(true, Ordering::SeqCst);
    parker_thread.unpark();
    for i in 0..STUFFED {
        match srx.recv_timeout(DEADLINE) {
            Ok(v) if v == mix(i) => {}
            Ok(v) => {
                fails.push(format!(
                    "bounded channel: value {i} is {v:#x}, expected {:#x}",
                    mix(i)
                ));
                break;
            }
            Err(e) => {
                fails.push(format!("bounded channel: receiving value {i}: {e}"));
                break;
            }
        }
    }
    for k in 1..=200u64 {
        *sh.rw.write().unwrap() = (k, 2 * k);
        thread::sleep(Duration::from_micros(200));
    }
    sh.stop_readers.store(true, Ordering::SeqCst);

    // every thread must finish
    let mut finished = Vec::new();
    let start = Instant::now();
    while finished.len() < nthreads {
        let left = DEADLINE.saturating_sub(start.elapsed());
        match done_rx.recv_timeout(left) {
            Ok(n) => finished.push(n),
            Err(_) => {
                let missing: Vec<&String> =
                    names.iter().filter(|n| !finished.contains(n)).collect();
                for f in fails.iter().chain(sh.failures.lock().unwrap().iter()) {
                    say(&format!("FAIL: {f}\n"));
                }
                say(&format!(
                    "FAIL: threads {missing:?} did not finish within {DEADLINE:?}\n"
                ));
                std::process::exit(1);
            }
        }
    }
    for h in handles {
        if h.join().is_err() {
            fails.push("a thread panicked".to_string());
        }
    }

    let tot = sh.totals.lock().unwrap();
    let total = PRODUCERS * (PHASE1 + PHASE2);
    let mut want_sum = 0u64;
    for p in 0..PRODUCERS {
        for s in 0..PHASE1 + PHASE2 {
            want_sum = want_sum.wrapping_add(transform(value_of(p, s)));
        }
    }
    if tot.count != total {
        fails.push(format!("consumed {} messages, expected {total}", tot.count));
    }
    if tot.sum != want_sum {
        fails.push(format!("the sum is {:#x}, expected {want_sum:#x}", tot.sum));
    }
    if tot.out_of_order != 0 {
        fails.push(format!(
            "{} messages arrived out of order",
            tot.out_of_order
        ));
    }
    for (p, n) in tot.next_seq.iter().enumerate() {
        if *n != PHASE1 + PHASE2 {
            fails.push(format!("producer {p}: last sequence number seen {n}"));
        }
    }
    fails.extend(sh.failures.lock().unwrap().iter().cloned());
    say(&format!(
        "{} messages, {} RwLock reads, {nthreads} threads\n",
        tot.count,
        sh.rw_reads.load(Ordering::SeqCst)
    ));
    if fails.is_empty() {
        say("PASS\n");
        std::process::exit(0);
    }
    for f in &fails {
        say(&format!("FAIL: {f}\n"));
    }
    say(&format!("FAIL: {} check(s) failed\n", fails.len()));
    std::process::exit(1);
}
