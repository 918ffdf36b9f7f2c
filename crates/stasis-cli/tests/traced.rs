//! A traced process: testprogs/traced_victim.c, whose child is ptraced (PTRACE_SEIZE) by
//! its parent. Checkpointing a trace is not supported yet: the dump must fail, naming the
//! traced thread and its tracer, and leave both running as before: after the go file the
//! child is still traced by its parent, and the parent can still interrupt, inspect and
//! detach it.

mod common;

use std::time::{Duration, Instant};

use common::tree::*;
use common::*;

fn traced() -> Victim {
    Victim::c("traced_victim")
}

#[test]
fn traced_standalone() {
    tree_control(&traced());
}

#[test]
fn dump_of_a_traced_process_fails_naming_both_and_leaves_them_running() {
    let mut t = Tree::start(&traced());
    let out = t.s().output();
    let Some(tracee) = out
        .lines()
        .find_map(|l| l.strip_prefix("tracee: "))
        .and_then(|p| p.trim().parse::<i32>().ok())
    else {
        t.fail("the victim did not name its tracee");
    };
    let tracer = t.s().pid;
    let images = t.images(1);
    let started = Instant::now();
    let run = t.s().dump(&images, &[]);
    run.assert_no_panic();
    let names_both =
        run.stderr.contains(&tracee.to_string()) && run.stderr.contains(&format!("pid {tracer}"));
    if run.code() != 1 || !mentions(&run.stderr, &["traced"]) || !names_both {
        let rep = run.report();
        t.fail(&format!(
            "expected the dump to fail (exit 1) saying thread {tracee} is traced by pid {tracer}\n{rep}"
        ));
    }
    if started.elapsed() > Duration::from_secs(15) {
        t.fail(&format!("the refused dump took {:?}", started.elapsed()));
    }
    t.s().assert_running_untraced("after the refused dump");
    let tracer_now = status_field(tracee, "TracerPid");
    if tracer_now != Some(tracer.to_string()) {
        t.fail(&format!(
            "after the refused dump the tracee's TracerPid is {tracer_now:?}, expected {tracer}"
        ));
    }
    t.s().go();
    t.s().finish_original("after a refused dump");
    t.finish();
}
