//! Pipes whose two ends are both in the dumped tree.
//!
//! - testprogs/ipc_pipe.c: a producer blocked writing into a full 128 KiB pipe (enlarged
//!   with F_SETPIPE_SZ) and a consumer that, after restore, reads the whole 1 MiB stream
//!   byte for byte, then EOF, and sees the producer exit 0; a pipe with a nonblocking read
//!   end and 11 bytes queued; a full nonblocking 16 KiB pipe (capacities, flags, data).
//! - a shell pipeline (`seq | sort -n | md5sum` under bash) dumped in the middle of its
//!   run: with `seq` blocked on a full pipe before `sort` starts, and with `sort` holding
//!   half of its input while its reader and writer wait; the md5 of the result must be
//!   that of `seq 1 200000`, computed here.
//! - a pipe whose other end is held by a process outside the tree: the dump is refused
//!   naming the pipe, and both processes go on unharmed (testprogs/ipc_extpeer.c).

mod common;

use std::process::Command;

use common::tree::*;
use common::*;

// ---- victims -------------------------------------------------------------------------------

fn pipe_victim() -> Victim {
    Victim::c("ipc_pipe")
}

/// The md5sum line (`HASH  -`) of `seq 1 200000`, computed here.
fn expected_md5() -> String {
    let out = Command::new("/bin/bash")
        .args(["-c", "seq 1 200000 | md5sum"])
        .output()
        .expect("run seq | md5sum");
    assert!(out.status.success(), "seq | md5sum failed");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// A pipeline under bash whose result is checked by the script itself (PASS or FAIL).
/// `full`: `seq` is blocked on a full pipe at the dump and `sort` starts only after the
/// go file; otherwise `sort` has read half of its input (the first `seq` is done) and
/// waits for the rest, which comes after the go file.
fn pipeline(full: bool) -> Victim {
    let script = if full {
        r#"echo READY
result=$(seq 200000 -1 1 | (while [ ! -e "$STASIS_GO" ]; do sleep 0.05; done; sort -n) | md5sum)
if [ "$result" = "$1" ]; then echo PASS; else echo "FAIL: md5 $result, expected $1"; exit 1; fi"#
    } else {
        r#"echo READY
result=$( (seq 200000 -1 100001; while [ ! -e "$STASIS_GO" ]; do sleep 0.05; done; seq 100000 -1 1) | sort -n | md5sum)
if [ "$result" = "$1" ]; then echo PASS; else echo "FAIL: md5 $result, expected $1"; exit 1; fi"#
    };
    let name = if full {
        "pipeline_full_pipe"
    } else {
        "pipeline_sort_midway"
    };
    Victim::program(name, "/bin/bash")
        .args_of(["-c", script, name])
        .arg(expected_md5())
        .ready_when(move |s| {
            if !s.output().lines().any(|l| l == "READY") {
                return false;
            }
            let procs: Vec<(String, Option<char>)> = tree_of(s.pid)
                .into_iter()
                .filter_map(|p| Some((proc_comm(p)?, proc_state(p))))
                .collect();
            let sleeping = |name: &str| procs.iter().any(|(c, st)| c == name && *st == Some('S'));
            let present = |name: &str| procs.iter().any(|(c, _)| c == name);
            if full {
                // seq blocked in write on the full pipe, sort not started
                sleeping("seq") && sleeping("md5sum") && !present("sort")
            } else {
                // the first seq is done, sort waits for more input
                sleeping("sort") && sleeping("md5sum") && !present("seq")
            }
        })
}

// ---- tests ---------------------------------------------------------------------------------

tree_cycle_tests!(pipe_victim(), Outside::Compare;
    standalone pipe_standalone,
    dump_restore pipe_dump_restore,
    dump_restore_twice pipe_dump_restore_twice,
    leave_running pipe_leave_running,
);

tree_cycle_tests!(pipeline(true), Outside::VictimOnly;
    standalone pipeline_standalone,
    dump_restore pipeline_full_pipe_dump_restore,
    dump_restore_twice pipeline_full_pipe_dump_restore_twice,
    leave_running pipeline_full_pipe_leave_running,
);

tree_cycle_tests!(pipeline(false), Outside::VictimOnly;
    dump_restore pipeline_sort_midway_dump_restore,
);

#[test]
fn pipe_read_end_with_writer_outside_is_refused() {
    dump_refused("pipe-read", &["pipe"]);
}

#[test]
fn pipe_write_end_with_reader_outside_is_refused() {
    dump_refused("pipe-write", &["pipe"]);
}
