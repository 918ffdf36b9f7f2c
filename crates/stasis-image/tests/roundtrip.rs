//! Property tests: every Manifest and TaskImage survives encode/decode (CBOR and JSON), and
//! decoding arbitrary or mutated bytes returns an error instead of panicking.

use proptest::collection::vec;
use proptest::prelude::*;
use stasis_image::container::{self, MetaKind, FORMAT_MAJOR, FORMAT_MINOR, HEADER_LEN};
use stasis_image::*;

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9/._-]{0,24}", any::<String>(), Just(String::new()),]
}

fn task_entry() -> impl Strategy<Value = TaskEntry> {
    (any::<i32>(), any::<i32>(), text(), text()).prop_map(|(pid, ppid, core_file, pages_file)| {
        TaskEntry {
            pid,
            ppid,
            core_file,
            pages_file,
        }
    })
}

fn file_digest() -> impl Strategy<Value = FileDigest> {
    (text(), any::<u64>(), any::<u64>()).prop_map(|(name, len, xxh3)| FileDigest {
        name,
        len,
        xxh3,
    })
}

fn manifest() -> impl Strategy<Value = Manifest> {
    (
        text(),
        text(),
        any::<u64>(),
        any::<u64>(),
        any::<i32>(),
        vec(task_entry(), 0..6),
        vec(file_digest(), 0..8),
        vec(text(), 0..4),
        proptest::option::of((any::<u64>(), any::<u64>())),
        proptest::sample::subsequence(
            stasis_image::features::KNOWN
                .iter()
                .map(|k| k.0.to_string())
                .collect::<Vec<_>>(),
            0..=stasis_image::features::KNOWN.len(),
        ),
    )
        .prop_map(
            |(
                tool_version,
                kernel_release,
                page_size,
                xsave_features,
                root_pid,
                tasks,
                files,
                dump_options,
                clocks,
                requires,
            )| {
                Manifest {
                    tool_version,
                    kernel_release,
                    page_size,
                    xsave_features,
                    root_pid,
                    tasks,
                    files,
                    dump_options,
                    clocks: clocks.map(|(monotonic_ns, boottime_ns)| DumpClocks {
                        monotonic_ns,
                        boottime_ns,
                    }),
                    requires,
                }
            },
        )
}

fn gp_regs() -> impl Strategy<Value = GpRegs> {
    vec(any::<u64>(), 27).prop_map(|r| GpRegs {
        r15: r[0],
        r14: r[1],
        r13: r[2],
        r12: r[3],
        rbp: r[4],
        rbx: r[5],
        r11: r[6],
        r10: r[7],
        r9: r[8],
        r8: r[9],
        rax: r[10],
        rcx: r[11],
        rdx: r[12],
        rsi: r[13],
        rdi: r[14],
        orig_rax: r[15],
        rip: r[16],
        cs: r[17],
        eflags: r[18],
        rsp: r[19],
        ss: r[20],
        fs_base: r[21],
        gs_base: r[22],
        ds: r[23],
        es: r[24],
        fs: r[25],
        gs: r[26],
    })
}

fn thread() -> impl Strategy<Value = ThreadImage> {
    (
        any::<i32>(),
        text(),
        gp_regs(),
        vec(any::<u8>(), 0..5000),
        any::<u64>(),
        (any::<u64>(), any::<i32>(), any::<u64>()),
        any::<u64>(),
        (any::<u64>(), any::<u64>()),
        proptest::option::of((any::<u64>(), any::<u32>(), any::<u32>(), any::<u32>())),
        (any::<i32>(), any::<i32>(), any::<i32>(), any::<bool>()),
    )
        .prop_map(
            |(tid, comm, regs, xstate, sigmask, alt, clear_child_tid, robust, rseq, sched)| {
                ThreadImage {
                    tid,
                    comm,
                    regs,
                    xstate,
                    sigmask,
                    sigaltstack: SigAltStack {
                        sp: alt.0,
                        flags: alt.1,
                        size: alt.2,
                    },
                    clear_child_tid,
                    robust_list: RobustList {
                        head: robust.0,
                        len: robust.1,
                    },
                    rseq: rseq.map(|(abi_pointer, len, flags, signature)| RseqConfig {
                        abi_pointer,
                        len,
                        flags,
                        signature,
                    }),
                    sched: SchedParams {
                        policy: sched.0,
                        priority: sched.1,
                        nice: sched.2,
                        reset_on_fork: sched.3,
                    },
                    pending: Vec::new(),
                    creds: None,
                    seccomp: None,
                }
            },
        )
}

fn sig_action() -> impl Strategy<Value = SigAction> {
    (
        any::<i32>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(signo, handler, flags, restorer, mask)| SigAction {
            signo,
            handler,
            flags,
            restorer,
            mask,
        })
}

fn attrs() -> impl Strategy<Value = ProcessAttrs> {
    (
        (text(), text(), text()),
        (any::<u32>(), any::<u32>()),
        vec(
            (any::<u32>(), any::<u64>(), any::<u64>()).prop_map(|(resource, soft, hard)| Rlimit {
                resource,
                soft,
                hard,
            }),
            0..16,
        ),
        (any::<i32>(), any::<i32>(), any::<i32>()),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(
            |((cwd, root, exe), (umask, personality), rlimits, ints, bools, loginuid)| {
                ProcessAttrs {
                    cwd,
                    root,
                    exe,
                    umask,
                    personality,
                    rlimits,
                    dumpable: ints.0,
                    pdeath_signal: ints.1,
                    oom_score_adj: ints.2,
                    child_subreaper: bools.0,
                    no_new_privs: bools.1,
                    thp_disable: bools.2,
                    shell_job: bools.3,
                    loginuid,
                }
            },
        )
}

fn creds() -> impl Strategy<Value = Credentials> {
    (
        any::<[u32; 4]>(),
        any::<[u32; 4]>(),
        vec(any::<u32>(), 0..8),
        vec(any::<u64>(), 5),
        any::<u32>(),
    )
        .prop_map(|(uid, gid, groups, caps, securebits)| Credentials {
            uid,
            gid,
            groups,
            cap_inheritable: caps[0],
            cap_permitted: caps[1],
            cap_effective: caps[2],
            cap_bounding: caps[3],
            cap_ambient: caps[4],
            securebits,
        })
}

fn vma_kind() -> impl Strategy<Value = VmaKind> {
    prop_oneof![
        proptest::option::of(text()).prop_map(|name| VmaKind::Anonymous { name }),
        any::<u64>().prop_map(|inode| VmaKind::SharedAnonymous { inode }),
        (text(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(path, dev, ino, size)| {
            VmaKind::File {
                path,
                dev,
                ino,
                size,
            }
        }),
        text().prop_map(|name| VmaKind::Special { name }),
        any::<u32>().prop_map(|object| VmaKind::Object { object }),
        (any::<i32>(), any::<u64>()).prop_map(|(shmid, size)| VmaKind::SysvShm { shmid, size }),
    ]
}

fn vma() -> impl Strategy<Value = Vma> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<bool>(),
        vma_kind(),
        any::<u64>(),
        vec("[a-z]{2}", 0..8),
    )
        .prop_map(|(start, end, prot, shared, kind, pgoff, vm_flags)| Vma {
            start,
            end,
            prot,
            shared,
            kind,
            pgoff,
            vm_flags,
        })
}

fn mm() -> impl Strategy<Value = MmImage> {
    (
        vec(any::<u64>(), 11),
        vec(any::<u64>(), 0..40),
        vec(vma(), 0..12),
        vec(
            (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(vaddr, count, offset)| PageRun {
                vaddr,
                count,
                offset,
            }),
            0..12,
        ),
        vec(
            (any::<u64>(), any::<u64>()).prop_map(|(vaddr, count)| PageSpan { vaddr, count }),
            0..4,
        ),
    )
        .prop_map(|(w, auxv, vmas, pages, inherited)| MmImage {
            start_code: w[0],
            end_code: w[1],
            start_data: w[2],
            end_data: w[3],
            start_brk: w[4],
            brk: w[5],
            start_stack: w[6],
            arg_start: w[7],
            arg_end: w[8],
            env_start: w[9],
            env_end: w[10],
            auxv,
            vmas,
            pages,
            inherited,
        })
}

fn file_kind() -> impl Strategy<Value = FileKind> {
    prop_oneof![
        (
            text(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>()
        )
            .prop_map(|(path, size, dev, ino, mode)| FileKind::Regular {
                path,
                size,
                dev,
                ino,
                mode
            }),
        text().prop_map(|path| FileKind::Directory { path }),
        text().prop_map(|path| FileKind::Path { path }),
        (text(), any::<u64>()).prop_map(|(path, rdev)| FileKind::CharDevice { path, rdev }),
        text().prop_map(|path| FileKind::Terminal { path }),
        (any::<u64>(), any::<bool>(), any::<u32>()).prop_map(|(inode, read_end, capacity)| {
            FileKind::Pipe {
                inode,
                read_end,
                capacity,
            }
        }),
        any::<u32>().prop_map(|object| FileKind::Object { object }),
        any::<i32>().prop_map(|pid| FileKind::PidFd { pid }),
        (
            text(),
            any::<bool>(),
            any::<u32>(),
            any::<i64>(),
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<u32>()
        )
            .prop_map(|(name, unlinked, mode, maxmsg, data, priority)| {
                FileKind::Mqueue(stasis_image::ipc::MqueueImage {
                    name,
                    unlinked,
                    uid: mode / 3,
                    gid: mode / 5,
                    mode,
                    maxmsg,
                    msgsize: maxmsg / 2,
                    messages: vec![stasis_image::ipc::MqMessage { priority, data }],
                })
            }),
        unix_socket(),
        proptest::collection::vec(
            (
                any::<i32>(),
                any::<u32>(),
                any::<u64>(),
                proptest::option::of(any::<i32>()),
                proptest::option::of(any::<u32>())
            ),
            0..4
        )
        .prop_map(|t| FileKind::Epoll {
            targets: t
                .into_iter()
                .map(|(fd, events, data, now_at, desc)| EpollTarget {
                    fd,
                    events,
                    data,
                    now_at,
                    desc,
                })
                .collect()
        }),
        (
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 44..=44),
            any::<[u16; 4]>(),
            any::<(bool, bool)>(),
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::option::of(any::<i32>()),
            any::<i32>()
        )
            .prop_map(
                |(
                    index,
                    termios,
                    winsize,
                    (locked, packet),
                    output,
                    input,
                    session,
                    foreground,
                )| {
                    FileKind::PtyMaster {
                        index,
                        termios,
                        winsize,
                        locked,
                        packet,
                        output,
                        input,
                        session,
                        foreground,
                    }
                }
            ),
        (any::<u32>(), any::<bool>())
            .prop_map(|(index, dev_tty)| FileKind::PtySlave { index, dev_tty }),
        (text(), any::<u64>(), any::<bool>()).prop_map(|(path, inode, unlinked)| {
            FileKind::Fifo {
                path,
                inode,
                unlinked,
            }
        }),
        (any::<u64>(), any::<bool>())
            .prop_map(|(count, semaphore)| FileKind::EventFd { count, semaphore }),
        any::<u64>().prop_map(|mask| FileKind::SignalFd { mask }),
        (any::<i32>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(clockid, value_ns, interval_ns, ticks)| FileKind::TimerFd {
                clockid,
                value_ns,
                interval_ns,
                ticks,
            }
        ),
    ]
}

fn unix_socket() -> impl Strategy<Value = FileKind> {
    (
        (
            any::<u64>(),
            any::<u8>(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
        ),
        (
            proptest::option::of(any::<u64>()),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
            proptest::option::of(any::<u32>()),
            proptest::collection::vec(any::<u64>(), 0..4),
            any::<(u8, bool)>(),
        ),
        (any::<(i32, i32, bool, i32)>(), any::<(u64, u64, i32)>()),
        proptest::option::of(any::<(u32, u32, u32, bool)>()),
    )
        .prop_map(
            |(
                (inode, kind, name),
                (peer, peer_name, listen_backlog, waiting, (shutdown, peer_gone)),
                ((sndbuf, rcvbuf, passcred, peek_off), (rcvtimeo_us, sndtimeo_us, rcvlowat)),
                bound_file,
            )| FileKind::UnixSocket {
                inode,
                kind,
                name,
                peer,
                peer_name,
                listen_backlog,
                waiting,
                peer_gone,
                shutdown,
                options: SocketOptions {
                    sndbuf,
                    rcvbuf,
                    passcred,
                    peek_off,
                    rcvtimeo_us,
                    sndtimeo_us,
                    rcvlowat,
                },
                bound_file: bound_file.map(|(mode, uid, gid, unlinked)| BoundFile {
                    mode,
                    uid,
                    gid,
                    unlinked,
                }),
            },
        )
}

fn fd() -> impl Strategy<Value = FdImage> {
    (
        any::<i32>(),
        any::<u32>(),
        any::<bool>(),
        any::<u64>(),
        any::<u32>(),
        file_kind(),
    )
        .prop_map(|(fd, flags, cloexec, pos, desc, file)| FdImage {
            fd,
            flags,
            cloexec,
            pos,
            desc,
            file,
        })
}

/// A socket queue: what is queued for the socket to read, or what a client sent before
/// its connection was accepted.
fn socket_queue() -> impl Strategy<Value = SocketQueue> {
    (
        any::<u64>(),
        vec(vec(any::<u8>(), 0..16), 0..4),
        any::<bool>(),
    )
        .prop_map(|(inode, messages, sent_before_accept)| SocketQueue {
            inode,
            messages,
            in_flight: Vec::new(),
            sent_before_accept,
        })
}

fn task() -> impl Strategy<Value = TaskImage> {
    (
        (any::<i32>(), any::<i32>(), any::<i32>(), any::<i32>()),
        any::<char>(),
        any::<bool>(),
        vec(thread(), 0..4),
        vec(sig_action(), 0..65),
        attrs(),
        creds(),
        mm(),
        vec(fd(), 0..10),
        vec(socket_queue(), 0..3),
    )
        .prop_map(
            |(
                (pid, ppid, pgid, sid),
                state,
                job_stopped,
                threads,
                actions,
                attrs,
                creds,
                mm,
                fds,
                socket_queues,
            )| {
                TaskImage {
                    pid,
                    ppid,
                    pgid,
                    sid,
                    state,
                    job_stopped,
                    job_stop_signal: 0,
                    exit_status: 0,
                    threads,
                    signals: SignalTable { actions },
                    attrs,
                    creds,
                    mm,
                    fds,
                    itimers: Vec::new(),
                    posix_timers: Vec::new(),
                    shared_pending: Vec::new(),
                    socket_queues,
                    pipe_data: Vec::new(),
                    shared_with_parent: SharedWithParent {
                        fd_table: job_stopped,
                        fs_info: !job_stopped,
                        memory: job_stopped,
                        signal_handlers: !job_stopped,
                    },
                    vfork_child: !job_stopped,
                    file_objects: Vec::new(),
                    file_locks: Vec::new(),
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn manifest_round_trips(m in manifest()) {
        let bytes = container::encode(MetaKind::Manifest, &m).unwrap();
        let back: Manifest = container::decode("manifest.img", MetaKind::Manifest, &bytes).unwrap();
        prop_assert_eq!(&back, &m);
        let json: Manifest = serde_json::from_value(serde_json::to_value(&m).unwrap()).unwrap();
        prop_assert_eq!(json, m);
    }

    #[test]
    fn task_round_trips(t in task()) {
        let bytes = container::encode(MetaKind::Task, &t).unwrap();
        let back: TaskImage = container::decode("task-1.img", MetaKind::Task, &bytes).unwrap();
        prop_assert_eq!(&back, &t);
        // The xstate is stored as one byte string, not an array of integers.
        for th in &t.threads {
            prop_assert!(bytes.len() >= th.xstate.len());
        }
        let json: TaskImage = serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
        prop_assert_eq!(json, t);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        let _ = container::decode::<TaskImage>("f", MetaKind::Task, &bytes);
        let _ = container::decode::<Manifest>("f", MetaKind::Manifest, &bytes);
        // The same bytes as a payload with a valid header and checksum.
        let framed = container::frame(MetaKind::Task as u32, FORMAT_MAJOR, FORMAT_MINOR, &bytes);
        let _ = container::decode::<TaskImage>("f", MetaKind::Task, &framed);
        let framed = container::frame(MetaKind::Manifest as u32, FORMAT_MAJOR, FORMAT_MINOR, &bytes);
        let _ = container::decode::<Manifest>("f", MetaKind::Manifest, &framed);
    }

    #[test]
    fn mutated_payloads_never_panic(
        t in task(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let bytes = container::encode(MetaKind::Task, &t).unwrap();
        let mut payload = bytes[HEADER_LEN..].to_vec();
        for (i, b) in edits {
            let i = i.index(payload.len());
            payload[i] = b;
        }
        let framed = container::frame(MetaKind::Task as u32, FORMAT_MAJOR, FORMAT_MINOR, &payload);
        let _ = container::decode::<TaskImage>("f", MetaKind::Task, &framed);
    }
}

#[test]
fn xstate_is_a_byte_string_of_any_size() {
    let mut t = sample::task(1, 0, 1);
    let with = |t: &TaskImage, n: usize| {
        let mut t = t.clone();
        for th in &mut t.threads {
            th.xstate = (0..n).map(|i| i as u8).collect();
        }
        t
    };
    let empty = container::encode(MetaKind::Task, &with(&t, 0))
        .unwrap()
        .len();
    // An AMX-sized XSAVE area (about 11 KiB) and larger: one byte of CBOR per byte.
    for n in [4095, 4096, 4097, 11_008, 100_000] {
        t = with(&t, n);
        let bytes = container::encode(MetaKind::Task, &t).unwrap();
        assert!(
            bytes.len() <= empty + 2 * (n + 9),
            "{n}: {} bytes",
            bytes.len()
        );
        let back: TaskImage = container::decode("t", MetaKind::Task, &bytes).unwrap();
        assert_eq!(back, t);
    }
}
