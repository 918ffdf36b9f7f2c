//! The IPC file (`ipc.img`): written and read back, shown, and refused when inconsistent.

use std::path::Path;

use stasis_image::ipc::*;
use stasis_image::*;

mod common;
use common::TempDir;

fn sample_ipc() -> IpcImage {
    let perm = |id, key| IpcPerm {
        id,
        key,
        uid: 1234,
        gid: 2345,
        cuid: 0,
        cgid: 0,
        mode: 0o640,
    };
    IpcImage {
        shm: vec![ShmSegment {
            perm: perm(3, 0x5a01_0001),
            size: 3 * 4096 + 100,
            removed: false,
            chunks: vec![ShmChunk {
                offset: 4096,
                data: vec![7; 8192],
            }],
        }],
        msg: vec![MsgQueue {
            perm: perm(32768, 0),
            qbytes: 5000,
            messages: vec![
                SysvMessage {
                    mtype: 3,
                    data: b"three".to_vec(),
                },
                SysvMessage {
                    mtype: 1,
                    data: Vec::new(),
                },
            ],
        }],
        sem: vec![SemSet {
            perm: perm(5, 7),
            values: vec![5, 0, 42],
        }],
        own_namespace: true,
        mqueues: vec![MqueueImage {
            name: "/kept".into(),
            unlinked: false,
            uid: 1234,
            gid: 2345,
            mode: 0o640,
            maxmsg: 4,
            msgsize: 16,
            messages: vec![
                MqMessage {
                    priority: 7,
                    data: b"first".to_vec(),
                },
                MqMessage {
                    priority: 0,
                    data: Vec::new(),
                },
            ],
        }],
        sem_undo: vec![SemUndo {
            pid: 100,
            semid: 5,
            adj: vec![1, 0, -3],
        }],
    }
}

/// A one-task image (the sample task) plus `ipc`.
fn write(dir: &Path, ipc: &IpcImage) {
    let mut w = ImageWriter::create(dir).unwrap();
    let t = sample::task(100, 1, 1);
    w.write_task(&task_file_name(100), &t).unwrap();
    let mut pages = w.pages(&pages_file_name(100)).unwrap();
    for i in 0..2 {
        pages.write_all(&sample::page_content(100, i)).unwrap();
    }
    w.add_pages(pages).unwrap();
    w.write_meta(ipc::IPC_FILE, MetaKind::Ipc, ipc).unwrap();
    w.finish(common::one_task_manifest()).unwrap();
}

#[test]
fn ipc_file_round_trips_and_is_shown() {
    let dir = TempDir::new("ipc-roundtrip");
    let ipc = sample_ipc();
    write(&dir.0, &ipc);
    let r = ImageReader::open(&dir.0).unwrap();
    assert_eq!(r.ipc().unwrap(), Some(ipc));
    let text = render::render_text(&r).unwrap();
    assert!(text.contains("shm 3 key 0x5a010001 size 12388"), "{text}");
    assert!(text.contains("msg 32768"), "{text}");
    assert!(text.contains("2 message(s)"), "{text}");
    assert!(text.contains("values [5, 0, 42]"), "{text}");
    assert!(text.contains("own IPC namespace"), "{text}");
    assert!(
        text.contains("mqueue /kept (no descriptor) maxmsg 4 msgsize 16 mode 640"),
        "{text}"
    );
    assert!(
        text.contains("sem 5 undo of pid 100: adjustments [1, 0, -3]"),
        "{text}"
    );
    let json = render::render_json(&r).unwrap();
    assert_eq!(json["ipc"]["sem"][0]["values"][2], 42);
    assert_eq!(json["ipc"]["mqueues"][0]["messages"][0]["priority"], 7);
    let file = render::render_file_text(&dir.0.join(ipc::IPC_FILE)).unwrap();
    assert!(file.contains("stasis IPC file"), "{file}");
}

#[test]
fn an_image_without_ipc_file_has_no_ipc() {
    let dir = TempDir::new("ipc-none");
    sample::write_image(&dir.0, 1).unwrap();
    assert_eq!(ImageReader::open(&dir.0).unwrap().ipc().unwrap(), None);
}

#[test]
fn inconsistent_ipc_file_is_refused() {
    let dir = TempDir::new("ipc-bad");
    let mut ipc = sample_ipc();
    ipc.shm[0].chunks[0].offset = 16 * 4096;
    write(&dir.0, &ipc);
    let err = ImageReader::open(&dir.0).unwrap().ipc().unwrap_err();
    assert!(
        matches!(&err, ImageError::Invalid { file, reason } if file == ipc::IPC_FILE && reason.contains("outside")),
        "{err}"
    );
    let mut ipc = sample_ipc();
    ipc.msg[0].messages[0].mtype = 0;
    write(&dir.0, &ipc);
    assert!(ImageReader::open(&dir.0).unwrap().ipc().is_err());
    // An undo entry for a set the image does not have.
    let mut ipc = sample_ipc();
    ipc.sem_undo[0].semid = 6;
    write(&dir.0, &ipc);
    let err = ImageReader::open(&dir.0).unwrap().ipc().unwrap_err();
    assert!(err.to_string().contains("does not have"), "{err}");
}

/// Queues no descriptor holds: only in an own namespace, by plausible unique names, with
/// messages that fit their attributes.
#[test]
fn inconsistent_posix_queues_are_refused() {
    let dir = TempDir::new("ipc-bad-mq");
    let refused = |change: &dyn Fn(&mut IpcImage), words: &str| {
        let mut ipc = sample_ipc();
        change(&mut ipc);
        write(&dir.0, &ipc);
        let err = ImageReader::open(&dir.0).unwrap().ipc().unwrap_err();
        assert!(err.to_string().contains(words), "{err}");
    };
    refused(&|i| i.own_namespace = false, "without an IPC namespace");
    refused(&|i| i.mqueues[0].name = "/a/b".into(), "not a queue name");
    refused(&|i| i.mqueues[0].unlinked = true, "not a queue name");
    refused(
        &|i| {
            let again = i.mqueues[0].clone();
            i.mqueues.push(again)
        },
        "twice",
    );
    refused(&|i| i.mqueues[0].maxmsg = 1, "2 message(s) with maxmsg 1");
    refused(&|i| i.mqueues[0].messages[0].data = vec![0; 17], "17 bytes");
}
