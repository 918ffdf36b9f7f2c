//! victim_rust: a Rust program (std only, one thread) whose heap state survives dump,
//! kill and restore.
//!
//! Builds a Vec of a million words, a HashMap of Strings to byte vectors (with the
//! process's random hash keys), a BTreeMap, a long String, a boxed closure and a
//! thread_local, and records a checksum of all of it. Prints READY, then counts in a
//! loop while polling the go file (the counter is checked to have kept counting), and
//! after the go file recomputes the checksum, checks that std still works (allocation,
//! formatting, the clock, reading a file through a File kept open across the dump),
//! and prints PASS or FAIL lines.
//!
//! Build: rustc -O --edition 2021 -o victim_rust testprogs/victim_rust.rs

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

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

struct State {
    words: Vec<u64>,
    map: HashMap<String, Vec<u8>>,
    tree: BTreeMap<u64, String>,
    text: String,
    closure: Box<dyn Fn(u64) -> u64>,
    file: File,
    file_pos: u64,
}

fn checksum(s: &State) -> u64 {
    let mut h = 0u64;
    for (i, w) in s.words.iter().enumerate() {
        h = mix(h ^ w ^ i as u64);
    }
    let mut keys: Vec<&String> = s.map.keys().collect();
    keys.sort();
    for k in keys {
        h = mix(h ^ k.len() as u64);
        for b in k.bytes().chain(s.map[k].iter().copied()) {
            h = mix(h ^ b as u64);
        }
    }
    for (k, v) in &s.tree {
        h = mix(h ^ k ^ v.len() as u64);
    }
    for b in s.text.bytes() {
        h = h.rotate_left(5) ^ b as u64;
    }
    h = mix(h ^ (s.closure)(12345));
    h
}

fn build(tmp: &Path) -> State {
    let words: Vec<u64> = (0..1_000_000u64).map(mix).collect();
    let mut map = HashMap::new();
    for i in 0..5000u64 {
        let key = format!("key-{i}-{}", mix(i) % 1000);
        let val: Vec<u8> = (0..(mix(i) % 300) as usize)
            .map(|j| (i as usize + j) as u8)
            .collect();
        map.insert(key, val);
    }
    let mut tree = BTreeMap::new();
    for i in 0..2000u64 {
        tree.insert(mix(i + 7), format!("v{i}"));
    }
    let mut text = String::new();
    for i in 0..10000 {
        text.push_str(&format!("line {i}: {}\n", mix(i) % 99991));
    }
    let k = mix(42);
    let closure: Box<dyn Fn(u64) -> u64> = Box::new(move |x| mix(x ^ k));

    let path = tmp.join("rust-victim.dat");
    let data: Vec<u8> = (0..100_000u32)
        .map(|i| (mix(i as u64) & 0xff) as u8)
        .collect();
    std::fs::write(&path, &data).expect("write data file");
    let mut file = File::open(&path).expect("open data file");
    file.seek(SeekFrom::Start(31337)).expect("seek");
    State {
        words,
        map,
        tree,
        text,
        closure,
        file,
        file_pos: 31337,
    }
}

fn main() {
    let go = std::env::var_os("STASIS_GO").expect("STASIS_GO is not set");
    let (tmp, own_tmp) = match std::env::var_os("STASIS_TMP") {
        Some(t) => (std::path::PathBuf::from(t), false),
        None => {
            let d = std::env::temp_dir().join(format!("stasis-rust-victim-{}", std::process::id()));
            std::fs::create_dir_all(&d).expect("create temp dir");
            (d, true)
        }
    };
    let mut failures = Vec::new();

    let mut state = build(&tmp);
    TLS.with(|t| t.set(0xfeed_beef));
    let sum_before = checksum(&state);
    let start = Instant::now();
    let mut counter: u64 = 0;
    let mut acc: u64 = 1;

    say("READY\n");
    let go = Path::new(&go);
    loop {
        // a little work between polls, so that a dump can land in user code too
        for _ in 0..10_000 {
            counter += 1;
            acc = mix(acc ^ counter);
        }
        if go.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    // the counter and the accumulator agree with each other
    let mut check = 1u64;
    for i in 1..=counter {
        check = mix(check ^ i);
    }
    if check != acc {
        failures.push(format!("counter {counter} and accumulator disagree"));
    }
    let sum_after = checksum(&state);
    if sum_after != sum_before {
        failures.push(format!(
            "state checksum {sum_after:#x}, was {sum_before:#x}"
        ));
    }
    if state.words.len() != 1_000_000 || state.words[999_999] != mix(999_999) {
        failures.push("Vec contents differ".into());
    }
    if TLS.with(|t| t.get()) != 0xfeed_beef {
        failures.push("thread_local value differs".into());
    }
    if start.elapsed() < Duration::from_millis(1) {
        failures.push("Instant went backwards".into());
    }
    // the file kept open reads on from where it was
    match state.file.stream_position() {
        Ok(p) if p == state.file_pos => {}
        Ok(p) => failures.push(format!("file position {p}, expected {}", state.file_pos)),
        Err(e) => failures.push(format!("file position: {e}")),
    }
    let mut buf = [0u8; 16];
    match state.file.read_exact(&mut buf) {
        Ok(()) => {
            for (i, b) in buf.iter().enumerate() {
                if *b != (mix(state.file_pos + i as u64) & 0xff) as u8 {
                    failures.push("file data read after restore differs".into());
                    break;
                }
            }
        }
        Err(e) => failures.push(format!("read from the open file: {e}")),
    }
    // the allocator and the collections still work
    for i in 0..100_000u64 {
        state.words.push(i);
        state.map.insert(format!("new-{i}"), vec![1, 2, 3]);
    }
    if state.map.len() != 105_000 || state.words.len() != 1_100_000 {
        failures.push("collections misbehave after restore".into());
    }
    if own_tmp {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    if failures.is_empty() {
        say("PASS\n");
        std::process::exit(0);
    }
    for f in &failures {
        say(&format!("FAIL: {f}\n"));
    }
    std::process::exit(1);
}
