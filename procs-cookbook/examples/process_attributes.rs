//! Process attributes, as psutil shows them: pid, parent, name, status,
//! start time, CPU times, memory, working directory and environment, first
//! of this process, then of a child it starts; then the child killed (a
//! zombie until reaped) and reaped (gone).
//!
//! Run it alone with `cargo run -p procs-cookbook --example process_attributes`.

use std::fmt::Display;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use procs_core::info::{ProcessInfo, Status};

/// Prints what `/proc` tells of `p`, and the environment variables `vars`.
fn show(p: &ProcessInfo, vars: &[&str]) -> procs_core::Result<()> {
    println!("  pid         {}", p.pid());
    println!("  ppid        {}", p.ppid()?);
    println!("  name        {}", p.name()?);
    println!("  cmdline     {:?}", p.cmdline()?);
    println!("  status      {}", p.status()?);

    // Boot time comes to the second, so a process just started may look
    // up to a second older than it is (psutil's create_time does the same).
    let created = p.create_time()?;
    let epoch = created.duration_since(UNIX_EPOCH).unwrap_or_default();
    let age = SystemTime::now()
        .duration_since(created)
        .unwrap_or_default();
    println!(
        "  created     {:.2} s after the epoch ({:.2} s ago)",
        epoch.as_secs_f64(),
        age.as_secs_f64()
    );

    let cpu = p.cpu_times()?;
    println!("  cpu times   user {:?}, system {:?}", cpu.user, cpu.system);
    let mem = p.memory_info()?;
    println!(
        "  memory      rss {} KiB, vms {} KiB",
        mem.rss / 1024,
        mem.vms / 1024
    );
    println!("  threads     {}", p.num_threads()?);
    println!("  cwd         {}", p.cwd()?.display());

    let env = p.environ()?;
    println!("  environ     {} variables", env.len());
    for var in vars {
        let value = env.get(*var).map_or("(not set)", String::as_str);
        println!("    {var}={value}");
    }
    Ok(())
}

/// Waits (at most a second) for `p` to reach `status`.
fn wait_for(p: &ProcessInfo, status: Status) -> procs_core::Result<()> {
    for _ in 0..1000 {
        if p.status()? == status {
            break;
        }
        sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// A value, or the error that came instead of it.
fn or_error<T: Display>(result: procs_core::Result<T>) -> String {
    match result {
        Ok(value) => value.to_string(),
        Err(e) => format!("error: {e}"),
    }
}

/// Shows this process, then a child, then the child killed and reaped.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Some work, so that the CPU times are not all zero.
    let mut x = 0u64;
    for i in 0..20_000_000u64 {
        x = x.wrapping_mul(31).wrapping_add(i);
    }
    std::hint::black_box(x);

    println!("This process:");
    show(&ProcessInfo::current()?, &["HOME", "PATH"])?;

    let mut child = Command::new("sleep")
        .arg("10")
        .current_dir("/")
        .env("GREETING", "hello from the parent")
        .stdout(Stdio::null())
        .spawn()?;
    let info = ProcessInfo::new(child.id() as i32)?;
    println!("\nA child, `sleep 10` in / with GREETING set:");
    // Kept for later: the child is killed and reaped whatever happens here.
    let shown = wait_for(&info, Status::Sleeping).and_then(|()| show(&info, &["GREETING", "HOME"]));

    // Killed, it is a zombie until its parent waits for it: still there,
    // with a status, but without memory, directory or environment.
    child.kill()?;
    wait_for(&info, Status::Zombie)?;
    println!("\nKilled:  status {}", or_error(info.status()));
    println!(
        "         cwd {}",
        or_error(info.cwd().map(|p| p.display().to_string()))
    );
    child.wait()?;
    // Reaped, it is gone; a new process given its pid would not be taken
    // for it: `info` stays bound to the process it was made for.
    println!("Reaped:  is_running {}", or_error(info.is_running()));
    println!("         status {}", or_error(info.status()));
    shown?;
    Ok(())
}
