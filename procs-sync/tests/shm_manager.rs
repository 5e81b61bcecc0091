//! SharedMemoryManager: what it made outlives its handles and goes when it
//! goes, children keep their mappings, a forked copy neither makes nor
//! unlinks, and nothing is left in /dev/shm, also when the manager's owner
//! is SIGKILLed.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use common::{read_line, start};
use procs_sync::{Error, Item, Segment, ShareableList, SharedMemoryManager};

const WAIT: Duration = Duration::from_secs(30);

fn in_dev_shm(name: &str) -> bool {
    Path::new("/dev/shm")
        .join(name.trim_start_matches('/'))
        .exists()
}

#[test]
fn managed_segments_outlive_their_handles_and_go_with_the_manager() {
    let smm = SharedMemoryManager::start().unwrap();
    let seg = smm.shared_memory(100).unwrap();
    let list = smm
        .shareable_list([1.into(), "x".into(), Item::None])
        .unwrap();
    let names = [
        seg.name().unwrap().to_owned(),
        list.name().unwrap().to_owned(),
    ];
    assert_eq!(smm.names(), names);
    seg.write(0, b"kept").unwrap();
    drop(seg);
    drop(list);
    for name in &names {
        assert!(in_dev_shm(name), "{name} unlinked before the manager went");
    }
    let mut buf = [0u8; 4];
    Segment::open(&names[0]).unwrap().read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"kept");
    assert_eq!(
        ShareableList::open(&names[1]).unwrap().get(1).unwrap(),
        Item::Str("x".into())
    );
    drop(smm);
    for name in &names {
        assert!(!in_dev_shm(name), "{name} left in /dev/shm");
    }
}

#[test]
fn shutdown_unlinks_everything_and_makes_no_more() {
    let smm = SharedMemoryManager::start().unwrap();
    let made: Vec<String> = (0..5)
        .map(|k| {
            if k % 2 == 0 {
                smm.shared_memory(8 << k)
                    .unwrap()
                    .name()
                    .unwrap()
                    .to_owned()
            } else {
                let list = smm.shareable_list([k.into()]).unwrap();
                list.name().unwrap().to_owned()
            }
        })
        .collect();
    smm.shutdown().unwrap();
    for name in &made {
        assert!(!in_dev_shm(name), "{name} left in /dev/shm");
    }
    assert!(smm.names().is_empty());
    assert!(matches!(smm.shared_memory(8), Err(Error::ShutDown)));
    assert!(matches!(smm.shareable_list([]), Err(Error::ShutDown)));
    smm.shutdown().unwrap();
}

#[test]
fn a_child_keeps_its_mapping_after_the_manager_shuts_down() {
    let smm = SharedMemoryManager::start().unwrap();
    let list = smm.shareable_list(["before".into(), 0.into()]).unwrap();
    let name = list.name().unwrap().to_owned();
    let (mut go_r, mut go_w) = std::io::pipe().unwrap();
    let (l, n) = (list.clone(), name.clone());
    let mut child = start(move || {
        let mut byte = [0u8; 1];
        go_r.read_exact(&mut byte).unwrap();
        // Unlinked by the parent's manager meanwhile: still mapped here,
        // no longer openable.
        assert_eq!(l.get(0).unwrap(), Item::Str("before".into()));
        assert!(matches!(
            ShareableList::open(&n),
            Err(Error::NotFound { .. })
        ));
        l.set(1, 7).unwrap();
    });
    smm.shutdown().unwrap();
    assert!(!in_dev_shm(&name), "{name} left in /dev/shm");
    go_w.write_all(b"g").unwrap();
    assert_eq!(child.0.join_timeout(WAIT).unwrap(), Some(0));
    assert_eq!(list.get(1).unwrap(), Item::Int(7), "still one memory");
}

#[test]
fn a_forked_copy_of_the_manager_makes_nothing_and_unlinks_nothing() {
    let smm = std::sync::Arc::new(SharedMemoryManager::start().unwrap());
    let seg = smm.shared_memory(16).unwrap();
    let name = seg.name().unwrap().to_owned();
    let s = smm.clone();
    let mut child = start(move || {
        assert!(matches!(s.shared_memory(16), Err(Error::Invalid(_))));
        assert!(matches!(s.shareable_list([]), Err(Error::Invalid(_))));
        s.shutdown().unwrap();
        drop(s);
    });
    assert_eq!(child.0.join_timeout(WAIT).unwrap(), Some(0));
    assert!(in_dev_shm(&name), "a child's copy unlinked {name}");
    drop(smm);
    assert!(!in_dev_shm(&name), "{name} left in /dev/shm");
}

#[test]
fn what_a_sigkilled_owner_made_is_removed_by_the_next_manager() {
    let (mut names_r, names_w) = std::io::pipe().unwrap();
    // The child blocks on this pipe, which the parent never writes.
    let (mut block_r, block_w) = std::io::pipe().unwrap();
    let mut owner = start(move || {
        let smm = SharedMemoryManager::start().unwrap();
        let seg = smm.shared_memory(4096).unwrap();
        let list = smm.shareable_list(["doomed".into()]).unwrap();
        let mut w = names_w;
        writeln!(w, "{}", seg.name().unwrap()).unwrap();
        writeln!(w, "{}", list.name().unwrap()).unwrap();
        let _ = block_r.read(&mut [0u8; 1]);
        unreachable!("the parent never writes");
    });
    let names = [read_line(&mut names_r), read_line(&mut names_r)];
    for name in &names {
        assert!(name.starts_with("/procs."), "{name}");
    }
    owner.0.kill().unwrap();
    assert_eq!(
        owner.0.join_timeout(WAIT).unwrap(),
        Some(-9),
        "killed by SIGKILL"
    );
    drop(block_w);
    let _smm = SharedMemoryManager::start().unwrap();
    for name in &names {
        assert!(!in_dev_shm(name), "{name} left in /dev/shm");
    }
}
