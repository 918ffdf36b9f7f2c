//! Anonymous-inode fds: testprogs/ipc_anon.c runs an epoll loop over a semaphore
//! eventfd, a periodic timerfd, a signalfd with a pending signal and a nested epoll
//! holding an edge-triggered eventfd. After restore every source fires as it should
//! (the eventfd exactly 3 times, the timer at about its rate after its backlog, the
//! signal once, the nested epoll once with the whole count), the registrations' events
//! and data in /proc/self/fdinfo are as before, the timers keep their settings and the
//! signalfd its mask. Two registrations outlive their descriptor number (a pipe end and
//! an eventfd, dup'ed elsewhere and closed; one old number reused by /dev/null): they
//! keep their old numbers and still deliver, and the numbers keep what they held.

mod common;

use common::*;

fn anon() -> Victim {
    Victim::c("ipc_anon")
}

#[test]
fn anon_standalone() {
    run_control(&anon());
}

#[test]
fn anon_dump_restore() {
    run_cycle(&anon());
}

#[test]
fn anon_dump_restore_twice() {
    run_double_cycle(&anon());
}

#[test]
fn anon_leave_running() {
    run_leave_running(&anon());
}

/// testprogs/epoll_in_flight.c: an epoll instance that only a message in flight holds, one
/// registration of a number closed since; after restore it is received and still delivers.
fn epoll_in_flight() -> Victim {
    Victim::c("epoll_in_flight")
}

#[test]
fn epoll_in_flight_standalone() {
    run_control(&epoll_in_flight());
}

#[test]
fn epoll_in_flight_dump_restore() {
    run_cycle(&epoll_in_flight());
}

#[test]
fn epoll_in_flight_dump_restore_twice() {
    run_double_cycle(&epoll_in_flight());
}

#[test]
fn epoll_in_flight_leave_running() {
    run_leave_running(&epoll_in_flight());
}

/// The other way round: the process keeps its epoll instance, and the file registered in
/// it is held only by a message in flight (the process closed its own descriptor).
fn epoll_file_in_flight() -> Victim {
    Victim::c("epoll_in_flight")
        .named("epoll_file_in_flight")
        .arg("file-in-flight")
}

#[test]
fn epoll_file_in_flight_standalone() {
    run_control(&epoll_file_in_flight());
}

#[test]
fn epoll_file_in_flight_dump_restore() {
    run_cycle(&epoll_file_in_flight());
}

#[test]
fn epoll_file_in_flight_dump_restore_twice() {
    run_double_cycle(&epoll_file_in_flight());
}

#[test]
fn epoll_file_in_flight_leave_running() {
    run_leave_running(&epoll_file_in_flight());
}
