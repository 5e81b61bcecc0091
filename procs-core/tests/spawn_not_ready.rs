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

#[test]
fn forkserver_without_init_is_the_same_clear_error_and_starts_no_server() {
    let children_before = procs_core::active_children().len();
    let r = Process::builder()
        .start_method(StartMethod::Forkserver)
        .spawn_fn(double, 1);
    assert!(matches!(r, Err(Error::SpawnNotReady)));
    // No server was started (it would run the test harness again): no
    // child of this process has the server's variable.
    let mine = std::process::id().to_string();
    let servers = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read_to_string(e.path().join("stat")).is_ok_and(|stat| {
                let after = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
                after.split(' ').nth(1) == Some(mine.as_str())
            })
        })
        .filter_map(|e| std::fs::read(e.path().join("environ")).ok())
        .filter(|env| {
            env.split(|&b| b == 0)
                .any(|kv| kv.starts_with(b"PROCS_FORKSERVER="))
        })
        .count();
    assert_eq!(servers, 0, "a forkserver was started");
    assert_eq!(procs_core::active_children().len(), children_before);
}
