//! The fd table: testprogs/files_victim.c (regular files with offsets and flags, dup'ed fds, directory, O_PATH, character devices).

mod common;

use common::*;

fn victim() -> Victim {
    Victim::c("files_victim")
}

#[test]
fn files_standalone() {
    run_control(&victim());
}

#[test]
fn files_dump_restore() {
    run_cycle(&victim());
}

#[test]
fn files_dump_restore_twice() {
    run_double_cycle(&victim());
}

#[test]
fn files_leave_running() {
    run_leave_running(&victim());
}

/// testprogs/tty_victim.c: stdin, stdout and stderr on a pseudo-terminal.
fn tty() -> Victim {
    Victim::c("tty_victim").on_terminal()
}

#[test]
fn terminal_standalone() {
    run_control(&tty());
}

#[test]
fn terminal_without_shell_job_is_refused() {
    let mut s = Session::start(&tty());
    let images = s.scratch.images(1);
    let r = s.dump(&images, &[]);
    r.assert_no_panic();
    if r.code() != 1 {
        s.fail(&format!(
            "dump of a process on a terminal without --shell-job must fail with 1\n{}",
            r.report()
        ));
    }
    if !mentions(&r.stderr, &["shell-job"]) {
        s.fail(&format!(
            "the error does not point to --shell-job\n{}",
            r.report()
        ));
    }
    s.assert_running_untraced("after the refused dump");
    s.go();
    s.finish_original("the victim after a refused dump");
}

#[test]
fn shell_job_restores_onto_the_current_terminal() {
    let mut s = Session::start(&tty());
    let before = s.ptys[0].slave_path.display().to_string();
    let images = s.scratch.images(1);
    s.dump_ok(&images, &["--shell-job"]);
    s.reap_killed();
    let (t, terminal) = s.spawn_restore_on_terminal(&images, &["--shell-job"]);
    if s.wait_restored(t).is_some() {
        s.fail("the restored process exited by itself");
    }
    s.go();
    let out = s.finish_restored(t, "restore --shell-job");
    let after = terminal.display().to_string();
    assert!(
        out.contains(&format!("tty-before: {before}\n")),
        "the victim did not start on {before}:\n{out}"
    );
    assert!(
        out.contains(&format!("tty-after: {after}\n")),
        "after restore --shell-job the victim is not on the restore's terminal {after}:\n{out}"
    );
}
