//! The timer service over real nodes on loopback: three timers elect one ticking leader; when
//! it leaves, another takes over and a subscriber sees the numbers carry on, no gap, no repeat.

use std::time::Duration;

use harmony_node::{Event, Node, NodeBuilder};
use harmony_services::timer::{Tick, TickFilter, Timer, TimerConfig, TimerEvent};
use tokio::time::timeout;

fn builder(port: u16, name: &str) -> NodeBuilder {
    Node::builder()
        .name(name)
        .loopback()
        .port(port)
        .interval(Duration::from_millis(50))
        .evasive_timeout(Duration::from_millis(300))
        .expired_timeout(Duration::from_millis(900))
}

async fn next_tick(node: &mut Node) -> Tick {
    loop {
        match node.next_event().await.expect("node running") {
            Event::Shout { group, content, .. } if &*group == "TIME/10" => {
                return Tick::decode(&group, &content[0]).expect("a tick");
            }
            _ => {}
        }
    }
}

/// Waits until one of the timers reports that it leads; returns its index.
async fn leader_of(timers: &mut [Timer]) -> usize {
    loop {
        for (i, t) in timers.iter_mut().enumerate() {
            if let Ok(Some(ev)) = timeout(Duration::from_millis(20), t.next_event()).await {
                if ev == TimerEvent::Leading {
                    return i;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_ticks_and_a_successor_carries_the_numbers_on() {
    let port = harmony_testkit::free_udp_port();
    let config = TimerConfig {
        rates: vec![10],
        settle: Duration::from_millis(400),
        ..TimerConfig::default()
    };
    let mut timers = Vec::new();
    for name in ["t1", "t2", "t3"] {
        timers.push(
            Timer::start(builder(port, name), config.clone())
                .await
                .unwrap(),
        );
    }
    let mut sub = builder(port, "watcher").start().await.unwrap();
    sub.join("TIME/10").await.unwrap();

    let first = timeout(Duration::from_secs(10), leader_of(&mut timers))
        .await
        .expect("a leader");
    let mut ticks = Vec::new();
    timeout(Duration::from_secs(10), async {
        while ticks.len() < 10 {
            ticks.push(next_tick(&mut sub).await);
        }
    })
    .await
    .expect("ticks");

    let mut old = timers.remove(first);
    old.stop().await;
    let second = timeout(Duration::from_secs(10), leader_of(&mut timers))
        .await
        .expect("a successor");
    let before = ticks.len();
    timeout(Duration::from_secs(10), async {
        while ticks.len() < before + 10 {
            ticks.push(next_tick(&mut sub).await);
        }
    })
    .await
    .expect("ticks after the failover");

    // A successor may send the last tick again, unchanged: the subscriber drops it.
    let mut filter = TickFilter::new();
    let numbers: Vec<u64> = ticks
        .iter()
        .filter(|t| filter.order(t).keep())
        .map(|t| t.number)
        .collect();
    let start = numbers[0];
    assert_eq!(
        numbers,
        (start..start + numbers.len() as u64).collect::<Vec<_>>(),
        "no gap, no repeat"
    );
    for w in ticks.windows(2) {
        assert!(w[1].stamp_us >= w[0].stamp_us);
        assert_eq!(w[0].stamp_us % 100_000, 0, "on the 100 ms slots");
    }
    // Only the successor ticks now.
    for (i, t) in timers.iter_mut().enumerate() {
        while let Ok(Some(ev)) = timeout(Duration::from_millis(10), t.next_event()).await {
            if let TimerEvent::Sent { .. } = ev {
                assert_eq!(i, second, "a follower ticked");
            }
        }
    }
    for mut t in timers {
        t.stop().await;
    }
    sub.stop().await.unwrap();
}
