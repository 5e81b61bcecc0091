//! Jobs whose ranks start by the spawn and forkserver methods: fresh
//! executions of this test binary (the hook below makes each run its
//! rank) that join the job's segment. Collectives, messages, a panic and a
//! killed rank behave as with forked ranks.

use procs_core::StartMethod;
use procs_mpi::{Communicator, CommunicatorExt, Config, Error, Op, World};

procs_core::init_before_main!();

const METHODS: [StartMethod; 2] = [StartMethod::Spawn, StartMethod::Forkserver];

fn sum_and_ring(world: &World) -> (i64, i32, String) {
    let (me, n) = (world.rank(), world.size());
    let sum = world.allreduce(&(me as i64), Op::SUM).unwrap();
    let got: i32 = world
        .sendrecv(&me, (me + 1) % n, 0, (me + n - 1) % n, 0)
        .unwrap();
    (sum, got, procs_core::current_process().name)
}

fn rank_1_panics(world: &World) -> i32 {
    if world.rank() == 1 {
        panic!("rank 1 gives up");
    }
    world.rank()
}

fn rank_1_is_killed(world: &World) -> Result<i32, String> {
    if world.rank() == 1 {
        // SAFETY: kill(2) on our own pid with a valid signal number.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    // Rank 0 waits for a message rank 1 never sends: RankDied, not a hang.
    match world.recv::<i32>(1, 5) {
        Err(Error::RankDied { rank, .. }) => Ok(rank),
        other => Err(format!("{other:?}")),
    }
}

#[test]
fn spawned_and_served_ranks_meet_in_one_job() {
    for m in METHODS {
        let got = Config::new()
            .start_method(m)
            .run_fn(4, sum_and_ring)
            .unwrap();
        for (r, (sum, from, name)) in got.into_iter().enumerate() {
            assert_eq!(sum, 6, "{m:?}");
            assert_eq!(from, (r as i32 + 3) % 4, "{m:?}");
            assert_eq!(name, format!("rank-{r}"));
        }
    }
}

#[test]
fn a_panic_and_a_death_are_reported_as_for_forked_ranks() {
    for m in METHODS {
        let cfg = Config::new().start_method(m);
        match cfg.run_fn(3, rank_1_panics) {
            Err(Error::RankFailed { rank: 1, reason }) => {
                assert!(reason.contains("rank 1 gives up"), "{m:?}: {reason}")
            }
            other => panic!("{m:?}: {other:?}"),
        }
        let all = cfg.run_all_fn(2, rank_1_is_killed).unwrap();
        assert_eq!(all[0].as_ref().unwrap(), &Ok(1), "{m:?}");
        assert!(
            matches!(all[1], Err(Error::RankFailed { rank: 1, .. })),
            "{m:?}"
        );
    }
}
