//! A manager served on 127.0.0.1 with an authkey, and clients that connect
//! on their own: one puts jobs on a shared queue, another gets them, and a
//! client with the wrong key is refused.
//!
//! Python's `BaseManager(address=('127.0.0.1', 0), authkey=b'...')` with a
//! queue registered under a name: here `Manager::builder()` starts the
//! server and `Manager::connect(address, authkey)` reaches it from any
//! program (the clients below are processes of this one only to keep the
//! recipe in one file; `procs-manager serve` serves from the command line).
//!
//! Run it alone with `cargo run -p procs-cookbook --example manager_remote`.

use std::net::SocketAddr;
use std::time::Duration;

use procs_core::Process;
use procs_manager::Manager;

const AUTHKEY: &[u8] = b"recipe secret";

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Manager::builder()
        .address(SocketAddr::from(([127, 0, 0, 1], 0)))
        .authkey(AUTHKEY)
        .start()?;
    let address = server.address().clone();
    println!("manager serving at {address}");

    let at = address.clone();
    let mut producer = Process::new(move || {
        let m = Manager::connect(at, AUTHKEY).unwrap();
        let jobs = m.named_queue::<String>("jobs", 0).unwrap();
        for i in 0..3 {
            jobs.put(format!("job {i}")).unwrap();
            println!("producer put job {i}");
        }
        jobs.put("stop".into()).unwrap();
    });
    let at = address.clone();
    let mut consumer = Process::new(move || {
        let m = Manager::connect(at, AUTHKEY).unwrap();
        let jobs = m.named_queue::<String>("jobs", 0).unwrap();
        loop {
            let job = jobs.get_timeout(Duration::from_secs(30)).unwrap();
            if job == "stop" {
                break;
            }
            println!("consumer got {job}");
        }
    });
    producer.start()?;
    consumer.start()?;
    producer.join()?;
    consumer.join()?;

    match Manager::connect(address, b"a wrong key") {
        Ok(_) => println!("a client with a wrong key was let in"),
        Err(e) => println!("a client with a wrong key was refused: {e}"),
    }
    Ok(())
}
