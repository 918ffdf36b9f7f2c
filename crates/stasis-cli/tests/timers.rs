//! Interval timers: testprogs/ipc_itimer.c arms ITIMER_REAL (100 ms period, a SIGALRM
//! handler counting), ITIMER_VIRTUAL (5 s, 7 s period) and ITIMER_PROF (20 ms period).
//! After restore getitimer shows the same intervals and plausible values, the SIGALRM
//! handler runs about 10 times a second (4 to 9 calls in 600 ms of CLOCK_MONOTONIC),
//! 300 ms of busy CPU bring at least 5 SIGPROFs, and SIGVTALRM has not come.

mod common;

use common::*;

fn itimer() -> Victim {
    Victim::c("ipc_itimer")
}

#[test]
fn itimer_standalone() {
    run_control(&itimer());
}

#[test]
fn itimer_dump_restore() {
    run_cycle(&itimer());
}

#[test]
fn itimer_dump_restore_twice() {
    run_double_cycle(&itimer());
}

#[test]
fn itimer_leave_running() {
    run_leave_running(&itimer());
}
