//! ShareableList across processes: written by a forked child, opened by
//! name from an exec'd program, slot capacities kept, and whatever another
//! process left in the segment (a corrupt header, a slot lying about its
//! length, a half-finished write) reported as an error.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::start;
use procs_sync::{Error, Item, Segment, ShareableList};

const WAIT: Duration = Duration::from_secs(30);

fn in_dev_shm(name: &str) -> bool {
    Path::new("/dev/shm")
        .join(name.trim_start_matches('/'))
        .exists()
}

/// Writes `bytes` at `offset` of the list's data (after the 64-byte
/// segment header), through the file behind the named segment.
fn poke(name: &str, offset: u64, bytes: &[u8]) {
    poke_file(name, 64 + offset, bytes);
}

/// Writes `bytes` at `offset` of the file behind a named segment.
fn poke_file(name: &str, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(Path::new("/dev/shm").join(name.trim_start_matches('/')))
        .unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

/// Offset in the list's data of field `field` of slot `i`.
fn slot(i: u64, field: u64) -> u64 {
    32 + 32 * i + field
}

#[test]
fn a_list_written_by_a_child_is_read_by_the_parent() {
    let list = ShareableList::new([
        0.into(),
        "".into(),
        Item::None,
        0.0.into(),
        b"12345678".into(),
    ])
    .unwrap();
    let l = list.clone();
    let mut child = start(move || {
        l.set(0, -42).unwrap();
        l.set(1, "from kid").unwrap();
        l.set(2, true).unwrap();
        l.set(3, f64::MIN_POSITIVE).unwrap();
        l.set(4, vec![0u8; 16]).unwrap();
    });
    assert_eq!(child.0.join_timeout(WAIT).unwrap(), Some(0));
    assert_eq!(
        list.to_vec().unwrap(),
        [
            Item::Int(-42),
            "from kid".into(),
            Item::Bool(true),
            Item::Float(f64::MIN_POSITIVE),
            Item::Bytes(vec![0; 16]),
        ]
    );
    assert_eq!(list.format().unwrap(), "q8sxxxxxxx?d16s");
    assert_eq!(list.count(&Item::Int(-42)).unwrap(), 1);
    assert_eq!(list.index(&Item::Bool(true)).unwrap(), Some(2));
    assert_eq!(list.index(&Item::Int(1)).unwrap(), None);
}

/// Run by `a_named_list_is_opened_by_an_exec_d_process` in a new program:
/// opens the list named in the environment, checks it and answers in it.
#[test]
#[ignore = "run by a_named_list_is_opened_by_an_exec_d_process"]
fn exec_d_list_opener() {
    let name = std::env::var("PROCS_TEST_LIST").expect("list name in the environment");
    let list = ShareableList::open(&name).expect("open by name");
    assert_eq!(
        list.to_vec().unwrap(),
        [Item::Str("question".into()), Item::Int(0), Item::Float(0.5)]
    );
    list.set(1, 42).unwrap();
    list.set(0, "answered").unwrap();
}

#[test]
fn a_named_list_is_opened_by_an_exec_d_process() {
    let list =
        ShareableList::create_named(None, ["question".into(), 0.into(), 0.5.into()]).unwrap();
    let name = list.name().unwrap().to_owned();
    assert!(in_dev_shm(&name));
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "exec_d_list_opener", "--ignored", "--nocapture"])
        .env("PROCS_TEST_LIST", &name)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        list.to_vec().unwrap(),
        [
            Item::Str("answered".into()),
            Item::Int(42),
            Item::Float(0.5)
        ]
    );
    drop(list);
    assert!(!in_dev_shm(&name), "{name} left in /dev/shm");
}

#[test]
fn a_str_too_long_for_its_slot_errors_and_keeps_the_old_value() {
    // "hi" gets 8 bytes, "12345678" 16: Python's rounding.
    let list = ShareableList::create_named(None, ["hi".into(), "12345678".into()]).unwrap();
    let other = ShareableList::open(list.name().unwrap()).unwrap();
    assert_eq!(other.capacity(0).unwrap(), 8);
    assert_eq!(other.capacity(1).unwrap(), 16);
    let err = other.set(0, "nine byte").unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLong {
                index: 0,
                len: 9,
                capacity: 8
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("9 bytes"), "{err}");
    assert!(matches!(
        other.set(1, vec![1u8; 17]),
        Err(Error::TooLong { .. })
    ));
    // UTF-8 bytes count, not characters: four 2-byte characters fill 8.
    other.set(0, "éééé").unwrap();
    assert!(matches!(
        other.set(0, "ééééé"),
        Err(Error::TooLong { len: 10, .. })
    ));
    assert_eq!(list.get(0).unwrap(), Item::Str("éééé".into()));
    assert_eq!(list.get(1).unwrap(), Item::Str("12345678".into()));
    assert!(matches!(
        list.set(2, 1),
        Err(Error::IndexOutOfRange { index: 2, len: 2 })
    ));
}

#[test]
fn a_corrupt_list_header_is_refused() {
    let list = ShareableList::create_named(None, [1.into(), "abc".into()]).unwrap();
    let name = list.name().unwrap().to_owned();
    let corrupt = |what: &str| match ShareableList::open(&name) {
        Err(Error::Corrupt { why, .. }) => why,
        other => panic!("{what}: {other:?}"),
    };

    poke(&name, 0, b"NOTALIST");
    corrupt("list magic");
    poke(&name, 0, b"PROCSSHL");
    ShareableList::open(&name).unwrap();

    poke(&name, 8, &u64::MAX.to_ne_bytes());
    corrupt("item count of 2^64 - 1");
    poke(&name, 8, &3u64.to_ne_bytes());
    corrupt("one item more than the segment holds");
    poke(&name, 8, &2u64.to_ne_bytes());

    poke(&name, 16, &(1u64 << 40).to_ne_bytes());
    corrupt("data bytes beyond the segment");
    poke(&name, 16, &16u64.to_ne_bytes());

    poke(&name, slot(1, 16), &7u64.to_ne_bytes());
    let why = corrupt("capacity not a multiple of 8");
    assert!(why.contains("item 1"), "{why}");
    poke(&name, slot(1, 16), &16u64.to_ne_bytes());
    corrupt("capacities beyond the data");
    poke(&name, slot(1, 16), &8u64.to_ne_bytes());
    assert_eq!(ShareableList::open(&name).unwrap().len(), 2);

    // The segment header is checked first, and the kind it records.
    poke_file(&name, 16, &(1u64 << 40).to_ne_bytes());
    assert!(matches!(
        ShareableList::open(&name),
        Err(Error::Truncated { .. })
    ));
    let bytes = Segment::create_named(None, 4096).unwrap();
    assert!(matches!(
        ShareableList::open(bytes.name().unwrap()),
        Err(Error::KindMismatch { .. })
    ));
}

#[test]
fn a_slot_that_lies_about_its_length_or_kind_is_corrupt() {
    let list = ShareableList::create_named(None, ["abc".into(), true.into()]).unwrap();
    let name = list.name().unwrap().to_owned();
    let corrupt = |i: usize, what: &str| match list.get(i) {
        Err(e @ Error::Corrupt { .. }) => e.to_string(),
        other => panic!("{what}: {other:?}"),
    };

    poke(&name, slot(0, 28), &9u32.to_ne_bytes());
    let msg = corrupt(0, "9 bytes in a slot of 8");
    assert!(msg.contains("claims 9 bytes"), "{msg}");
    poke(&name, slot(0, 28), &u32::MAX.to_ne_bytes());
    corrupt(0, "4 GiB in a slot of 8");
    // The length is not checked on open: the handle still opens, and reads
    // report it.
    let again = ShareableList::open(&name).unwrap();
    assert!(matches!(again.get(0), Err(Error::Corrupt { .. })));
    assert!(matches!(again.to_vec(), Err(Error::Corrupt { .. })));
    poke(&name, slot(0, 28), &3u32.to_ne_bytes());
    assert_eq!(list.get(0).unwrap(), Item::Str("abc".into()));

    let data = 32 + 2 * 32;
    poke(&name, data, &[0xff]);
    corrupt(0, "a str that is not UTF-8");
    poke(&name, slot(0, 24), &6u32.to_ne_bytes());
    assert_eq!(list.get(0).unwrap(), Item::Bytes(b"\xffbc".to_vec()));
    poke(&name, slot(0, 24), &99u32.to_ne_bytes());
    corrupt(0, "unknown kind");
    poke(&name, slot(0, 24), &0u32.to_ne_bytes());
    corrupt(0, "kind 0");

    poke(&name, data + 8, &2u64.to_ne_bytes());
    corrupt(1, "a bool of 2");

    // A set repairs what it overwrites.
    list.set(0, "fine").unwrap();
    list.set(1, false).unwrap();
    assert_eq!(list.to_vec().unwrap(), ["fine".into(), Item::Bool(false)]);
}

#[test]
fn a_half_written_slot_is_torn_until_the_next_set() {
    let list = ShareableList::create_named(None, [1.into(), 2.into()]).unwrap();
    let name = list.name().unwrap().to_owned();
    // A writer that died between starting and ending its write of item 0.
    poke(&name, slot(0, 0), &2u64.to_ne_bytes());
    let began = Instant::now();
    assert!(matches!(list.get(0), Err(Error::Torn { index: 0 })));
    assert!(began.elapsed() < Duration::from_secs(5));
    assert_eq!(list.get(1).unwrap(), Item::Int(2), "other slots unharmed");
    list.set(0, 10).unwrap();
    assert_eq!(list.get(0).unwrap(), Item::Int(10));
}

#[test]
fn a_reader_never_sees_a_mix_of_two_writes_by_one_writer() {
    let a = "a".repeat(40);
    let b = "b".repeat(40);
    let list = ShareableList::new([a.as_str().into(), false.into()]).unwrap();
    let l = list.clone();
    let (wa, wb) = (a.clone(), b.clone());
    let mut writer = start(move || {
        for k in 0..20_000 {
            l.set(0, if k % 2 == 0 { wb.as_str() } else { wa.as_str() })
                .unwrap();
        }
        l.set(1, true).unwrap();
    });
    let deadline = Instant::now() + WAIT;
    let mut reads = 0u64;
    while list.get(1).unwrap() != Item::Bool(true) {
        assert!(Instant::now() < deadline, "the writer did not finish");
        match list.get(0).unwrap() {
            Item::Str(s) => assert!(s == a || s == b, "torn read: {s:?}"),
            other => panic!("{other:?}"),
        }
        reads += 1;
    }
    assert_eq!(writer.0.join_timeout(WAIT).unwrap(), Some(0));
    eprintln!("{reads} reads while the writer wrote");
}
