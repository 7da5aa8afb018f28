//! `deflect replay` over the scenario corpus (`integration/corpus/corpus.py`): every attack shape
//! gets its vector, exact signature and rule, every legitimate shape gets no mitigation. The
//! recordings are generated here (captures as a probe samples, sFlow datagrams in pcapng, the
//! probe's JSON reports) and replayed with the shipped policies and the embedded configuration.

#[path = "corpus/check.rs"]
mod check;

#[test]
fn every_scenario_of_the_corpus_gets_its_verdict() {
    let dir = check::scratch("test");
    let manifest = check::generate(&dir, &[]);
    assert!(
        manifest.len() >= 20,
        "the corpus shrank: {}",
        manifest.len()
    );
    let rows: Vec<check::Row> = manifest
        .iter()
        .map(|s| check::judge(&dir, s, &[]))
        .collect();
    let table = check::table(&rows);
    let ms: u128 = rows.iter().map(|r| r.replay_ms).sum();
    eprintln!(
        "{table}\n{} scenarios replayed in {:.1} s",
        rows.len(),
        ms as f64 / 1000.0
    );
    let _ = std::fs::remove_dir_all(&dir);
    let wrong: Vec<&str> = rows
        .iter()
        .filter(|r| !r.problems.is_empty())
        .map(|r| r.name.as_str())
        .collect();
    assert!(wrong.is_empty(), "wrong verdicts: {wrong:?}\n{table}");
}
