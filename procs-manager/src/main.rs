//! `procs-manager`: serves a manager from the command line, for programs
//! that connect with `Manager::connect(address, authkey)`.
//!
//! ```text
//! procs-manager serve --tcp 127.0.0.1:50000 --authkey-file KEY
//! procs-manager serve --unix /run/app/manager.sock --authkey-file KEY
//! ```
//!
//! The key file's bytes (a trailing newline removed) are the authkey. The
//! server prints `serving at ADDRESS` once it listens, and serves until a
//! client asks it to shut down (or it is signaled).

#![deny(unsafe_op_in_unsafe_fn)]

use std::process::ExitCode;

use procs_ipc::Address;
use procs_manager::{Limits, Manager};

const USAGE: &str =
    "usage: procs-manager serve (--tcp HOST:PORT | --unix PATH) --authkey-file FILE";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("procs-manager: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut args = args.into_iter();
    if args.next().as_deref() != Some("serve") {
        return Err(USAGE.into());
    }
    let (mut address, mut key_file) = (None, None);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(USAGE)?;
        match flag.as_str() {
            "--tcp" => {
                let a: std::net::SocketAddr =
                    value.parse().map_err(|e| format!("--tcp {value}: {e}"))?;
                address = Some(Address::Tcp(a));
            }
            "--unix" => address = Some(Address::Unix(value.into())),
            "--authkey-file" => key_file = Some(value),
            _ => return Err(USAGE.into()),
        }
    }
    let (address, key_file) = address.zip(key_file).ok_or(USAGE)?;
    let mut key = std::fs::read(&key_file).map_err(|e| format!("{key_file}: {e}"))?;
    if key.last() == Some(&b'\n') {
        key.pop();
    }
    if key.is_empty() {
        return Err(format!("{key_file}: an empty authkey"));
    }
    let bound = Manager::bind(address, &key).map_err(|e| e.to_string())?;
    println!("serving at {}", bound.address());
    bound.serve(Limits::default());
    Ok(())
}
