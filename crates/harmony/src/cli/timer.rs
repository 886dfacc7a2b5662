//! `harmony timer`: ticks shouted to `GROUP/<rate>` by the elected timer; `--watch` prints
//! them as a subscriber keeps them.

use std::time::Duration;

use clap::Args;
use harmony::timer::{Tick, TickFilter, TickOrder, Timer, TimerConfig, TimerEvent};
use harmony::{Event, Node, NodeError};

use super::logs::{publisher, PublishArgs};
use super::NetArgs;

#[derive(Debug, Args)]
pub(crate) struct TimerArgs {
    /// This node's name (default: the first digits of its UUID).
    #[arg(short, long)]
    name: Option<String>,
    /// The group: ticks go to GROUP/<rate>; the timers elect their leader in GROUP.
    #[arg(short, long, default_value = harmony::timer::DEFAULT_GROUP)]
    group: String,
    /// Ticks per second, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    rates: Vec<u32>,
    /// Wait this long after starting before ticking (to hear the other timers), in ms.
    #[arg(long, default_value_t = 3000)]
    settle_ms: u64,
    /// A silent peer is gone after this long, in ms (a dead leader is replaced by then).
    #[arg(long, default_value_t = 30_000)]
    expired_ms: u64,
    /// Do not tick: subscribe to the rates and print each tick received, one JSON object a
    /// line, with how it follows the one before ("order": first, next, new-series, replay,
    /// gap, repeat; a subscriber keeps all but replays and repeats).
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    pub(crate) publish: PublishArgs,
    #[command(flatten)]
    net: NetArgs,
}

pub(crate) async fn run(args: TimerArgs) -> Result<(), NodeError> {
    let expired = Duration::from_millis(args.expired_ms.max(100));
    let mut builder = args
        .net
        .apply(Node::builder())?
        .expired_timeout(expired)
        .evasive_timeout(expired / 3);
    if let Some(name) = &args.name {
        builder = builder.name(name);
    }
    if args.watch {
        return watch(builder.start().await?, &args.group, &args.rates).await;
    }
    let config = TimerConfig {
        group: args.group.clone(),
        rates: args.rates.clone(),
        settle: Duration::from_millis(args.settle_ms),
        logs: publisher(),
    };
    let mut timer = Timer::start(builder, config)
        .await
        .map_err(|e| NodeError::Invalid(format!("timer: {e}")))?;
    println!(
        "timer {} {} group {} rates {:?}",
        timer.name(),
        harmony::peer::uuid_string(&timer.uuid()),
        args.group,
        args.rates
    );
    loop {
        tokio::select! {
            event = timer.next_event() => match event {
                Some(TimerEvent::Leading) => println!("LEADING {} ticks now", timer.name()),
                Some(TimerEvent::Following { leader: Some((uuid, name)) }) => {
                    println!("FOLLOWING {name} {} ticks", harmony::peer::uuid_string(&uuid));
                }
                Some(TimerEvent::Following { leader: None }) => println!("FOLLOWING no leader yet"),
                Some(_) => {}
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    timer.stop().await;
    Ok(())
}

async fn watch(mut node: Node, group: &str, rates: &[u32]) -> Result<(), NodeError> {
    for rate in rates {
        node.join(Tick::group(group, *rate)).await?;
    }
    println!(
        "watching {} {} group {group} rates {rates:?}",
        node.name(),
        harmony::peer::uuid_string(&node.uuid())
    );
    let mut filter = TickFilter::new();
    loop {
        let event = tokio::select! {
            event = node.next_event() => event,
            _ = tokio::signal::ctrl_c() => break,
        };
        let Some(event) = event else { break };
        let Event::Shout {
            name,
            group: to,
            content,
            ..
        } = event
        else {
            continue;
        };
        if to.rsplit_once('/').map(|(base, _)| base) != Some(group) {
            continue;
        }
        let Some(tick) = content.first().and_then(|c| Tick::decode(&to, c).ok()) else {
            continue;
        };
        let (order, missed) = match filter.order(&tick) {
            TickOrder::First => ("first", 0),
            TickOrder::Next => ("next", 0),
            TickOrder::NewSeries => ("new-series", 0),
            TickOrder::Replay => ("replay", 0),
            TickOrder::Gap { missed } => ("gap", missed),
            _ => ("repeat", 0),
        };
        println!(
            "{}",
            serde_json::json!({
                "kind": "TICK",
                "rate": tick.rate,
                "number": tick.number,
                "stamp_us": tick.stamp_us,
                "series": tick.series,
                "from": &*name,
                "order": order,
                "missed": missed,
            })
        );
    }
    node.stop().await
}
