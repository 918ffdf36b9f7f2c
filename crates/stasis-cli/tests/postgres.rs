//! A real database server: PostgreSQL (a postmaster and its background processes, with
//! shared buffers in shared anonymous memory, a SysV segment, /dev/shm segments, latches,
//! and a listening unix socket whose file tells who may connect), dumped after clients
//! came and went, killed, restored, then used by new clients: the rows written before
//! the dump are there, new ones can be written, and the server shuts down cleanly.
//!
//! Two faults were found this way and are covered by victims of their own: pages of the
//! shared buffers that only exited backends had touched (testprogs/shmem_tree.c), and
//! the owner and mode of the socket file (testprogs/ipc_unix.c).

mod common;

use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::tree::our_pid;
use common::*;

const TIMEOUT: Duration = Duration::from_secs(60);

/// The PostgreSQL server programs (Debian's layout) and the user they run as.
struct Install {
    bin: PathBuf,
    uid: u32,
    gid: u32,
}

fn install() -> Install {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|d| {
            d.flatten()
                .map(|e| e.path().join("bin"))
                .find(|b| b.join("postgres").exists())
        })
        .expect("PostgreSQL is not installed (.ci/run installs the postgresql package)");
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let entry = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("no postgres user");
    let field = |i: usize| -> u32 {
        entry
            .split(':')
            .nth(i)
            .and_then(|v| v.parse().ok())
            .expect("passwd entry")
    };
    Install {
        bin,
        uid: field(2),
        gid: field(3),
    }
}

/// A server in `dir`; every process it had is killed and reaped on drop.
struct Server<'a> {
    pg: &'a Install,
    dir: PathBuf,
    pids: Vec<i32>,
}

impl Server<'_> {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs a PostgreSQL program as the postgres user; panics if it fails.
    fn run(&self, program: &str, args: &[&str]) -> String {
        let out: Output = Command::new(self.pg.bin.join(program))
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LC_ALL", "C")
            .current_dir(&self.dir)
            .uid(self.pg.uid)
            .gid(self.pg.gid)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn sql(&self, query: &str) -> String {
        let host = self.dir.to_str().unwrap();
        self.run("psql", &["-h", host, "-d", "postgres", "-Atc", query])
            .trim()
            .to_string()
    }

    fn postmaster(&self) -> i32 {
        let pidfile = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .expect("read postmaster.pid");
        pidfile
            .lines()
            .next()
            .and_then(|l| l.parse().ok())
            .expect("postmaster pid")
    }
}

impl Drop for Server<'_> {
    fn drop(&mut self) {
        for &pid in self.pids.iter().filter(|&&p| proc_exists(p)) {
            let _ = stasis_sys::process::kill(pid, libc::SIGKILL);
        }
        for &pid in self.pids.iter().filter(|&&p| proc_exists(p)) {
            let _ = wait_reaped(pid, Duration::from_secs(5));
        }
    }
}

/// The processes of the tree of `root`, parents first.
fn tree(root: i32) -> Vec<i32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        for entry in std::fs::read_dir("/proc").expect("list /proc").flatten() {
            if let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            {
                if proc_ppid(pid) == Some(parent) && !out.contains(&pid) {
                    out.push(pid);
                }
            }
        }
        i += 1;
    }
    out
}

fn path_arg(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn postgres_server_comes_back_with_its_data() {
    require_root();
    ensure_subreaper();
    let pg = install();
    let s = Scratch::new("pg");
    let dir = s.tmp().join("pg");
    std::fs::create_dir(&dir).expect("create the server directory");
    chown(&dir, Some(pg.uid), Some(pg.gid)).expect("chown the server directory");
    let mut server = Server {
        pg: &pg,
        dir,
        pids: Vec::new(),
    };
    let data = server.data();
    server.run(
        "initdb",
        &["-D", path_arg(&data), "-A", "trust", "--no-sync"],
    );
    let options = format!(
        "-c listen_addresses='' -c unix_socket_directories={} -c shared_buffers=16MB -c fsync=off",
        path_arg(&server.dir)
    );
    let log = server.dir.join("log");
    server.run(
        "pg_ctl",
        &[
            "-D",
            path_arg(&data),
            "-o",
            &options,
            "-l",
            path_arg(&log),
            "-w",
            "start",
        ],
    );
    let postmaster = server.postmaster();
    server.pids = tree(postmaster);
    assert_eq!(
        proc_ppid(postmaster),
        Some(our_pid()),
        "the postmaster should be a child of this test (its subreaper)"
    );
    server.sql("create table t (x int)");
    // Each client has a backend of its own, which writes shared buffers and ends.
    for i in 0..4 {
        server.sql(&format!(
            "insert into t select generate_series({}, {})",
            i * 100 + 1,
            i * 100 + 100
        ));
    }
    assert_eq!(server.sql("select count(*), sum(x) from t"), "400|80200");
    server.pids = tree(postmaster);

    let images = s.images(1);
    let pid_arg = postmaster.to_string();
    let dump = run_stasis(
        &s.dir,
        "dump",
        &["dump", "-t", &pid_arg, "-D", path_arg(&images)],
        TIMEOUT,
    );
    dump.assert_no_panic();
    assert_eq!(
        dump.code(),
        0,
        "dump of the PostgreSQL server\n{}",
        dump.report()
    );
    for &pid in &server.pids {
        wait_gone(pid, "the dumped server");
    }

    let restore = run_stasis(
        &s.dir,
        "restore",
        &["restore", "-D", path_arg(&images), "-d"],
        TIMEOUT,
    );
    restore.assert_no_panic();
    assert_eq!(
        restore.code(),
        0,
        "restore of the PostgreSQL server\n{}",
        restore.report()
    );
    // (How many processes there are depends on what was ending at the dump: a backend
    // that was exiting comes back as a zombie, which the postmaster reaps.)
    assert!(
        proc_comm(postmaster).is_some_and(|c| c.starts_with("postgres")),
        "the restored postmaster: {:?}",
        proc_comm(postmaster)
    );

    // New clients: the rows are there, new ones are written, and a fast shutdown (which
    // writes a checkpoint) ends every process cleanly.
    assert_eq!(server.sql("select count(*), sum(x) from t"), "400|80200");
    server.sql("insert into t values (1000)");
    assert_eq!(server.sql("select count(*), max(x) from t"), "401|1000");
    server.run(
        "pg_ctl",
        &["-D", path_arg(&data), "-m", "fast", "-w", "stop"],
    );
    let status = wait_reaped(postmaster, TIMEOUT).expect("the restored postmaster did not end");
    assert!(
        status.success(),
        "the restored postmaster ended with {status:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains("PANIC") && !text.contains("ERROR"),
        "the server's log reports errors:\n{text}"
    );
}
