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
//!   after restore they talk 100 rounds and the child exits 0. The SO_PASSCRED receiver
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
//!   restore accept() takes them in their order and they talk; with `early-data` one
//!   client has sent a byte before being accepted, which cannot be read at dump: the dump
//!   is refused and the tree goes on unharmed (the byte arrives).
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

#[test]
fn waiting_connection_with_data_is_refused() {
    let v = Victim::c("ipc_backlog")
        .named("ipc_backlog_early_data")
        .arg("early-data");
    let mut s = Session::start(&v);
    let images = s.scratch.images(1);
    let run = s.dump(&images, &[]);
    run.assert_no_panic();
    if run.code() != 1 || !mentions(&run.stderr, &["waiting to be accepted"]) {
        let rep = run.report();
        s.fail(&format!(
            "expected the dump to fail (exit 1) naming the waiting connection\n{rep}"
        ));
    }
    s.assert_running_untraced("after the refused dump");
    s.go();
    s.finish_original("after a refused dump");
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
