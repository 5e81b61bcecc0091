//! The manager's server on any bytes: the input is cut into requests (a
//! 0xff byte ends one), which a server in this process answers as one
//! connection would. Nothing may panic or block; every answer parses as a
//! response; a request that parses is answered (never a closed
//! connection, since none of its calls may wait here), and one that does
//! not is answered `BadRequest`.
//!
//! `cargo +nightly fuzz run request -- -max_total_time=60` (from procs-manager/)
#![no_main]

use libfuzzer_sys::fuzz_target;
use procs_manager::wire::{ErrorKind, parse_request, parse_response};

fuzz_target!(|data: &[u8]| {
    let requests: Vec<&[u8]> = data.split(|&b| b == 0xff).take(64).collect();
    let server = procs_manager::Loopback::new();
    for (req, answer) in requests.iter().zip(server.answer_all(&requests)) {
        let parsed = parse_request(req);
        match answer {
            Some(a) => match parse_response(&a).expect("every answer parses") {
                Ok(_) => assert!(parsed.is_ok(), "a request that does not parse was done"),
                Err((kind, _)) => {
                    if parsed.is_err() {
                        assert_eq!(kind, ErrorKind::BadRequest);
                    }
                }
            },
            // Only a call that would wait ends the connection here.
            None => assert!(parsed.is_ok()),
        }
    }
});
