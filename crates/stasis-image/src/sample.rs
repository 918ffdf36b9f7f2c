//! A small but realistic image, for tests (this crate's and others', e.g. `stasis show`)
//! and for documentation. Nothing here touches a real process.

use std::path::Path;

use crate::dir::{pages_file_name, task_file_name, ImageWriter};
use crate::types::*;
use crate::ImageError;

/// Page size of the sample image.
pub const PAGE_SIZE: u64 = 4096;

fn vma(start: u64, end: u64, prot: u32, kind: VmaKind, pgoff: u64, flags: &str) -> Vma {
    Vma {
        start,
        end,
        prot,
        shared: false,
        kind,
        pgoff,
        vm_flags: flags.split(' ').map(str::to_string).collect(),
    }
}

fn thread(tid: i32, comm: &str) -> ThreadImage {
    ThreadImage {
        tid,
        comm: comm.to_string(),
        regs: GpRegs {
            rip: 0x5555_5555_5123,
            rsp: 0x7ffd_1234_5670,
            rax: 0xffff_ffff_ffff_fdfc, // -ERESTART_RESTARTBLOCK
            orig_rax: 230,              // clock_nanosleep
            fs_base: 0x7f12_3456_7740,
            cs: 0x33,
            ss: 0x2b,
            eflags: 0x246,
            ..GpRegs::default()
        },
        xstate: (0..2696u32).map(|i| (i % 251) as u8).collect(),
        sigmask: 1 << (17 - 1), // SIGCHLD
        sigaltstack: SigAltStack {
            sp: 0,
            flags: 2, // SS_DISABLE
            size: 0,
        },
        clear_child_tid: 0x7f12_3456_7a10,
        robust_list: RobustList {
            head: 0x7f12_3456_7a20,
            len: 24,
        },
        rseq: Some(RseqConfig {
            abi_pointer: 0x7f12_3456_7fe0,
            len: 32,
            flags: 0,
            signature: 0x5305_3053,
        }),
        sched: SchedParams::default(),
        pending: Vec::new(),
        creds: None,
        seccomp: None,
    }
}

/// The metadata of a sample task; its page runs describe `pages_per_run * 2` pages laid out
/// as [`write_image`] writes them (one run in the heap, one at the top of the stack; at
/// most 33 pages per run fit).
pub fn task(pid: i32, ppid: i32, pages_per_run: u64) -> TaskImage {
    let p = PAGE_SIZE;
    let heap = 0x5555_5557_9000u64;
    let stack_end = 0x7ffd_1234_8000u64;
    let mut actions: Vec<SigAction> = (1..=64)
        .map(|signo| SigAction {
            signo,
            ..SigAction::default()
        })
        .collect();
    actions[1] = SigAction {
        signo: 2,
        handler: 0x5555_5555_6000,
        flags: 0x0400_0000 | 0x1000_0000, // SA_RESTORER | SA_RESTART
        restorer: 0x7f12_3440_0520,
        mask: 1 << (15 - 1),
    };
    actions[12].handler = 1; // SIGPIPE ignored
    TaskImage {
        pid,
        ppid,
        pgid: pid,
        sid: ppid.max(1),
        state: 'S',
        job_stopped: false,
        job_stop_signal: 0,
        exit_status: 0,
        threads: vec![
            thread(pid, "sample"),
            thread(pid.saturating_add(1000), "sample-worker"),
        ],
        signals: SignalTable { actions },
        attrs: ProcessAttrs {
            cwd: "/home/user".into(),
            root: "/".into(),
            exe: "/usr/bin/sample".into(),
            umask: 0o022,
            personality: 0,
            rlimits: vec![
                Rlimit {
                    resource: 3,
                    soft: 8 << 20,
                    hard: u64::MAX,
                },
                Rlimit {
                    resource: 7,
                    soft: 1024,
                    hard: 524_288,
                },
            ],
            dumpable: 1,
            pdeath_signal: 0,
            child_subreaper: false,
            no_new_privs: false,
            thp_disable: false,
            oom_score_adj: 0,
            shell_job: true,
            loginuid: Some(1000),
        },
        creds: Credentials {
            uid: [1000; 4],
            gid: [1000; 4],
            groups: vec![4, 27, 1000],
            cap_bounding: 0x1ff_ffff_ffff,
            ..Credentials::default()
        },
        mm: MmImage {
            start_code: 0x5555_5555_4000,
            end_code: 0x5555_5555_8000,
            start_data: 0x5555_5557_7000,
            end_data: 0x5555_5557_8000,
            start_brk: heap,
            brk: heap + 0x21000,
            start_stack: stack_end - 0x130,
            arg_start: stack_end - 0x100,
            arg_end: stack_end - 0xf0,
            env_start: stack_end - 0xf0,
            env_end: stack_end - 0x20,
            auxv: vec![6, 4096, 25, stack_end - 0x200, 0, 0],
            vmas: vec![
                vma(
                    0x5555_5555_4000,
                    0x5555_5555_8000,
                    5,
                    VmaKind::File {
                        path: "/usr/bin/sample".into(),
                        dev: 0x803,
                        ino: 1234,
                        size: 0x8000,
                    },
                    0,
                    "rd ex mr mw me dw",
                ),
                vma(
                    heap,
                    heap + 0x21000,
                    3,
                    VmaKind::Anonymous {
                        name: Some("[heap]".into()),
                    },
                    0,
                    "rd wr mr mw me ac",
                ),
                vma(
                    stack_end - 0x21000,
                    stack_end,
                    3,
                    VmaKind::Anonymous {
                        name: Some("[stack]".into()),
                    },
                    0,
                    "rd wr mr mw me gd ac",
                ),
                vma(
                    0x7ffd_1238_0000,
                    0x7ffd_1238_2000,
                    5,
                    VmaKind::Special {
                        name: "[vdso]".into(),
                    },
                    0,
                    "rd ex mr mw me de",
                ),
            ],
            pages: vec![
                PageRun {
                    vaddr: heap,
                    count: pages_per_run,
                    offset: 0,
                },
                PageRun {
                    vaddr: stack_end - pages_per_run * p,
                    count: pages_per_run,
                    offset: pages_per_run * p,
                },
            ],
            inherited: Vec::new(),
        },
        fds: vec![
            FdImage {
                fd: 0,
                flags: 0o2,
                cloexec: false,
                pos: 0,
                desc: 1,
                file: FileKind::Terminal {
                    path: "/dev/pts/3".into(),
                },
            },
            FdImage {
                fd: 1,
                flags: 0o100001,
                cloexec: false,
                pos: 0,
                desc: 2,
                file: FileKind::CharDevice {
                    path: "/dev/null".into(),
                    rdev: 0x103,
                },
            },
            FdImage {
                fd: 3,
                flags: 0o102001 | 0o2000000,
                cloexec: true,
                pos: 4096,
                desc: 3,
                file: FileKind::Regular {
                    path: "/tmp/sample.log".into(),
                    size: 4096,
                    dev: 0x803,
                    ino: 99,
                    mode: 0o100644,
                },
            },
        ],
        itimers: vec![ITimer {
            which: 0,
            interval_us: 100_000,
            value_us: 42_000,
        }],
        posix_timers: vec![PosixTimer {
            id: 3,
            clock: 1,
            notify: 4,
            signo: 34,
            value: 0xA11CE,
            target_tid: pid.saturating_add(1000),
            interval_ns: 50_000_000,
            value_ns: 12_345_678,
            overrun: 0,
        }],
        shared_pending: Vec::new(),
        socket_queues: Vec::new(),
        pipe_data: Vec::new(),
        shared_with_parent: SharedWithParent::default(),
        vfork_child: false,
        file_objects: Vec::new(),
        file_locks: Vec::new(),
    }
}

/// The deterministic content of page `index` of task `pid`.
pub fn page_content(pid: i32, index: u64) -> Vec<u8> {
    let mut x = (pid as u64) << 32 | index | 1;
    (0..PAGE_SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes a two-task image (pid 100 and its child 101, `pages_per_run * 2` pages each) to
/// `dir` and returns its manifest.
pub fn write_image(dir: &Path, pages_per_run: u64) -> Result<Manifest, ImageError> {
    let mut w = ImageWriter::create(dir)?;
    let mut tasks = Vec::new();
    for (pid, ppid) in [(100, 1), (101, 100)] {
        let t = task(pid, ppid, pages_per_run);
        let core_file = task_file_name(pid);
        let pages_file = pages_file_name(pid);
        w.write_task(&core_file, &t)?;
        let mut pages = w.pages(&pages_file)?;
        for i in 0..pages_per_run * 2 {
            pages.write_all(&page_content(pid, i))?;
        }
        w.add_pages(pages)?;
        tasks.push(TaskEntry {
            pid,
            ppid,
            core_file,
            pages_file,
        });
    }
    let manifest = Manifest {
        tool_version: "stasis 0.1.0".into(),
        kernel_release: "6.8.0-sample".into(),
        page_size: PAGE_SIZE,
        xsave_features: 0x2e7,
        root_pid: 100,
        tasks,
        files: Vec::new(),
        dump_options: vec!["--shell-job".into()],
        clocks: Some(DumpClocks {
            monotonic_ns: 12_000_000_001,
            boottime_ns: 13_000_000_002,
        }),
        requires: vec![crate::features::SEM_UNDO.into()],
    };
    w.finish(manifest)?;
    Ok(crate::ImageReader::open(dir)?.manifest().clone())
}
