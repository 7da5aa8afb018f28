//! The scenario corpus's table: `cargo bench --bench corpus` generates every recording, replays
//! it through `deflect replay` with the shipped policies, and prints per scenario the verdict,
//! the detection delay (from the attack's first second to the attack's start) and the replay's
//! own time. The same judgement fails the test `integration/replay.rs`.

#[path = "../integration/corpus/check.rs"]
mod check;

fn main() {
    let dir = check::scratch("bench");
    let manifest = check::generate(&dir, &[]);
    let mut rows = Vec::new();
    for sc in &manifest {
        rows.push(check::judge(&dir, sc, &[]));
    }
    eprintln!("{}", check::table(&rows));
    let total: u128 = rows.iter().map(|r| r.replay_ms).sum();
    eprintln!(
        "{} scenarios, {} right; replays took {:.1} s in all (debug or release as built)",
        rows.len(),
        rows.iter().filter(|r| r.problems.is_empty()).count(),
        total as f64 / 1000.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}
