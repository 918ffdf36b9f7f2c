//! A real terminal multiplexer: a tmux server with an interactive bash in a pane, dumped
//! (and killed) with what its pane shows, restored, and driven again by a new tmux client.
//!
//! The server daemonizes, so it is a child of this test (the child subreaper), not of
//! the harness. It holds a pty master (the pane's), a listening unix socket bound to a
//! path (where clients connect), and a pipe to itself; the bash holds the slave as its
//! controlling terminal. After restore, a client connects to the restored listener, the
//! pane's history from before the dump is still there, and the same bash (its shell
//! variable kept) runs a command typed through the restored pty.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::tree::our_pid;
use common::*;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A tmux server on its own socket; killed and reaped on drop, whatever happened.
struct Server {
    sock: PathBuf,
    pids: Vec<i32>,
}

impl Server {
    fn run(&self, args: &[&str]) -> String {
        tmux(&self.sock, args)
    }

    /// Waits until the pane shows `text`, or panics with what it shows.
    fn wait_pane(&self, text: &str, what: &str) {
        let start = Instant::now();
        loop {
            let shown = self.run(&["capture-pane", "-p", "-t", "main"]);
            if shown.contains(text) {
                return;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "{what}: the pane does not show {text:?}; it shows:\n{shown}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.sock)
            .arg("kill-server")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for &pid in self.pids.iter().filter(|&&p| proc_exists(p)) {
            let _ = stasis_sys::process::kill(pid, libc::SIGKILL);
        }
        for &pid in self.pids.iter().filter(|&&p| proc_exists(p)) {
            let _ = wait_reaped(pid, Duration::from_secs(5));
        }
    }
}

/// Runs `tmux -S SOCK ARGS` and returns its standard output; panics if it fails.
fn tmux(sock: &Path, args: &[&str]) -> String {
    let out = Command::new("tmux")
        .arg("-S")
        .arg(sock)
        .args(args)
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run tmux {args:?} (is tmux installed?): {e}"));
    assert!(
        out.status.success(),
        "tmux {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tmux_server_with_a_shell_in_a_pane() {
    require_root();
    ensure_subreaper();
    let s = Scratch::new("tmux");
    let mut server = Server {
        sock: s.tmp().join("sock"),
        pids: Vec::new(),
    };
    server.run(&[
        "-f",
        "/dev/null",
        "new-session",
        "-d",
        "-s",
        "main",
        "-x",
        "100",
        "-y",
        "30",
        "bash --norc --noprofile -i",
    ]);
    let pid_of = |format: &str| -> i32 {
        let text = server.run(&["display-message", "-p", "-t", "main", format]);
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("tmux display-message {format}: {text:?}"))
    };
    let (server_pid, shell_pid) = (pid_of("#{pid}"), pid_of("#{pane_pid}"));
    server.pids = vec![shell_pid, server_pid];
    assert_eq!(
        proc_ppid(server_pid),
        Some(our_pid()),
        "the daemonized tmux server should be a child of this test (its subreaper)"
    );
    server.run(&["send-keys", "-t", "main", "X=42; echo before-$X", "Enter"]);
    server.wait_pane("before-42", "before the dump");
    // The shell waits for input again: nothing is half done when the tree is frozen.
    let start = Instant::now();
    while proc_state(shell_pid) != Some('S') {
        assert!(
            start.elapsed() < TIMEOUT,
            "the pane's shell does not go to sleep"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let images = s.images(1);
    let pid_arg = server_pid.to_string();
    let dump = run_stasis(
        &s.dir,
        "dump",
        &["dump", "-t", &pid_arg, "-D", images.to_str().unwrap()],
        TIMEOUT,
    );
    dump.assert_no_panic();
    assert_eq!(dump.code(), 0, "dump of the tmux server\n{}", dump.report());
    wait_gone(server_pid, "the dumped tmux server");
    wait_gone(shell_pid, "the dumped shell");

    let restore = run_stasis(
        &s.dir,
        "restore",
        &["restore", "-D", images.to_str().unwrap(), "-d"],
        TIMEOUT,
    );
    restore.assert_no_panic();
    assert_eq!(
        restore.code(),
        0,
        "restore of the tmux server\n{}",
        restore.report()
    );
    assert_eq!(
        proc_comm(server_pid).as_deref(),
        Some("tmux: server"),
        "the restored server"
    );
    assert_eq!(
        proc_ppid(shell_pid),
        Some(server_pid),
        "the restored shell's parent"
    );

    // A new client reaches the restored listener; the pane kept its history.
    server.wait_pane("before-42", "after restore");
    let out = s.tmp().join("out");
    let command = format!("echo \"X is $X\" > {}", out.display());
    server.run(&["send-keys", "-t", "main", &command, "Enter"]);
    let start = Instant::now();
    while !read_lossy(&out).contains("X is 42") {
        assert!(
            start.elapsed() < TIMEOUT,
            "the restored shell did not run the command typed through the pane: {:?}",
            read_lossy(&out)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.run(&["kill-server"]);
    let status = wait_reaped(server_pid, TIMEOUT).expect("the restored server did not end");
    assert!(
        status.success(),
        "the restored tmux server ended with {status:?}"
    );
}
