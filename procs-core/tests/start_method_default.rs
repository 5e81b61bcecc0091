//! The default start method (Python's `set_start_method` and friends),
//! in a test binary of its own: the default is process-wide.

use procs_core::{
    Error, Process, StartMethod, get_all_start_methods, get_context, get_start_method,
    set_start_method, start_method_is_set,
};

procs_core::init_before_main!();

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn the_default_is_fork_until_set_and_set_once_unless_forced() {
    assert_eq!(get_start_method(), StartMethod::Fork);
    assert!(!start_method_is_set());
    assert_eq!(
        get_all_start_methods(),
        [
            StartMethod::Fork,
            StartMethod::Spawn,
            StartMethod::Forkserver
        ]
    );
    // A context of its own method, whatever the default.
    let spawn = get_context(Some(StartMethod::Spawn));
    assert_eq!(spawn.spawn_fn(square, 4).unwrap().join().unwrap(), 16);

    set_start_method(StartMethod::Forkserver, false).unwrap();
    assert!(start_method_is_set());
    assert_eq!(get_start_method(), StartMethod::Forkserver);
    assert_eq!(
        get_context(None).get_start_method(),
        StartMethod::Forkserver
    );
    // Builders take the default now.
    let h = Process::builder().spawn_fn(square, 9).unwrap();
    assert_eq!(h.process().start_method(), StartMethod::Forkserver);
    assert_eq!(h.join().unwrap(), 81);
    // A closure cannot be served: a clear error, not a fork behind the
    // program's back.
    let mut p = Process::new(|| {});
    assert_eq!(p.start_method(), StartMethod::Forkserver);
    assert!(matches!(p.start(), Err(Error::SpawnNeedsFunction { .. })));
    // An explicit method on the builder still wins.
    let mut p = Process::builder()
        .start_method(StartMethod::Fork)
        .build(|| {});
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);

    match set_start_method(StartMethod::Spawn, false) {
        Err(Error::ContextAlreadySet { current }) => assert_eq!(current, "forkserver"),
        other => panic!("unexpected {other:?}"),
    }
    set_start_method(StartMethod::Fork, true).unwrap();
    assert_eq!(get_start_method(), StartMethod::Fork);
    assert_eq!(procs_core::spawn(|| 6 * 7).unwrap().join().unwrap(), 42);
}
