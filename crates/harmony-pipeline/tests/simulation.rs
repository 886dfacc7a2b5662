//! Deterministic simulation of the pipeline's sans-IO cores (see `support/sim.rs`): three
//! clients, changing workers, one collector that restarts, a network that loses, duplicates and
//! reorders. Checked: every batch completes; every result reaches the collector's application
//! exactly once, correct (failures included); a client reports a batch complete only when the
//! collector's application has all of it.

mod support;

use proptest::prelude::*;
use support::sim::{Faults, World};

/// Three clients, two batches each (4 200 tasks in all), under the given faults.
fn run(seed: u64, faults: Faults, sizes: [usize; 2]) -> World {
    let mut world = World::new(seed, faults, 4);
    for i in 0..3u64 {
        let client = world.start_client();
        world.submit(200 + i * 150, client, sizes[0]);
        world.submit(2_000 + i * 700, client, sizes[1]);
    }
    world.run(600_000);
    world.check();
    world
}

#[test]
fn three_clients_thousands_of_tasks_under_every_fault() {
    let faults = Faults {
        loss: 20,
        dup: 20,
        latency: (1, 40),
        worker_crashes: (1..=12).map(|i| i * 900).collect(),
        collector_restarts: vec![2_500, 7_000],
    };
    let world = run(0x5EED, faults, [600, 800]);
    assert_eq!(world.crashes, 12);
    assert_eq!(world.restarts, 2);
    let resent: u64 = world.batches.values().map(|b| b.resent).sum();
    let last = world.batches.values().filter_map(|b| b.completed_at).max();
    eprintln!(
        "{} messages, {resent} tasks resent, last batch complete at {last:?} ms",
        world.messages
    );
    assert!(resent > 0, "crashes and loss must have caused resends");
    // Every batch's completion was reported to the collector's application exactly once.
    for (batch, n) in &world.completions {
        assert_eq!(*n, 1, "batch {batch} completed {n} times at the collector");
    }
}

#[test]
fn a_clean_network_resends_nothing() {
    let faults = Faults {
        loss: 0,
        dup: 0,
        latency: (1, 3),
        worker_crashes: vec![],
        collector_restarts: vec![],
    };
    let world = run(7, faults, [300, 300]);
    for (id, b) in &world.batches {
        assert_eq!(b.resent, 0, "batch {id} resent tasks with no fault");
    }
}

/// The same seed gives the same run.
#[test]
fn runs_are_deterministic() {
    let faults = Faults {
        loss: 30,
        dup: 30,
        latency: (1, 50),
        worker_crashes: vec![500, 1500],
        collector_restarts: vec![1_000],
    };
    let a = run(99, faults.clone(), [100, 100]);
    let b = run(99, faults, [100, 100]);
    assert_eq!(a.messages, b.messages);
    assert_eq!(a.now, b.now);
}

fn faults() -> impl Strategy<Value = Faults> {
    (
        0u64..100,
        0u64..100,
        1u64..80,
        prop::collection::vec(0u64..15_000, 0..8),
        prop::collection::vec(0u64..15_000, 0..3),
    )
        .prop_map(
            |(loss, dup, spread, worker_crashes, collector_restarts)| Faults {
                loss,
                dup,
                latency: (1, 1 + spread),
                worker_crashes,
                collector_restarts,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random fault schedules: loss and duplication up to 10 %, reordering, up to 8 worker
    /// crashes and 3 collector restarts at random times.
    #[test]
    fn exactly_once_and_complete_under_random_faults(seed in any::<u64>(), faults in faults()) {
        run(seed, faults, [120, 150]);
    }
}

/// Many seeds of the hostile schedule; run by hand (`--ignored`) after changing a core.
#[test]
#[ignore = "a sweep over 100 seeds; run with --ignored"]
fn sweep_over_seeds() {
    for seed in 0..100 {
        let faults = Faults {
            loss: 50,
            dup: 50,
            latency: (1, 60),
            worker_crashes: (1..=8).map(|i| i * 700 + seed % 500).collect(),
            collector_restarts: vec![1_500 + seed * 7 % 1000, 5_000],
        };
        run(seed, faults, [200, 300]);
    }
}
