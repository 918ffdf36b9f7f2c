//! Error paths: bad input gets a clear message and the documented exit code (1 failure,
//! 2 usage), never a panic; a failed dump leaves the process running as before; a failed
//! restore creates nothing (or leaves nothing behind).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn dump_of_a_missing_pid_fails_naming_it() {
    let s = Scratch::new("missing_pid");
    let pid = unused_pid().to_string();
    let images = s.images(1);
    let r = run_stasis(
        &s.dir,
        "dump",
        &["dump", "-t", &pid, "-D", images.to_str().unwrap()],
        TOOL_TIMEOUT,
    );
    r.assert_no_panic();
    assert_eq!(
        r.code(),
        1,
        "dump of a pid that does not exist\n{}",
        r.report()
    );
    assert!(
        r.stderr.contains(&pid),
        "the error does not name pid {pid}\n{}",
        r.report()
    );
}

#[test]
fn unknown_options_are_usage_errors() {
    let s = Scratch::new("unknown_option");
    let cases: &[(&[&str], &str)] = &[
        (
            &["dump", "--frobnicate", "-t", "1", "-D", "img"],
            "--frobnicate",
        ),
        (
            &["restore", "--no-such-option", "-D", "img"],
            "--no-such-option",
        ),
        (&["--bogus-global", "check"], "--bogus-global"),
        (&["frobnicate"], "frobnicate"),
        (&["dump", "-t", "notapid", "-D", "img"], "notapid"),
    ];
    for (args, name) in cases {
        let r = run_stasis(&s.dir, "usage", args, TOOL_TIMEOUT);
        r.assert_no_panic();
        assert_eq!(
            r.code(),
            2,
            "`stasis {}` must be a usage error\n{}",
            args.join(" "),
            r.report()
        );
        assert!(
            r.stderr.contains(name),
            "`stasis {}`: the message does not name {name}\n{}",
            args.join(" "),
            r.report()
        );
    }
}

#[test]
fn missing_required_options_are_usage_errors() {
    let s = Scratch::new("missing_option");
    let cases: &[&[&str]] = &[
        &["dump", "-D", "img"],
        &["dump", "-t", "1"],
        &["restore"],
        &[],
    ];
    for args in cases {
        let r = run_stasis(&s.dir, "usage", args, TOOL_TIMEOUT);
        r.assert_no_panic();
        assert_eq!(
            r.code(),
            2,
            "`stasis {}` must be a usage error\n{}",
            args.join(" "),
            r.report()
        );
        assert!(
            !r.stderr.trim().is_empty(),
            "`stasis {}` printed no message",
            args.join(" ")
        );
    }
}

#[test]
fn restore_from_a_missing_or_empty_directory_fails() {
    let s = Scratch::new("restore_nothing");
    let empty = s.path("empty");
    fs::create_dir(&empty).unwrap();
    let file = s.path("a-file");
    fs::write(&file, b"not an image\n").unwrap();
    for dir in [s.path("does-not-exist"), empty, file] {
        let r = run_stasis(
            &s.dir,
            "restore",
            &["restore", "-D", dir.to_str().unwrap()],
            TOOL_TIMEOUT,
        );
        r.assert_no_panic();
        assert_eq!(
            r.code(),
            1,
            "restore from {}\n{}",
            dir.display(),
            r.report()
        );
        assert!(
            !r.stderr.trim().is_empty(),
            "restore from {} printed no message",
            dir.display()
        );
    }
}

fn image_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read image dir {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    assert!(
        !v.is_empty(),
        "the image directory {} is empty",
        dir.display()
    );
    v
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    fs::create_dir_all(to).unwrap();
    for f in image_files(from) {
        fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
    }
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Dumps simple_victim (killing it) and returns the session and the image.
fn dumped_simple(tag: &str) -> (Session, PathBuf) {
    let v = Victim::c("simple_victim").named(tag);
    let mut s = Session::start(&v);
    let images = s.scratch.images(1);
    s.dump_ok(&images, &[]);
    s.reap_killed();
    (s, images)
}

/// The untouched image still restores and PASSes: the failures before were the damage.
fn restore_pristine(s: &mut Session, images: &Path) {
    s.restore_and_finish(images, "restore of the undamaged image (control)");
}

#[test]
fn corrupted_image_is_refused() {
    let (mut s, images) = dumped_simple("corrupted_image");
    let bad = s.scratch.path("damaged");
    for f in image_files(&images) {
        let len = fs::metadata(&f).unwrap().len() as usize;
        if len == 0 {
            continue;
        }
        for pos in [0, len / 2, len - 1] {
            copy_dir(&images, &bad);
            let target = bad.join(name(&f));
            let mut data = fs::read(&target).unwrap();
            data[pos] ^= 0x20;
            fs::write(&target, &data).unwrap();
            s.restore_must_fail(
                &bad,
                &["corrupt", "checksum", "magic"],
                PidRule::NeverAppears,
                &format!("byte {pos} of {} flipped", name(&f)),
            );
        }
    }
    restore_pristine(&mut s, &images);
}

#[test]
fn truncated_or_missing_image_file_is_refused() {
    let (mut s, images) = dumped_simple("truncated_image");
    let bad = s.scratch.path("damaged");
    for f in image_files(&images) {
        let len = fs::metadata(&f).unwrap().len();
        let mut cuts = vec![0, len / 2];
        if len > 4096 {
            cuts.push(len - 4096);
        }
        if len > 0 {
            cuts.push(len - 1);
        }
        cuts.dedup();
        for cut in cuts {
            copy_dir(&images, &bad);
            let target = bad.join(name(&f));
            fs::OpenOptions::new()
                .write(true)
                .open(&target)
                .unwrap()
                .set_len(cut)
                .unwrap();
            s.restore_must_fail(
                &bad,
                &["truncat", "corrupt", "checksum", "short", "magic"],
                PidRule::NeverAppears,
                &format!("{} truncated from {len} to {cut} bytes", name(&f)),
            );
        }
        copy_dir(&images, &bad);
        fs::remove_file(bad.join(name(&f))).unwrap();
        s.restore_must_fail(
            &bad,
            &["missing", "no such file", "not found", &name(&f)],
            PidRule::NeverAppears,
            &format!("{} removed", name(&f)),
        );
    }
    restore_pristine(&mut s, &images);
}

#[test]
fn restore_while_the_pid_is_in_use_fails() {
    let v = Victim::c("simple_victim").named("pid_in_use");
    let mut s = Session::start(&v);
    let images = s.scratch.images(1);
    s.dump_ok(&images, &["--leave-running"]);
    s.assert_running_untraced("after dump --leave-running");
    s.restore_must_fail(
        &images,
        &["in use"],
        PidRule::InUse,
        "restore while the original runs",
    );
    s.assert_running_untraced("after the refused restore");
    s.go();
    s.finish_original("the original after a refused restore");
}

fn unsupported(mode: &str, words: &[&str]) {
    let v = Victim::c("unsupported_victim")
        .named(&format!("unsupported_{mode}"))
        .arg(mode);
    let mut s = Session::start(&v);
    let images = s.scratch.images(1);
    let r = s.dump(&images, &[]);
    r.assert_no_panic();
    if r.code() != 1 {
        s.fail(&format!(
            "dump of a process with an {mode} fd must fail with 1\n{}",
            r.report()
        ));
    }
    if !mentions(&r.stderr, words) {
        s.fail(&format!(
            "the dump error does not name the fd kind ({words:?})\n{}",
            r.report()
        ));
    }
    s.assert_running_untraced("after the failed dump");
    s.go();
    s.finish_original("the victim after a failed dump");
}

#[test]
fn dump_with_an_io_uring_fd_fails_and_leaves_the_process_running() {
    unsupported("io_uring", &["io_uring", "io-uring"]);
}

#[test]
fn dump_with_a_perf_event_fd_fails_and_leaves_the_process_running() {
    unsupported("perf", &["perf"]);
}

#[test]
fn dump_with_an_unsupported_file_in_flight_fails_and_leaves_the_process_running() {
    // The error names both: the file is in flight, and it is a perf_event fd.
    unsupported("scm_rights", &["SCM_RIGHTS"]);
    unsupported("scm_rights", &["perf"]);
}

#[test]
fn dump_with_a_seccomp_user_notification_filter_fails_and_leaves_the_process_running() {
    unsupported("seccomp_notify", &["SECCOMP_RET_USER_NOTIF"]);
}

#[test]
fn dump_with_a_seccomp_notification_listener_fails_and_leaves_the_process_running() {
    unsupported("seccomp_listener", &["seccomp"]);
}

#[test]
fn dump_with_a_thread_cpu_time_posix_timer_in_a_threaded_process_fails_and_leaves_it_running() {
    unsupported("timer", &["POSIX timer", "CLOCK_THREAD_CPUTIME_ID"]);
}

#[test]
fn dump_into_an_unusable_directory_fails_and_leaves_the_process_running() {
    let v = Victim::c("simple_victim").named("dump_bad_dir");
    let mut s = Session::start(&v);
    let not_a_dir = s.scratch.path("plain-file");
    fs::write(&not_a_dir, b"x").unwrap();
    let r = s.dump(&not_a_dir.join("images"), &[]);
    r.assert_no_panic();
    if r.code() != 1 {
        s.fail(&format!(
            "dump into a path under a regular file must fail with 1\n{}",
            r.report()
        ));
    }
    s.assert_running_untraced("after the failed dump");
    s.go();
    s.finish_original("the victim after a failed dump");
}

#[test]
fn restore_refuses_files_that_changed_since_the_dump() {
    let v = Victim::c("files_victim").named("changed_files");
    let mut s = Session::start(&v);
    let images = s.scratch.images(1);
    s.dump_ok(&images, &[]);
    s.reap_killed();
    let tmp = s.scratch.tmp();

    // a file that is gone
    let rw = tmp.join("rw.dat");
    let aside = s.scratch.path("rw.dat.aside");
    fs::rename(&rw, &aside).unwrap();
    s.restore_must_fail(
        &images,
        &["rw.dat"],
        PidRule::NothingLeft,
        "a file of the image was removed",
    );
    fs::rename(&aside, &rw).unwrap();

    // a file whose size changed (rewritten in place afterwards: same inode)
    let ro = tmp.join("ro.dat");
    let data = fs::read(&ro).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&ro)
        .unwrap()
        .set_len(data.len() as u64 / 2)
        .unwrap();
    s.restore_must_fail(
        &images,
        &["ro.dat"],
        PidRule::NothingLeft,
        "a file of the image was truncated",
    );
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new().write(true).open(&ro).unwrap();
        f.write_all(&data).unwrap();
    }

    restore_pristine(&mut s, &images);
}
