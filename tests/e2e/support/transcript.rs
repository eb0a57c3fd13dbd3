//! What a whole debate transcript is: seqs 1, 2, 3, ... with no gap, every step (phase, round,
//! agent) recorded once, and the count of each kind of step the debate's shape asks for.
//! Shared by the tests that interrupt a debate and check what its resumption recorded.

use serde_json::Value;
use std::collections::BTreeSet;

/// Panics unless `events` (every stored event of one debate, in order) is a whole transcript
/// of `rounds` rounds among `agents` agents.
pub fn assert_whole(events: &[Value], rounds: usize, agents: usize) {
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as i64).collect::<Vec<_>>(),
        "seqs contiguous"
    );
    let mut steps = BTreeSet::new();
    for event in events {
        let key = (
            event["type"].as_str().unwrap().to_string(),
            event["data"]["phase"].as_str().unwrap_or("").to_string(),
            event["round"].as_i64(),
            event["agent"].as_str().unwrap_or("").to_string(),
        );
        assert!(steps.insert(key.clone()), "step recorded twice: {key:?}");
    }
    let count = |kind: &str| events.iter().filter(|e| e["type"] == kind).count();
    assert_eq!(count("round_start"), rounds);
    assert_eq!(count("agent_message"), rounds * agents);
    assert_eq!(count("critique"), rounds * agents);
    assert_eq!(count("vote"), agents);
    assert_eq!(count("debate_end"), 1);
}
