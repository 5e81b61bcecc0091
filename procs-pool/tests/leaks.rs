//! Nothing is left behind by a pool: no descriptor, no shared memory, no
//! zombie, also when a worker was killed and another replaced it. (One test
//! alone in its binary, so that no other test opens descriptors meanwhile.)

use std::collections::HashSet;

use procs_pool::{Error, Pool};

fn square(x: u64) -> u64 {
    x * x
}

fn suicide(_: u64) -> u64 {
    // SAFETY: kill(2) on our own pid with a valid signal number.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    0
}

fn reverse(mut v: Vec<u8>) -> Vec<u8> {
    v.reverse();
    v
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn shm_entries() -> HashSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn gone(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH)
}

#[test]
fn a_dropped_pool_leaves_nothing_behind() {
    let fds = open_fds();
    let shm = shm_entries();
    let mut pids = HashSet::new();
    for round in 0..3 {
        let pool = Pool::builder()
            .processes(2)
            .maxtasksperchild(5)
            .build()
            .unwrap();
        pids.extend(pool.pids());
        assert_eq!(pool.map_with_chunksize(square, 0..40, 1).unwrap().len(), 40);
        assert!(matches!(
            pool.apply(suicide, 0),
            Err(Error::WorkerDied { exitcode: -9, .. })
        ));
        let big = vec![1u8; 3 << 20];
        assert_eq!(pool.apply(reverse, big.clone()).unwrap(), big);
        pids.extend(pool.pids());
        if round == 1 {
            pool.close();
            pool.join().unwrap();
        }
        drop(pool);
    }
    let links: Vec<_> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_link(e.path()))
        .collect();
    assert_eq!(open_fds(), fds, "descriptors left open: {links:?}");
    assert_eq!(shm_entries(), shm, "entries left in /dev/shm");
    for pid in pids {
        assert!(gone(pid), "worker {pid} left behind");
    }
}
