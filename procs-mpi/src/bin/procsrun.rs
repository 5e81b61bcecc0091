//! procsrun: starts N ranks of a program in one job (placeholder until the
//! launcher lands).
fn main() {
    eprintln!("procsrun: not built yet");
    std::process::exit(2);
}
