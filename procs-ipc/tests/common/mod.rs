//! Helpers shared by the cross-process tests.
#![allow(dead_code)]

use std::io::{PipeReader, Read};

use procs_core::Process;

/// Reads one line from a pipe.
pub fn read_line(r: &mut PipeReader) -> String {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while r.read(&mut byte).expect("read") == 1 && byte[0] != b'\n' {
        out.push(byte[0]);
    }
    String::from_utf8(out).expect("utf-8")
}

/// Kills and joins a process when dropped, so that a failed assertion
/// leaves no child behind.
pub struct Reaper(pub Process);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.join();
    }
}

/// Starts `f` in a child process, killed when the returned guard drops.
pub fn start(f: impl FnOnce() + Send + 'static) -> Reaper {
    let mut p = Process::new(f);
    p.start().expect("start");
    Reaper(p)
}
