//! A program that did not call `procs_core::init()`: the spawn start
//! method says so, and starts nothing (its child would run the test
//! harness again).

use procs_core::{Error, Process, StartMethod};

fn double(x: u32) -> u32 {
    x * 2
}

#[test]
fn spawn_without_init_is_a_clear_error() {
    let r = Process::builder()
        .start_method(StartMethod::Spawn)
        .spawn_fn(double, 1);
    let e = r.unwrap_err();
    assert!(matches!(e, Error::SpawnNotReady));
    assert!(e.to_string().contains("procs_core::init()"), "{e}");
    // Fork still works.
    assert_eq!(
        Process::builder()
            .spawn_fn(double, 21)
            .unwrap()
            .join()
            .unwrap(),
        42
    );
}
