//! `harmony timer`: ticks shouted to `GROUP/<rate>` by the elected timer.

use std::time::Duration;

use clap::Args;
use harmony::timer::{Timer, TimerConfig, TimerEvent};
use harmony::{Node, NodeError};

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
