//! The `procs-manager serve` command: a server for programs that connect
//! on their own, with the key from a file.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use procs_manager::Manager;

/// Kills and reaps the server when dropped, also when an assertion fails.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_command_serves_clients_with_the_key_and_refuses_others() {
    let dir = std::env::temp_dir().join(format!("procs-manager-cmd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key");
    std::fs::write(&key, "s3cret\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_procs-manager"))
        .args(["serve", "--tcp", "127.0.0.1:0", "--authkey-file"])
        .arg(&key)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let server = Server(child);
    std::fs::remove_dir_all(&dir).unwrap();
    let addr: std::net::SocketAddr = line
        .trim()
        .strip_prefix("serving at ")
        .and_then(|a| a.strip_prefix("tcp:").or(Some(a)))
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{line:?}: {e}"));
    let m = Manager::connect(addr, b"s3cret").unwrap();
    let q = m.named_queue::<String>("jobs", 0).unwrap();
    q.put("one".into()).unwrap();
    // Another client of the same server sees the same queue.
    let other = Manager::connect(addr, b"s3cret").unwrap();
    let same = other.named_queue::<String>("jobs", 0).unwrap();
    assert_eq!(same.len().unwrap(), 1);
    assert!(Manager::connect(addr, b"wrong").is_err());
    // The server goes on after the refusal.
    assert_eq!(q.try_get().unwrap(), "one");
    let bad = Command::new(env!("CARGO_BIN_EXE_procs-manager"))
        .args(["serve", "--tcp", "nonsense"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--tcp nonsense"));
    drop(server);
}
