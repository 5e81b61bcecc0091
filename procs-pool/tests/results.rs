//! A result's `Deserialize` is user code that runs in the pool's process:
//! one that panics fails its result (and nothing else), and one that looks
//! at its own map while it is being decoded does not deadlock it.

use std::cell::RefCell;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use procs_pool::{AsyncResult, Error, MapOptions, Pool};
use serde::{Deserialize, Deserializer, Serialize};

const WAIT: Duration = Duration::from_secs(30);

fn square(x: u64) -> u64 {
    x * x
}

/// A number whose `Deserialize` panics on 13.
#[derive(Debug, PartialEq, Serialize)]
struct Fragile(u64);

impl<'de> Deserialize<'de> for Fragile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        if v == 13 {
            panic!("thirteen cannot be read");
        }
        Ok(Fragile(v))
    }
}

fn fragile(x: u64) -> Fragile {
    Fragile(x)
}

fn is_the_panic(e: &Error) -> bool {
    matches!(e, Error::Serde(m) if m.contains("panicked") && m.contains("thirteen cannot be read"))
}

#[test]
fn a_result_whose_deserialize_panics_fails_alone_and_the_pool_goes_on() {
    let pool = Pool::new(2).unwrap();
    // An apply's result is decoded on the pool's handler thread.
    match pool.apply_async(fragile, 13).unwrap().get_timeout(WAIT) {
        Err(e) => assert!(is_the_panic(&e), "{e}"),
        Ok(v) => panic!("{v:?}"),
    }
    assert_eq!(pool.apply(fragile, 12).unwrap(), Fragile(12));
    // So is a map's with callbacks.
    let (tx, rx) = mpsc::channel();
    let r = pool
        .map_async_with(
            fragile,
            0..100,
            MapOptions::new()
                .chunksize(10)
                .error_callback(move |e: &Error| tx.send(e.clone()).unwrap()),
        )
        .unwrap();
    match r.get_timeout(WAIT) {
        Err(e) => assert!(is_the_panic(&e), "{e}"),
        Ok(v) => panic!("{} values", v.len()),
    }
    assert!(is_the_panic(&rx.recv_timeout(WAIT).unwrap()));
    // A map without callbacks is decoded by its waiter.
    match pool.map_with_chunksize(fragile, 0..100, 7) {
        Err(e) => assert!(is_the_panic(&e), "{e}"),
        Ok(v) => panic!("{} values", v.len()),
    }
    // An imap by its consumer: the item's place holds the error.
    let got: Vec<_> = pool.imap(fragile, 10..16).unwrap().collect();
    assert_eq!(got.len(), 6);
    for (x, r) in (10..16).zip(&got) {
        match r {
            Err(e) if x == 13 => assert!(is_the_panic(e), "{e}"),
            Ok(v) => assert_eq!(v, &Fragile(x)),
            Err(e) => panic!("{x}: {e}"),
        }
    }
    // The pool goes on.
    assert_eq!(pool.map(square, 0..1000).unwrap().len(), 1000);
    pool.close();
    pool.join().unwrap();
}

type Peeked = Arc<AsyncResult<Vec<Peeks>>>;

thread_local! {
    /// The map whose values this thread decodes, and the gate its second
    /// task waits for.
    static PEEK: RefCell<Option<(Peeked, String)>> = const { RefCell::new(None) };
}

/// A number whose `Deserialize`, for 0, lets the map's other task end and
/// then asks whether the map is ready (from inside its decoding).
#[derive(Debug, Serialize)]
struct Peeks(u64);

impl<'de> Deserialize<'de> for Peeks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        let peek = PEEK.with(|p| p.borrow().clone());
        if let (0, Some((map, gate))) = (v, peek) {
            std::fs::write(&gate, b"open").unwrap();
            // Leave the other output time to come in meanwhile (the
            // outcome does not depend on whether it did).
            std::thread::sleep(Duration::from_millis(300));
            assert!(
                !map.ready(),
                "the map is ready while its first value is read"
            );
        }
        Ok(Peeks(v))
    }
}

/// Returns `x`; for 1, once the file `gate` exists.
fn gated_peeks((gate, x): (String, u64)) -> Peeks {
    if x == 1 {
        let deadline = Instant::now() + WAIT;
        while !std::path::Path::new(&gate).exists() {
            assert!(Instant::now() < deadline, "the gate never opened");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Peeks(x)
}

#[test]
fn a_deserialize_that_looks_at_its_own_map_does_not_deadlock_it() {
    let gate = std::env::temp_dir()
        .join(format!("procs-pool-peek-gate-{}", std::process::id()))
        .to_string_lossy()
        .into_owned();
    let _ = std::fs::remove_file(&gate);
    let (tx, rx) = mpsc::channel();
    let g = gate.clone();
    // On a thread of its own, so that a deadlock is a failure, not a hang.
    std::thread::spawn(move || {
        let pool = Pool::new(2).unwrap();
        let items = [(g.clone(), 0), (g.clone(), 1)];
        let map = Arc::new(
            pool.map_async_with(gated_peeks, items, MapOptions::new().chunksize(1))
                .unwrap(),
        );
        PEEK.with(|p| *p.borrow_mut() = Some((map.clone(), g)));
        // This thread decodes the outputs, and the first value's
        // Deserialize asks the map whether it is ready.
        let ready = map.wait_timeout(WAIT);
        PEEK.with(|p| p.borrow_mut().take());
        let values = Arc::try_unwrap(map)
            .unwrap()
            .get_timeout(Duration::ZERO)
            .map(|v| v.into_iter().map(|p| p.0).collect::<Vec<_>>());
        tx.send((ready, values)).unwrap();
    });
    let (ready, values) = rx
        .recv_timeout(2 * WAIT)
        .expect("the map deadlocked while its values were decoded");
    assert!(ready);
    assert_eq!(values.unwrap(), vec![0, 1]);
    let _ = std::fs::remove_file(&gate);
}
