//! Synchronize processes with a Barrier: two processes wait at a barrier for
//! two parties and then print the time, taking turns with a lock; two others
//! print the time without waiting. The two behind the barrier leave it
//! together, so they print the same instant, to within a few microseconds;
//! a last line says how far apart they were.
//!
//! Run it alone with `cargo run -p procs-cookbook --example sync_barrier`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use procs_core::{Process, current_process};
use procs_sync::{Array, Barrier, Lock};

fn test_with_barrier(synchronizer: Barrier, serializer: Lock, left_at: Array<u64>) {
    let name = current_process().name;
    let arrival = synchronizer.wait().expect("nobody breaks this barrier");
    let now = SystemTime::now();
    // Not in the recipe: keep the time each process left the barrier, in
    // microseconds, for the last line of `main`.
    left_at.lock().unwrap()[arrival as usize] = micros_since_epoch(now);
    let _guard = serializer.lock().unwrap();
    println!("process {name} ----> {}", datetime(now));
}

fn test_without_barrier() {
    let name = current_process().name;
    let now = SystemTime::now();
    println!("process {name} ----> {}", datetime(now));
}

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let synchronizer = Barrier::new(2)?;
    let serializer = Lock::new()?;
    let left_at = Array::<u64>::new(2)?;

    let mut processes = Vec::new();
    for name in ["p1 - test_with_barrier", "p2 - test_with_barrier"] {
        let (synchronizer, serializer, left_at) =
            (synchronizer.clone(), serializer.clone(), left_at.clone());
        let mut p = Process::builder()
            .name(name)
            .build(move || test_with_barrier(synchronizer, serializer, left_at));
        p.start()?;
        processes.push(p);
    }
    for name in ["p3 - test_without_barrier", "p4 - test_without_barrier"] {
        let mut p = Process::builder().name(name).build(test_without_barrier);
        p.start()?;
        processes.push(p);
    }
    for p in &mut processes {
        p.join()?;
    }

    let left_at = left_at.to_vec();
    println!(
        "p1 and p2 left the barrier {} µs apart",
        left_at[0].abs_diff(left_at[1])
    );
    Ok(())
}

fn micros_since_epoch(t: SystemTime) -> u64 {
    // A clock set before 1970 reads as 1970.
    let since_epoch = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX)
}

/// `t` as Python prints a `datetime`: `2026-11-25 09:12:03.123456`. In UTC,
/// where Python's `datetime.fromtimestamp` gives local time: the time zone
/// database is more than this recipe needs.
fn datetime(t: SystemTime) -> String {
    let micros = micros_since_epoch(t);
    let secs = micros / 1_000_000;
    let (days, secs_of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:06}",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60,
        micros % 1_000_000
    )
}

/// The proleptic Gregorian date `days` days after 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Count from 0000-03-01, so that the leap day ends a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097; // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // [0, 399]
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // [0, 365]
    let mp = (5 * day_of_year + 2) / 153; // [0, 11], March = 0
    let day = day_of_year - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}
