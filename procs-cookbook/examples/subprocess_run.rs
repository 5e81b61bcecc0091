//! Run other programs with `subprocess::run`: capture what a command
//! prints, feed it input, run it in a directory, let `check` turn a failure
//! into an error, and let a timeout stop a command that takes too long,
//! keeping what it printed before.
//!
//! Run it alone with `cargo run -p procs-cookbook --example subprocess_run`.

use std::time::Duration;

use procs_core::Error;
use procs_core::subprocess::Run;

/// Runs the recipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Capture stdout and stderr, each on its own.
    let done = Run::new(["uname", "-sm"]).capture_output().run()?;
    println!("{:?} exited with {}", done.args, done.returncode);
    print!("stdout: {}", done.stdout_str());

    // Feed input on stdin.
    let sorted = Run::new(["sort"])
        .input("pear\napple\nfig\n")
        .capture_output()
        .run()?;
    print!("sorted:\n{}", sorted.stdout_str());

    // Run in another directory.
    let dir = std::env::temp_dir().join(format!("subprocess_run-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("notes.txt"), "some notes\n")?;
    let listing = Run::new(["ls", "-l"]).cwd(&dir).capture_output().run();
    std::fs::remove_dir_all(&dir)?;
    print!("ls -l in {}:\n{}", dir.display(), listing?.stdout_str());

    // With check, a non-zero exit code is an error carrying the output.
    let failed = Run::new(["sh", "-c", "echo 'cannot do that' >&2; exit 3"])
        .capture_output()
        .check()
        .run();
    match failed {
        Err(Error::CalledProcessError {
            returncode, stderr, ..
        }) => println!(
            "check failed: exit code {returncode}, stderr {:?}",
            String::from_utf8_lossy(&stderr)
        ),
        other => println!("unexpected: {other:?}"),
    }

    // A timeout kills the command (and whatever it started) and keeps what
    // it printed before.
    let slow = Run::new(["sh", "-c", "echo working; sleep 10; echo done"])
        .capture_output()
        .timeout(Duration::from_millis(50))
        .run();
    match slow {
        Err(Error::TimeoutExpired {
            timeout, stdout, ..
        }) => println!(
            "timed out after {timeout:?}, captured so far: {:?}",
            String::from_utf8_lossy(&stdout)
        ),
        other => println!("unexpected: {other:?}"),
    }

    // A program that does not exist is named in the error.
    if let Err(e) = Run::new(["no-such-program"]).run() {
        println!("error: {e}");
    }
    Ok(())
}
