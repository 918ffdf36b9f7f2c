//! Unix sockets.
//!
//! - testprogs/ipc_unix.c: stream, datagram and seqpacket socketpairs with messages of
//!   several sizes queued both ways (contents, order and boundaries checked, then
//!   EAGAIN), a shutdown(SHUT_WR) (EOF after the data, EPIPE on the shut side), an
//!   O_NONBLOCK end, SO_SNDBUF/SO_RCVBUF/SO_PASSCRED/SO_PEEK_OFF/SO_RCVTIMEO/SO_SNDTIMEO/
//!   SO_RCVLOWAT (values, and effect for the peek offset and the receive timeout),
//!   listeners bound to a path and to an abstract name (a new client connects, is
//!   accepted and talks), an unconnected datagram socket bound to a path (receives), and a
//!   stream pair across fork with the child blocked in read() and its greeting queued:
//!   after restore they talk 100 rounds and the child exits 0. Two socketpairs (stream,
//!   datagram) whose other end was closed after sending: the bytes come, then end of
//!   file / EPIPE, the datagram, then ECONNREFUSED. The SO_PASSCRED receiver
//!   has datagrams queued (they carry credentials); `creds-on-empty` puts SO_PASSCRED on
//!   the bound datagram socket instead, which has nothing queued.
//! - testprogs/ipc_scm.c: a server and three forked clients mid-conversation over a
//!   listener, with files in flight (SCM_RIGHTS) that only the socket queues hold: a
//!   seqpacket socketpair end with records queued in it, a pipe's read end with bytes in
//!   the pipe, a regular file at an offset passed twice in one message; each client
//!   receives its file after restore and checks it (contents, offset shared by the two
//!   descriptors, the pipe and the socket still connected to the server's ends).
//! - testprogs/ipc_backlog.c: a listener bound to a path with three connections waiting
//!   to be accepted (a client socket of the server itself and two forked clients): after
//!   restore accept() takes them in their order and they talk; stream and seqpacket. With
//!   `early-data` the 2nd and 3rd clients sent data before READY (bytes, records; the last
//!   with a file descriptor whose only reference is in flight), which waits in their
//!   connections: the dump accepts them last (through a duplicate of the
//!   listener) to read it, and restore sends it again from each client once connected:
//!   each connection accepted after restore holds exactly its data, in order, then the
//!   name its client sends, and the file comes with its data at its offset. With --leave-running/--leave-stopped that dump is refused (the
//!   program would miss the connections) and the tree goes on unharmed. With `pass-pipe`
//!   the file in flight is a pipe that only the connection holds: the dump is refused,
//!   leaving no image (too late for the tree, which is then killed).
//! - testprogs/ipc_extsk.c with `dump --ext-unix-sk`: a stream socket whose peer (in a
//!   helper outside the tree) had queued bytes for it, and a datagram socket connected to
//!   the helper's socket bound to a path. After restore the stream socket reads the
//!   queued bytes, then end of file (its peer is gone), and a write gives EPIPE; the
//!   datagram socket is connected to the path again and the helper receives what it
//!   sends. Without the option the dump is refused, naming it.
//! - a socket whose peer is outside the tree (stream and datagram socketpairs), and a
//!   listener with a connection waiting from outside: the dump is refused with a clear
//!   error, and the victim and the outside process go on unharmed with their data.

mod common;

use common::tree::*;
use common::*;

// ---- tests ---------------------------------------------------------------------------------

fn unix_victim() -> Victim {
    Victim::c("ipc_unix")
}

tree_cycle_tests!(unix_victim(), Outside::Compare;
    standalone unix_standalone,
    dump_restore unix_dump_restore,
    dump_restore_twice unix_dump_restore_twice,
    leave_running unix_leave_running,
);

/// The same with SO_PASSCRED on a socket with nothing queued (the default victim's
/// SO_PASSCRED receiver has datagrams queued, which then carry credentials).
fn unix_creds_on_empty() -> Victim {
    Victim::c("ipc_unix")
        .named("ipc_unix_creds_on_empty")
        .arg("creds-on-empty")
}

tree_cycle_tests!(unix_creds_on_empty(), Outside::Compare;
    dump_restore unix_creds_on_empty_dump_restore,
    dump_restore_twice unix_creds_on_empty_dump_restore_twice,
    leave_running unix_creds_on_empty_leave_running,
);

fn scm_victim() -> Victim {
    Victim::c("ipc_scm")
}

tree_cycle_tests!(scm_victim(), Outside::Compare;
    standalone scm_standalone,
    dump_restore scm_dump_restore,
    dump_restore_twice scm_dump_restore_twice,
    leave_running scm_leave_running,
);

fn backlog_victim() -> Victim {
    Victim::c("ipc_backlog")
}

tree_cycle_tests!(backlog_victim(), Outside::Compare;
    standalone backlog_standalone,
    dump_restore backlog_dump_restore,
    dump_restore_twice backlog_dump_restore_twice,
    leave_running backlog_leave_running,
);

fn backlog_seqpacket() -> Victim {
    Victim::c("ipc_backlog")
        .named("ipc_backlog_seqpacket")
        .arg("seqpacket")
}

tree_cycle_tests!(backlog_seqpacket(), Outside::Compare;
    standalone backlog_seqpacket_standalone,
    dump_restore backlog_seqpacket_dump_restore,
);

/// The 2nd and 3rd waiting connections hold what their clients sent before READY: the
/// dump accepts them, last, to read it, and restore sends it again after connecting.
fn backlog_early_data() -> Victim {
    Victim::c("ipc_backlog")
        .named("ipc_backlog_early_data")
        .arg("early-data")
}

tree_cycle_tests!(backlog_early_data(), Outside::Compare;
    standalone backlog_early_data_standalone,
    dump_restore backlog_early_data_dump_restore,
    dump_restore_twice backlog_early_data_dump_restore_twice,
);

fn backlog_seqpacket_early_data() -> Victim {
    Victim::c("ipc_backlog")
        .named("ipc_backlog_seqpacket_early_data")
        .arg("seqpacket")
        .arg("early-data")
}

tree_cycle_tests!(backlog_seqpacket_early_data(), Outside::Compare;
    standalone backlog_seqpacket_early_data_standalone,
    dump_restore backlog_seqpacket_early_data_dump_restore,
    dump_restore_twice backlog_seqpacket_early_data_dump_restore_twice,
);

/// With --leave-running what a waiting connection holds cannot be read (only accepting it
/// would, and the program that goes on would miss it): refused, the tree goes on unharmed
/// and every connection then holds its data.
#[test]
fn backlog_early_data_leave_running_is_refused() {
    Tree::start(&backlog_early_data())
        .expect_refused_dump(&["--leave-running"], "waiting to be accepted by socket:");
}

#[test]
fn backlog_seqpacket_early_data_leave_stopped_is_refused() {
    Tree::start(&backlog_seqpacket_early_data())
        .expect_refused_dump(&["--leave-stopped"], "waiting to be accepted by socket:");
}

/// B's early data carries the read end of a pipe that nothing else holds: describing it
/// would need the pipe's bytes, read before the connections could be accepted, so the
/// dump is refused once it has accepted them (which the tree cannot get back). The refusal
/// must be clear, leave no image (no manifest) and the tree untraced; the tree, which lost
/// its waiting connections, is then killed.
#[test]
fn backlog_pipe_in_flight_is_refused() {
    let v = Victim::c("ipc_backlog")
        .named("ipc_backlog_pass_pipe")
        .arg("pass-pipe");
    let mut t = Tree::start(&v);
    let images = t.images(1);
    let run = t.s().dump(&images, &[]);
    run.assert_no_panic();
    let clear = [
        "before its connection to socket:",
        "held nowhere else in the tree",
    ]
    .iter()
    .all(|w| run.stderr.contains(w));
    if run.code() != 1 || !clear {
        let rep = run.report();
        t.fail(&format!(
            "expected the dump to fail (exit 1) naming the pipe in flight\n{rep}"
        ));
    }
    if images.join(stasis_image::MANIFEST_FILE).exists() {
        t.fail("a refused dump left a manifest");
    }
    t.check_untraced("after the refused dump");
}

#[test]
fn backlog_pass_pipe_leave_running_is_refused() {
    Tree::start(
        &Victim::c("ipc_backlog")
            .named("ipc_backlog_pass_pipe")
            .arg("pass-pipe"),
    )
    .expect_refused_dump(&["--leave-running"], "waiting to be accepted by socket:");
}

#[test]
fn stream_peer_outside_is_refused() {
    dump_refused("unix-stream", &["socket"]);
}

#[test]
fn dgram_peer_outside_is_refused() {
    dump_refused("unix-dgram", &["socket"]);
}

#[test]
fn listener_with_waiting_connection_is_refused() {
    dump_refused(
        "listener",
        &["waiting", "pending", "backlog", "not accepted"],
    );
}

/// ipc_extsk's helper: its pid (from the victim's output), killed and reaped if the test
/// ends early.
struct ExtHelper(i32);

impl ExtHelper {
    fn find(s: &mut Session) -> ExtHelper {
        let out = s.output();
        let Some(pid) = out
            .lines()
            .find_map(|l| l.strip_prefix("helper: "))
            .and_then(|p| p.trim().parse::<i32>().ok())
        else {
            s.fail("the victim did not name its helper");
        };
        if tree_of(s.pid).contains(&pid) {
            s.fail(&format!("the helper {pid} should be outside the tree"));
        }
        ExtHelper(pid)
    }

    /// The helper must exit 0 (it is re-parented to us, a subreaper).
    fn finish(self, s: &mut Session) {
        match wait_reaped(self.0, RESTORE_TIMEOUT) {
            Some(st) if status_code(st) == 0 => {}
            Some(st) => s.fail(&format!(
                "the helper (outside the tree) exited with {}",
                status_code(st)
            )),
            None => s.fail("the helper did not exit after the go file"),
        }
    }
}

impl Drop for ExtHelper {
    fn drop(&mut self) {
        if proc_exists(self.0) && proc_ppid(self.0) == Some(our_pid()) {
            let _ = stasis_sys::process::kill(self.0, libc::SIGKILL);
            let _ = wait_reaped(self.0, GONE_TIMEOUT);
        }
    }
}

#[test]
fn ext_unix_sk_standalone() {
    let mut s = Session::start(&Victim::c("ipc_extsk"));
    let helper = ExtHelper::find(&mut s);
    s.go();
    s.finish_original("without a dump");
    helper.finish(&mut s);
}

#[test]
fn ext_unix_sk_dump_restore() {
    let mut s = Session::start(&Victim::c("ipc_extsk"));
    let helper = ExtHelper::find(&mut s);
    let images = s.scratch.images(1);
    s.dump_ok(&images, &["--ext-unix-sk"]);
    s.reap_killed();
    s.restore_and_finish(&images, "dump --ext-unix-sk, kill, restore");
    helper.finish(&mut s);
}

#[test]
fn ext_unix_sk_is_needed() {
    let mut s = Session::start(&Victim::c("ipc_extsk").named("ipc_extsk_refused"));
    let helper = ExtHelper::find(&mut s);
    let images = s.scratch.images(1);
    let run = s.dump(&images, &[]);
    run.assert_no_panic();
    if run.code() != 1 || !mentions(&run.stderr, &["--ext-unix-sk"]) {
        let rep = run.report();
        s.fail(&format!(
            "expected the dump to fail (exit 1) pointing to --ext-unix-sk\n{rep}"
        ));
    }
    s.assert_running_untraced("after the refused dump");
    s.go();
    s.finish_original("after a refused dump");
    helper.finish(&mut s);
}
