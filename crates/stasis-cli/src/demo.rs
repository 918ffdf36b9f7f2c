//! `stasis demo`: the bundled counting program, checkpointed, killed and restored.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The bundled program: counts forever, appending one number per line to `out`, with the
/// count held only in its memory.
pub fn counter(out: &Path) -> anyhow::Result<u8> {
    // Descriptors leaked by whoever started us (a pipe to a terminal multiplexer...) would
    // make the process depend on the outside world; it needs none of them.
    stasis_sys::own::close_all_except(&[0, 1, 2]);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .with_context(|| format!("open {}", out.display()))?;
    let mut n: u64 = 0;
    loop {
        n += 1;
        writeln!(f, "{n}")?;
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn last_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .rev()
        .find_map(|l| l.trim().parse().ok())
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> anyhow::Result<()> {
    let end = Instant::now() + timeout;
    while !f() {
        if Instant::now() > end {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

pub fn run(dir: Option<PathBuf>) -> anyhow::Result<u8> {
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("stasis-demo-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let out = dir.join("counter.txt");
    let images = dir.join("image");
    let _ = std::fs::remove_file(&out);
    let exe = std::env::current_exe().context("find the stasis binary")?;

    println!(
        "== starting the bundled counter (it appends 1, 2, 3... to {})",
        out.display()
    );
    let mut child = std::process::Command::new(&exe)
        .arg("demo-counter")
        .arg(&out)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("start the counter")?;
    let pid = child.id() as i32;
    wait_for("the counter to reach 10", Duration::from_secs(10), || {
        last_number(&out).is_some_and(|n| n >= 10)
    })?;
    println!(
        "   counter pid {pid} has counted to {}",
        last_number(&out).unwrap_or(0)
    );

    println!("== stasis dump -t {pid} -D {}", images.display());
    let t = Instant::now();
    stasis::dump(&stasis::DumpOptions {
        pid,
        images_dir: images.clone(),
        leave_running: false,
        leave_stopped: false,
        shell_job: false,
        file_locks: false,
        link_remap: false,
        ext_unix_sk: false,
    })
    .context("dump the counter")?;
    let _ = child.wait();
    let at_dump = last_number(&out).unwrap_or(0);
    println!(
        "   dumped and killed in {:?}; the count stopped at {at_dump}",
        t.elapsed()
    );
    std::thread::sleep(Duration::from_millis(500));
    if last_number(&out) != Some(at_dump) {
        bail!("the counter is still counting after the dump killed it");
    }
    println!("   (half a second later it is still {at_dump}: the process is gone)");

    println!("== stasis restore -D {}", images.display());
    let t = Instant::now();
    let restored = stasis::restore(&stasis::RestoreOptions {
        images_dir: images.clone(),
        ..Default::default()
    })
    .context("restore the counter")?;
    println!("   restored pid {} in {:?}", restored.root_pid, t.elapsed());
    let target = at_dump + 10;
    let waited = wait_for(
        "the restored counter to go on",
        Duration::from_secs(10),
        || last_number(&out).is_some_and(|n| n >= target),
    );
    let _ = stasis_sys::process::kill(restored.root_pid, libc::SIGKILL);
    let _ = restored.wait();
    waited?;
    let text = std::fs::read_to_string(&out)?;
    let numbers: Vec<u64> = text.lines().filter_map(|l| l.parse().ok()).collect();
    let contiguous = numbers.windows(2).all(|w| w[1] == w[0] + 1);
    let shown: Vec<String> = numbers
        .iter()
        .filter(|&&n| n + 3 >= at_dump && n <= at_dump + 5)
        .map(|n| n.to_string())
        .collect();
    println!("   counting went on: ... {} ...", shown.join(" "));
    if !contiguous || numbers.first() != Some(&1) {
        bail!("the count is not one unbroken sequence from 1: the restore lost or repeated state");
    }
    println!("== PASS: the restored counter continued from {at_dump} without starting over");
    Ok(0)
}
