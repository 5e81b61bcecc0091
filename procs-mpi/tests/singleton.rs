//! `init()` started alone: a world of one rank (an MPI singleton). Its own
//! test binary: `init` is called once per process.

use procs_mpi::{ANY_SOURCE, Communicator, CommunicatorExt, Error};

#[test]
fn init_alone_is_a_world_of_one_that_talks_to_itself() {
    // Run by cargo, not by procsrun.
    assert!(std::env::var_os(procs_mpi::ENV_FD).is_none());
    let world = procs_mpi::init().unwrap();
    assert_eq!((world.rank(), world.size()), (0, 1));
    assert!(!world.processor_name().is_empty());
    world.send(&"to myself", 0, 3).unwrap();
    world.send_buf(&vec![5u32; 100_000], 0, 4).unwrap();
    let st = world.probe(ANY_SOURCE, 4).unwrap();
    assert_eq!(st.count::<u32>(), 100_000);
    let s: String = world.recv(0, 3).unwrap();
    assert_eq!(s, "to myself");
    let mut buf = vec![0u32; 100_000];
    world.recv_buf(&mut buf, 0, 4).unwrap();
    assert!(buf.iter().all(|&x| x == 5));
    assert!(matches!(
        world.send(&1, 1, 0),
        Err(Error::InvalidRank { rank: 1, size: 1 })
    ));
    // Waiting for a message nobody can send is reported, not hung.
    let e = world.recv::<u8>(0, 9).unwrap_err();
    assert_eq!(
        e.to_string(),
        "deadlock: rank 0 waits in recv(source=0, tag=9) for rank 0"
    );
    // A second init is refused.
    assert!(matches!(procs_mpi::init(), Err(Error::Job(_))));
}
