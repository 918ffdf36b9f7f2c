//! POSIX message queues: testprogs/mqueue_victim.c (a queue with messages of several
//! priorities, owner and mode, a second write-only descriptor; an unlinked queue). A queue
//! still there at restore is used as it is; a missing one is created with its attributes,
//! owner, mode and messages. A dump that fails (or refuses a queue with a notification)
//! leaves every message where it was.

mod common;

use common::*;

fn mq(mode: &str) -> Victim {
    Victim::c("mqueue_victim")
        .named(&format!("mqueue_{mode}"))
        .arg(mode)
}

/// The queue names the victim printed ("QUEUES /a /b").
fn names(s: &Session) -> Vec<String> {
    s.output()
        .lines()
        .find_map(|l| l.strip_prefix("QUEUES "))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn mqueue_standalone() {
    run_control(&mq("queues"));
}

#[test]
fn mqueue_dump_restore() {
    // Queue A is still there after the kill (used as it is); B was unlinked and its last
    // holder died with the victim: it is made again from the image.
    run_cycle(&mq("queues"));
}

#[test]
fn mqueue_restored_from_the_image_alone() {
    let mut s = Session::start(&mq("queues"));
    let queues = names(&s);
    assert_eq!(queues.len(), 2, "no queue names\n{}", s.output());
    let images = s.scratch.images(1);
    s.dump_ok(&images, &[]);
    s.reap_killed();
    stasis_sys::mqueue::unlink(&queues[0]).expect("unlink queue A");
    s.restore_and_finish(&images, "restore after the queue was removed");
}

#[test]
fn mqueue_dump_restore_twice() {
    run_double_cycle(&mq("queues"));
}

#[test]
fn mqueue_leave_running() {
    // The original empties and unlinks its queue: restore makes it again.
    run_leave_running(&mq("queues"));
}

#[test]
fn mqueue_name_taken_by_another_queue_is_refused() {
    let mut s = Session::start(&mq("queues"));
    let queues = names(&s);
    let images = s.scratch.images(1);
    s.dump_ok(&images, &[]);
    s.reap_killed();
    stasis_sys::mqueue::unlink(&queues[0]).expect("unlink queue A");
    let other = stasis_sys::mqueue::Mq::create(&queues[0], libc::O_RDONLY, 0o600, 3, 32)
        .expect("create another queue under A's name");
    s.restore_must_fail(
        &images,
        &["taken by a different queue"],
        PidRule::NeverAppears,
        "restore with the queue name taken",
    );
    drop(other);
    let _ = stasis_sys::mqueue::unlink(&queues[0]);
    // The unlinked queue B must not have been left under its name.
    assert!(
        stasis_sys::mqueue::Mq::open(&queues[1], libc::O_RDONLY).is_err(),
        "the failed restore left queue {} behind",
        queues[1]
    );
}

fn refused(mode: &str, words: &[&str]) {
    let mut s = Session::start(&mq(mode));
    let images = s.scratch.images(1);
    let r = s.dump(&images, &[]);
    r.assert_no_panic();
    if r.code() != 1 || !mentions(&r.stderr, words) {
        s.fail(&format!(
            "the dump must fail naming {words:?}\n{}",
            r.report()
        ));
    }
    s.assert_running_untraced("after the failed dump");
    s.go();
    s.finish_original("the victim after a failed dump");
}

#[test]
fn mqueue_with_a_notification_is_refused_and_left_as_it_was() {
    refused("notify", &["notification"]);
}

#[test]
fn failed_dump_gives_every_message_back() {
    refused("fail", &["io_uring", "io-uring"]);
}
