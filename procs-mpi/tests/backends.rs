//! The backend suite (`tests/suite`) over shared memory: four ranks of
//! `run`. The same suite runs under `procsrun -n 4` and `mpirun -n 4` as
//! the `suite` example (see `.ci/run`).

mod suite;

#[test]
fn every_check_passes_over_shared_memory_on_four_ranks() {
    let failed = procs_mpi::run(4, |world| {
        assert_eq!(world.backend(), procs_mpi::Backend::SharedMemory);
        suite::run(world)
    })
    .expect("the job");
    for (rank, f) in failed.iter().enumerate() {
        assert!(f.is_empty(), "rank {rank}: {f:?}");
    }
}

#[test]
fn every_check_passes_on_two_and_three_ranks() {
    for n in [2, 3] {
        let failed = procs_mpi::run(n, suite::run).expect("the job");
        for (rank, f) in failed.iter().enumerate() {
            assert!(f.is_empty(), "{n} ranks, rank {rank}: {f:?}");
        }
    }
}
