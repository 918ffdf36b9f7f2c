//! The rest of the command line contract: check, show, --leave-stopped, restore -d with
//! --pidfile, the restore tool's exit status (the restored process's, 128+N for a
//! signal), and the demo.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::*;

const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn check_reports_features_and_succeeds() {
    let s = Scratch::new("check");
    let r = run_stasis(&s.dir, "check", &["check"], TOOL_TIMEOUT);
    r.assert_no_panic();
    assert_eq!(
        r.code(),
        0,
        "stasis check must pass on the CI machine\n{}",
        r.report()
    );
    let all = format!("{}{}", r.stdout, r.stderr);
    for word in ["clone3", "pidfd", "userfaultfd", "map_files"] {
        assert!(
            mentions(&all, &[word]),
            "stasis check does not mention {word}\n{}",
            r.report()
        );
    }
}

#[test]
fn show_prints_an_image_as_text_and_json() {
    let v = Victim::c("simple_victim").named("show");
    let mut s = Session::start(&v);
    let images = s.scratch.images(1);
    s.dump_ok(&images, &[]);
    s.reap_killed();
    let pid = s.pid.to_string();

    let r = run_stasis(
        &s.scratch.dir,
        "show",
        &["show", images.to_str().unwrap()],
        TOOL_TIMEOUT,
    );
    r.assert_no_panic();
    assert_eq!(r.code(), 0, "stasis show\n{}", r.report());
    assert!(
        r.stdout.contains(&pid),
        "stasis show does not print the pid {pid}\n{}",
        r.report()
    );
    assert!(
        r.stdout.contains("simple_victim"),
        "stasis show does not print the command name\n{}",
        r.report()
    );

    let r = run_stasis(
        &s.scratch.dir,
        "show-json",
        &["show", "--json", images.to_str().unwrap()],
        TOOL_TIMEOUT,
    );
    r.assert_no_panic();
    assert_eq!(r.code(), 0, "stasis show --json\n{}", r.report());
    let json: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| {
        panic!(
            "stasis show --json printed invalid JSON: {e}\n{}",
            r.report()
        )
    });
    fn has_number(v: &serde_json::Value, n: i64) -> bool {
        match v {
            serde_json::Value::Number(x) => x.as_i64() == Some(n),
            serde_json::Value::Array(a) => a.iter().any(|x| has_number(x, n)),
            serde_json::Value::Object(o) => o.values().any(|x| has_number(x, n)),
            _ => false,
        }
    }
    assert!(
        has_number(&json, s.pid as i64),
        "the JSON does not hold the pid {pid} as a number"
    );
    assert!(
        r.stdout.contains("simple_victim"),
        "the JSON does not hold the command name"
    );

    // every single file of the image can be shown too
    for e in fs::read_dir(&images).unwrap().flatten() {
        let r = run_stasis(
            &s.scratch.dir,
            "show-file",
            &["show", e.path().to_str().unwrap()],
            TOOL_TIMEOUT,
        );
        r.assert_no_panic();
        assert_eq!(
            r.code(),
            0,
            "stasis show {}\n{}",
            e.path().display(),
            r.report()
        );
        assert!(
            !r.stdout.trim().is_empty(),
            "stasis show {} printed nothing",
            e.path().display()
        );
    }

    // showing did not change the image
    s.restore_and_finish(&images, "restore after show");
}

#[test]
fn dump_leave_stopped_leaves_the_process_stopped() {
    let v = Victim::c("simple_victim").named("leave_stopped");
    let mut s = Session::start(&v);
    let images = s.scratch.images(1);
    s.dump_ok(&images, &["--leave-stopped"]);
    std::thread::sleep(Duration::from_millis(100));
    let state = proc_state(s.pid);
    let tracer = status_field(s.pid, "TracerPid");
    if state != Some('T') || tracer.as_deref() != Some("0") {
        s.fail(&format!(
            "after dump --leave-stopped the process should be stopped (T) and untraced: state {state:?}, TracerPid {tracer:?}"
        ));
    }
    s.go();
    std::thread::sleep(Duration::from_millis(200));
    if proc_state(s.pid) != Some('T') {
        s.fail("the process left stopped ran on before SIGCONT");
    }
    s.cont();
    s.finish_original("the process after SIGCONT");
}

#[test]
fn restore_detached_writes_the_pidfile_and_returns() {
    let v = Victim::c("simple_victim").named("restore_detached");
    let mut s = Session::start(&v);
    let images = s.scratch.images(1);
    s.dump_ok(&images, &[]);
    s.reap_killed();
    let pidfile = s.scratch.path("restored.pid");
    let t = s.spawn_restore(&images, &["-d", "--pidfile", pidfile.to_str().unwrap()]);
    let r = s.wait_tool(t, "restore -d");
    r.assert_no_panic();
    if r.code() != 0 {
        s.fail(&format!("restore -d failed\n{}", r.report()));
    }
    let written = fs::read_to_string(&pidfile).unwrap_or_default();
    if written.trim() != s.pid.to_string() {
        s.fail(&format!(
            "the pidfile holds {written:?}, expected {}",
            s.pid
        ));
    }
    if !proc_exists(s.pid) || !matches!(proc_state(s.pid), Some('R' | 'S')) {
        s.fail("restore -d returned but the restored process is not running");
    }
    // the tool is gone: the process is ours now (we are a child subreaper)
    s.go();
    let st = wait_reaped(s.pid, RESTORE_TIMEOUT).unwrap_or_else(|| {
        s.fail("the detached restored process did not finish after the go file")
    });
    let out = s.output();
    if status_code(st) != 0 || out.lines().last() != Some("PASS") {
        s.fail(&format!(
            "the detached restored process exited with {}",
            status_code(st)
        ));
    }
}

#[test]
fn restore_exits_with_128_plus_the_signal_that_killed_the_process() {
    let v = Victim::program("sleep", "sleep")
        .named("restore_signal_status")
        .arg("60")
        .ready_when(|s: &Session| {
            proc_comm(s.pid).as_deref() == Some("sleep") && proc_state(s.pid) == Some('S')
        })
        .expect_exit(128 + libc::SIGTERM);
    let mut s = Session::start(&v);
    let images = s.scratch.images(1);
    s.dump_ok(&images, &[]);
    s.reap_killed();
    let t = s.spawn_restore(&images, &[]);
    if s.wait_restored(t).is_some() {
        s.fail("the restored sleep 60 exited by itself");
    }
    // the pid is the restored sleep, a child of the restore tool we started
    let _ = stasis_sys::process::kill(s.pid, libc::SIGTERM);
    s.finish_restored(t, "restored sleep killed by SIGTERM");
}

#[test]
fn restore_exits_with_the_exit_code_of_the_process() {
    let v = Victim::program("python_exit_code", python3())
        .args_of(["-c", "import time; time.sleep(2); raise SystemExit(7)"])
        .ready_when(|s: &Session| {
            proc_state(s.pid) == Some('S') && s.started.elapsed() > Duration::from_millis(300)
        })
        .expect_exit(7);
    let start = Instant::now();
    let f = run_cycle(&v);
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "finished too early: {:?}",
        f.elapsed
    );
}

#[test]
fn demo_succeeds() {
    let s = Scratch::new("demo");
    let dir = s.path("demo");
    let r = run_stasis(
        &s.dir,
        "demo",
        &["demo", "--dir", dir.to_str().unwrap()],
        Duration::from_secs(120),
    );
    r.assert_no_panic();
    assert_eq!(r.code(), 0, "stasis demo\n{}", r.report());
}

/// `--restore-sibling`: the restored process is a child of the restore tool's parent (here
/// a shell that outlives the tool), not of the tool and not of a reaper it falls back to.
#[test]
fn restore_sibling_makes_the_process_a_child_of_the_callers_parent() {
    let v = Victim::c("simple_victim").named("restore_sibling");
    let mut s = Session::start(&v);
    let images = s.scratch.images(1);
    s.dump_ok(&images, &[]);
    s.reap_killed();
    // The shell runs the tool, then stays until told to go, reporting its own pid.
    let marker = s.scratch.path("shell.pid");
    let release = s.scratch.path("shell.release");
    let script = format!(
        "echo $$ > '{}'; '{}' restore -D '{}' --restore-sibling || exit 9; \
         while [ ! -e '{}' ]; do sleep 0.05; done",
        marker.display(),
        stasis_bin().display(),
        images.display(),
        release.display()
    );
    let mut shell = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("start sh");
    let deadline = Instant::now() + Duration::from_secs(20);
    let shell_pid = shell.id() as i32;
    let mut parent = None;
    while Instant::now() < deadline {
        if let Ok(Some(st)) = shell.try_wait() {
            s.fail(&format!("the shell ended early: {st:?} (restore failed?)"));
        }
        if proc_exists(s.pid) && proc_state(s.pid).is_some_and(|c| c == 'S' || c == 'R') {
            parent = proc_ppid(s.pid);
            if parent == Some(shell_pid) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = fs::write(&release, "");
    let _ = shell.wait();
    if parent != Some(shell_pid) {
        s.fail(&format!(
            "the restored process's parent is {parent:?}, expected the shell {shell_pid}"
        ));
    }
    // The shell is gone: the process is ours now (we are a child subreaper).
    s.go();
    let st = wait_reaped(s.pid, RESTORE_TIMEOUT)
        .unwrap_or_else(|| s.fail("the restored sibling did not finish after the go file"));
    if status_code(st) != 0 || s.output().lines().last() != Some("PASS") {
        s.fail(&format!(
            "the restored sibling exited with {}",
            status_code(st)
        ));
    }
}
