//! Shared memory segments: anonymous ones shared with children, named ones
//! opened by an unrelated (exec'd) process, headers checked, and nothing
//! left in /dev/shm, also when the creator is SIGKILLed.

mod common;

use std::io::Write;
use std::path::Path;

use common::{read_line, start};
use procs_sync::{Error, Segment};

fn in_dev_shm(name: &str) -> bool {
    Path::new("/dev/shm")
        .join(name.trim_start_matches('/'))
        .exists()
}

#[test]
fn anonymous_segment_is_shared_with_a_child() {
    let seg = std::sync::Arc::new(Segment::create(4096).unwrap());
    assert_eq!(seg.size(), 4096);
    assert!(seg.name().is_none());
    let s = seg.clone();
    let mut child = start(move || s.write(100, b"from the child").unwrap());
    assert_eq!(child.0.join().unwrap(), 0);
    let mut buf = [0u8; 14];
    seg.read(100, &mut buf).unwrap();
    assert_eq!(&buf, b"from the child");
    assert!(matches!(seg.read(4090, &mut buf), Err(Error::Invalid(_))));
    assert!(matches!(
        seg.write(usize::MAX, b"x"),
        Err(Error::Invalid(_))
    ));
}

/// Run by `named_segment_is_opened_by_an_exec_d_process` in a new program:
/// opens the segment named in the environment and answers through it.
#[test]
#[ignore = "run by named_segment_is_opened_by_an_exec_d_process"]
fn exec_d_opener() {
    let name = std::env::var("PROCS_TEST_SEGMENT").expect("segment name in the environment");
    let seg = Segment::open(&name).expect("open by name");
    let mut buf = [0u8; 5];
    seg.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    seg.write(8, b"world").unwrap();
}

#[test]
fn named_segment_is_opened_by_an_exec_d_process() {
    let seg = Segment::create_named(None, 64).unwrap();
    let name = seg.name().unwrap().to_owned();
    assert!(in_dev_shm(&name));
    seg.write(0, b"hello").unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "exec_d_opener", "--ignored", "--nocapture"])
        .env("PROCS_TEST_SEGMENT", &name)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut buf = [0u8; 5];
    seg.read(8, &mut buf).unwrap();
    assert_eq!(&buf, b"world");
    drop(seg);
    assert!(!in_dev_shm(&name), "{name} left in /dev/shm");
}

#[test]
fn names_are_checked_and_unique() {
    let seg = Segment::create_named(Some("procs-test-names"), 16).unwrap();
    assert_eq!(seg.name(), Some("/procs-test-names"));
    assert!(matches!(
        Segment::create_named(Some("/procs-test-names"), 16),
        Err(Error::AlreadyExists { .. })
    ));
    drop(seg);
    assert!(matches!(
        Segment::open("procs-test-names"),
        Err(Error::NotFound { .. })
    ));
    for bad in ["", "/", "a/b", "..", "x\0y"] {
        assert!(
            matches!(
                Segment::create_named(Some(bad), 16),
                Err(Error::InvalidName { .. })
            ),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn keep_leaves_the_name_until_unlink() {
    let seg = Segment::create_named(None, 16).unwrap();
    let name = seg.name().unwrap().to_owned();
    seg.keep();
    drop(seg);
    assert!(in_dev_shm(&name));
    let again = Segment::open(&name).unwrap();
    again.unlink().unwrap();
    assert!(!in_dev_shm(&name));
}

/// Writes `bytes` at `offset` of the file behind a named segment.
fn poke(name: &str, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(Path::new("/dev/shm").join(name.trim_start_matches('/')))
        .unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

#[test]
fn a_corrupt_header_is_refused() {
    let seg = Segment::create_named(None, 128).unwrap();
    let name = seg.name().unwrap().to_owned();

    poke(&name, 8, &99u32.to_le_bytes());
    assert!(matches!(
        Segment::open(&name),
        Err(Error::VersionMismatch { found: 99, .. })
    ));
    poke(&name, 8, &1u32.to_le_bytes());
    Segment::open(&name).unwrap();

    // A size that lies: more data than the file holds.
    poke(&name, 16, &(1u64 << 40).to_le_bytes());
    assert!(matches!(Segment::open(&name), Err(Error::Truncated { .. })));
    poke(&name, 16, &128u64.to_le_bytes());

    poke(&name, 0, b"NOTPROCS");
    assert!(matches!(
        Segment::open(&name),
        Err(Error::NotASegment { .. })
    ));
}

#[test]
fn a_foreign_or_truncated_file_is_refused() {
    let name = format!("procs-test-foreign-{}", std::process::id());
    let path = Path::new("/dev/shm").join(&name);
    std::fs::write(&path, b"short").unwrap();
    let short = Segment::open(&name);
    std::fs::write(&path, vec![7u8; 4096]).unwrap();
    let foreign = Segment::open(&name);
    std::fs::remove_file(&path).unwrap();
    assert!(
        matches!(short, Err(Error::Truncated { actual: 5, .. })),
        "{short:?}"
    );
    assert!(
        matches!(foreign, Err(Error::NotASegment { .. })),
        "{foreign:?}"
    );
}

#[test]
fn a_segment_whose_creator_was_killed_is_removed_as_an_orphan() {
    let (mut name_r, name_w) = std::io::pipe().unwrap();
    let mut creator = start(move || {
        let seg = Segment::create_named(None, 64).unwrap();
        let mut w = name_w;
        writeln!(w, "{}", seg.name().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_secs(60));
    });
    let name = read_line(&mut name_r);
    assert!(in_dev_shm(&name));
    creator.0.kill().unwrap();
    creator.0.join().unwrap();
    // Killed, it could not unlink: the next sweep does (this one, or one
    // made by another test creating a generated name meanwhile).
    Segment::remove_orphans().unwrap();
    assert!(!in_dev_shm(&name), "{name} left in /dev/shm");
}

#[test]
fn a_segment_is_unlinked_when_its_creator_panics() {
    let (mut name_r, name_w) = std::io::pipe().unwrap();
    let mut creator = start(move || {
        let seg = Segment::create_named(None, 64).unwrap();
        let mut w = name_w;
        writeln!(w, "{}", seg.name().unwrap()).unwrap();
        panic!("the creator fails with its segment open");
    });
    let name = read_line(&mut name_r);
    assert_eq!(creator.0.join().unwrap(), 1);
    assert!(!in_dev_shm(&name), "{name} left in /dev/shm by a panic");
}

/// The bytes of the segment's file that hold memory.
fn allocated(seg: &Segment) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let fd = seg.fd().try_clone_to_owned().unwrap();
    std::fs::File::from(fd).metadata().unwrap().blocks() * 512
}

#[test]
fn prefault_gives_the_memory_up_front_and_keeps_it_zero_and_shared() {
    let seg = std::sync::Arc::new(Segment::create(1 << 20).unwrap());
    assert!(allocated(&seg) < 1 << 20, "memory before it is touched");
    seg.prefault().unwrap();
    assert!(allocated(&seg) >= 1 << 20, "every page once prefaulted");
    let mut buf = vec![1u8; 1 << 20];
    seg.read(0, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    // Still one memory with a child.
    let s = seg.clone();
    let mut child = start(move || s.write((1 << 20) - 5, b"child").unwrap());
    assert_eq!(child.0.join().unwrap(), 0);
    let mut tail = [0u8; 5];
    seg.read((1 << 20) - 5, &mut tail).unwrap();
    assert_eq!(&tail, b"child");
}
