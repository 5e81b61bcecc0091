//! Deadlocks between two ranks, and how to avoid them: of nine ranks,
//! ranks 1 and 5 exchange messages (the others do nothing).
//!
//! 1. Each receives first from the other: neither ever gets to its send.
//!    Under MPI the two hang; here the deadlock detector sees that every
//!    live rank is blocked with nothing in flight, and each blocked call
//!    returns `Error::Deadlock`, whose text names the wait-for cycle.
//! 2. The first fix: one side sends first (rank 1 sends then receives,
//!    rank 5 receives then sends).
//! 3. The second fix: both call `sendrecv`, which sends and receives at once.
//! 4. Both sending first works too, while the message fits the eager
//!    buffer (`World::eager_limit()` bytes or less): such a send returns
//!    before its receive is posted.
//! 5. ... but one byte more and a send waits for its receive: both wait,
//!    a deadlock again.
//! 6. So does a synchronous send (`ssend`) on both sides, of any size.
//!
//! Under `mpirun` (the `openmpi` feature) there is no detector, as under
//! mpi4py: the deadlocking steps would hang, so only the fixes run.
//!
//! After a reported deadlock both ranks go on to the next step: the error
//! returns from the blocked call on each of them, and the send it was
//! making is withdrawn. Each step uses a tag of its own, and the two ranks
//! print their outcome in turn (rank 1, then rank 5) before the next step.
//!
//! Run it alone with `cargo run -p procs-cookbook --example mpi_deadlock`:
//! it starts its nine ranks itself. Under the `procsrun` launcher it uses
//! the launcher's world, and with fewer than six ranks only says so.

use std::io::Write;
use std::time::Instant;

use procs_mpi::{Communicator, CommunicatorExt, Error, World};

/// The ranks the chapter runs.
const RANKS: usize = 9;
/// The two ranks that exchange.
const A: i32 = 1;
const B: i32 = 5;
/// The tag of the turns the two take to print (each step has its own tag).
const TURN: i32 = 99;

fn say(line: &str) {
    println!("{line}");
    // A rank's process ends with its body: nothing may stay buffered.
    let _ = std::io::stdout().flush();
}

/// One of the two ranks, and the step it is at.
struct Side<'w> {
    world: &'w World,
    me: i32,
    other: i32,
    step: i32,
}

impl Side<'_> {
    /// Runs one step on this side: rank 1 says what it shows, `work` runs
    /// (with the step's tag), and the two print how it went, in turn.
    fn step(
        &mut self,
        title: &str,
        work: impl FnOnce(&Side<'_>, i32) -> procs_mpi::Result<String>,
    ) -> procs_mpi::Result<()> {
        self.step += 1;
        let tag = self.step;
        if self.me == A {
            say(&format!("-- step {tag}: {title}"));
        }
        let t = Instant::now();
        let line = match work(self, tag) {
            Ok(what) => format!("   rank {}: {what}", self.me),
            Err(e @ Error::Deadlock(_)) => format!(
                "   rank {}: reported after {} ms: {e}",
                self.me,
                t.elapsed().as_millis()
            ),
            Err(e) => return Err(e),
        };
        self.in_turn(&line)
    }

    /// Prints `line`, rank 1 first: rank 5 prints once rank 1 has, and
    /// rank 1 goes on once rank 5 has.
    fn in_turn(&self, line: &str) -> procs_mpi::Result<()> {
        if self.me == A {
            say(line);
            self.world.send(&(), B, TURN)?;
            self.turn_from(B)
        } else {
            self.turn_from(A)?;
            say(line);
            self.world.send(&(), A, TURN)
        }
    }

    /// Receives the other's turn.
    fn turn_from(&self, from: i32) -> procs_mpi::Result<()> {
        self.world.recv::<()>(from, TURN)
    }

    /// A message from this side.
    fn message(&self) -> String {
        format!("greetings from rank {}", self.me)
    }

    /// Sends a buffer of `len` bytes first, then receives the other's.
    fn send_first_buf(&self, len: usize, tag: i32) -> procs_mpi::Result<String> {
        self.world
            .send_buf(&vec![self.me as u8; len], self.other, tag)?;
        let mut buf = vec![0u8; len];
        let status = self.world.recv_buf(&mut buf, self.other, tag)?;
        let n = status.count::<u8>();
        let intact = n == len && buf.iter().all(|&b| b == self.other as u8);
        Ok(format!(
            "sent {len} bytes, then received {n} bytes from rank {}{}",
            status.source,
            if intact { "" } else { " (NOT the bytes sent)" }
        ))
    }
}

impl Side<'_> {
    /// The two fixes of the first deadlock.
    fn fixes(&mut self) -> procs_mpi::Result<()> {
        self.step(
            "fix (a): rank 1 sends then receives, rank 5 receives then sends",
            |s, tag| {
                let got: String = if s.me == A {
                    s.world.send(&s.message(), s.other, tag)?;
                    s.world.recv(s.other, tag)?
                } else {
                    let got = s.world.recv(s.other, tag)?;
                    s.world.send(&s.message(), s.other, tag)?;
                    got
                };
                Ok(format!("received {got:?}"))
            },
        )?;
        self.step("fix (b): both call sendrecv", |s, tag| {
            let got: String = s.world.sendrecv(&s.message(), s.other, tag, s.other, tag)?;
            Ok(format!("received {got:?}"))
        })
    }
}

/// What every rank does.
fn body(world: &World) -> procs_mpi::Result<()> {
    let me = world.rank();
    if world.size() <= B {
        if me == 0 {
            say(&format!(
                "this recipe needs ranks {A} and {B}, so at least {} ranks (the chapter runs {RANKS}); the world has {}",
                B + 1,
                world.size()
            ));
        }
        return Ok(());
    }
    if me != A && me != B {
        return Ok(());
    }
    let mut side = Side {
        world,
        me,
        other: if me == A { B } else { A },
        step: 0,
    };
    if world.backend() == procs_mpi::Backend::Mpi {
        // A real MPI library has no deadlock detector: the deadlocking
        // steps would hang there, as they do under mpi4py. The fixes run.
        if me == A {
            say("-- under MPI a deadlock hangs (no detector): only the fixes run");
        }
        return side.fixes();
    }
    let limit = world.eager_limit();

    side.step(
        "ranks 1 and 5 each receive first from the other: neither gets to its send",
        |s, tag| {
            let got: String = s.world.recv(s.other, tag)?;
            s.world.send(&s.message(), s.other, tag)?;
            Ok(format!("received {got:?}: no deadlock"))
        },
    )?;
    side.fixes()?;
    side.step(
        &format!(
            "both send first, then receive, {limit} bytes (the eager limit): each send returns at once"
        ),
        |s, tag| s.send_first_buf(limit, tag),
    )?;
    side.step(
        &format!(
            "both send first {} bytes, one more than the eager limit: each send waits for a receive",
            limit + 1
        ),
        |s, tag| s.send_first_buf(limit + 1, tag),
    )?;
    side.step(
        "both ssend first (a synchronous send waits for its receive, whatever the size)",
        |s, tag| {
            s.world.ssend(&s.message(), s.other, tag)?;
            let got: String = s.world.recv(s.other, tag)?;
            Ok(format!("received {got:?}: no deadlock"))
        },
    )?;
    if me == A {
        say("-- after each deadlock reported, ranks 1 and 5 went on to the next step");
    }
    Ok(())
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Alone: RANKS ranks of its own; under procsrun: the launcher's world.
    for outcome in procs_mpi::run_or_join(RANKS, |world| body(world).map_err(|e| e.to_string()))? {
        outcome?;
    }
    Ok(())
}
