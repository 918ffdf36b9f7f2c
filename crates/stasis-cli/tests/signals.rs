//! Queued signals: testprogs/sigqueue_many.c queues 100 real-time signals with distinct
//! values over three signal numbers; after restore all 100 are collected in delivery
//! order with their values, and no more. testprogs/sig_during_freeze.c: a signal sent
//! while the dump holds the process frozen is handled once after restore.

mod common;

use std::ffi::OsString;
use std::time::{Duration, Instant};

use common::*;

fn sigqueue_many() -> Victim {
    Victim::c("sigqueue_many")
}

#[test]
fn sigqueue_many_standalone() {
    run_control(&sigqueue_many());
}

#[test]
fn sigqueue_many_dump_restore() {
    run_cycle(&sigqueue_many());
}

#[test]
fn sigqueue_many_dump_restore_twice() {
    run_double_cycle(&sigqueue_many());
}

#[test]
fn sigqueue_many_leave_running() {
    run_leave_running(&sigqueue_many());
}

/// testprogs/sig_during_freeze.c: SIGUSR1 from the test process, sent while the dump has
/// the victim frozen, must reach the restored victim's handler exactly once.
fn sig_during_freeze() -> Victim {
    Victim::c("sig_during_freeze").on_go(|s| {
        let _ = stasis_sys::process::kill(s.pid, libc::SIGUSR1);
    })
}

#[test]
fn sig_during_freeze_standalone() {
    run_control(&sig_during_freeze());
}

#[test]
fn a_signal_sent_during_the_freeze_is_not_lost() {
    // The standalone victim gets its signal with the go file; this one gets it during the
    // dump instead, and none at go.
    let v = Victim::c("sig_during_freeze").named("sig_during_freeze_dumped");
    for attempt in 1..=3 {
        let mut s = Session::start(&v);
        let images = s.scratch.images(1);
        let args: Vec<OsString> = vec![
            "dump".into(),
            "-t".into(),
            s.pid.to_string().into(),
            "-D".into(),
            images.clone().into(),
        ];
        let log = s.scratch.path("dump-1.log");
        let mut tool = Tool::spawn(&s.scratch.dir, "dump-1", &args, Some(log));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut sent_while_frozen = false;
        while Instant::now() < deadline {
            match status_field(s.pid, "TracerPid") {
                Some(t) if t != "0" => {
                    let _ = stasis_sys::process::kill(s.pid, libc::SIGUSR1);
                    sent_while_frozen = status_field(s.pid, "TracerPid").as_deref() == Some(&t);
                    break;
                }
                None => break,
                _ => std::hint::spin_loop(),
            }
        }
        let Some(run) = tool.wait(Duration::from_secs(60)) else {
            tool.kill();
            s.fail("the dump did not finish within 60 s");
        };
        if run.code() != 0 {
            s.fail(&format!("the dump failed\n{}", run.report()));
        }
        s.reap_killed();
        if !sent_while_frozen {
            eprintln!("attempt {attempt}: the signal did not land during the freeze, again");
            continue;
        }
        s.restore_and_finish(&images, "restore of a process signalled during the freeze");
        return;
    }
    panic!("could not send the signal during the freeze in 3 attempts");
}
