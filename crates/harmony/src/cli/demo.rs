//! `harmony demo`: a few nodes on this machine find each other, chat and leave, narrated.

use std::time::Duration;

use clap::Args;
use harmony::{Event, Node, NodeError};
use tokio::time::Instant;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How many nodes to start (2-26).
    #[arg(short, long, default_value_t = 4)]
    nodes: usize,
    /// UDP discovery port on loopback (default: a free one, so demos never meet each other).
    #[arg(long)]
    port: Option<u16>,
}

const NAMES: [&str; 26] = [
    "ada", "brook", "cyd", "dee", "eli", "fay", "gus", "hal", "ivy", "jo", "kit", "lou", "max",
    "ned", "ola", "pat", "quin", "ray", "sam", "tom", "uma", "val", "wes", "xia", "yan", "zed",
];
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

struct Demo {
    nodes: Vec<Node>,
    started: Instant,
}

impl Demo {
    fn say(&self, text: impl AsRef<str>) {
        println!(
            "[{:>6.1} ms] {}",
            self.started.elapsed().as_secs_f64() * 1e3,
            text.as_ref()
        );
    }

    /// The next event of any node, with the node's index.
    async fn next(&mut self) -> Option<(usize, Event)> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        tokio::time::timeout_at(deadline, harmony::next_event_any(&mut self.nodes))
            .await
            .ok()
            .flatten()
    }

    /// Reads events until `want` of them matched `pred`, narrating each with `tell`.
    async fn expect(
        &mut self,
        want: usize,
        what: &str,
        mut pred: impl FnMut(usize, &Event) -> bool,
        mut tell: impl FnMut(&Self, usize, &Event),
    ) -> Result<(), NodeError> {
        let mut seen = 0;
        while seen < want {
            let Some((i, ev)) = self.next().await else {
                return Err(NodeError::Invalid(format!(
                    "demo stalled waiting for {what} ({seen}/{want} seen)"
                )));
            };
            if pred(i, &ev) {
                seen += 1;
                tell(self, i, &ev);
            }
        }
        Ok(())
    }
}

pub(super) fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(45670)
}

pub(crate) async fn run(args: DemoArgs) -> Result<(), NodeError> {
    let n = args.nodes.clamp(2, NAMES.len());
    let port = args.port.unwrap_or_else(free_udp_port);
    let mut demo = Demo {
        nodes: Vec::new(),
        started: Instant::now(),
    };
    demo.say(format!(
        "starting {n} nodes on loopback: each binds a ZMTP inbox on 127.0.0.1 and sends a UDP beacon to 127.255.255.255:{port} every 200 ms"
    ));
    for name in &NAMES[..n] {
        let node = Node::builder()
            .name(*name)
            .header("X-DEMO", "1")
            .loopback()
            .port(port)
            .interval(Duration::from_millis(200))
            .start()
            .await?;
        demo.say(format!(
            "{} is up: uuid {}, inbox {}",
            name,
            harmony::peer::uuid_string(&node.uuid()),
            node.endpoint()
        ));
        demo.nodes.push(node);
    }

    demo.say("discovery: each node hears the others' beacons, connects a DEALER to their inbox and says HELLO");
    let pairs = n * (n - 1);
    demo.expect(
        pairs,
        "every node to see every other",
        |_, e| matches!(e, Event::Enter { .. }),
        |d, i, e| {
            d.say(format!(
                "  {} sees {} enter ({})",
                NAMES[i],
                e.name(),
                enter_endpoint(e)
            ));
        },
    )
    .await?;
    demo.say(format!(
        "all {n} nodes see each other ({pairs} ENTER events)"
    ));

    for node in &demo.nodes {
        node.join("CHAT").await?;
    }
    demo.expect(
        pairs,
        "every JOIN",
        |_, e| matches!(e, Event::Join { .. }),
        |_, _, _| {},
    )
    .await?;
    demo.say(format!(
        "everyone joined CHAT; each node saw the other {} join",
        n - 1
    ));

    demo.nodes[0]
        .shout("CHAT", "hello everyone, this is ada")
        .await?;
    demo.expect(
        n - 1,
        "the shout",
        |_, e| matches!(e, Event::Shout { .. }),
        |d, i, e| {
            if let Event::Shout { content, group, .. } = e {
                d.say(format!(
                    "  {} got a SHOUT from {} in {}: {:?}",
                    NAMES[i],
                    e.name(),
                    group,
                    String::from_utf8_lossy(&content[0])
                ));
            }
        },
    )
    .await?;

    let ada = demo.nodes[0].uuid();
    demo.nodes[1].whisper(ada, "psst ada, brook here").await?;
    demo.expect(
        1,
        "the whisper",
        |i, e| i == 0 && matches!(e, Event::Whisper { .. }),
        |d, i, e| {
            if let Event::Whisper { content, .. } = e {
                d.say(format!(
                    "  {} got a WHISPER from {}: {:?}",
                    NAMES[i],
                    e.name(),
                    String::from_utf8_lossy(&content[0])
                ));
            }
        },
    )
    .await?;

    demo.nodes[2].leave("CHAT").await?;
    demo.expect(
        n - 1,
        "the LEAVE",
        |_, e| matches!(e, Event::Leave { .. }),
        |d, i, e| {
            d.say(format!("  {} sees {} leave CHAT", NAMES[i], e.name()));
        },
    )
    .await?;

    let mut last = demo.nodes.pop().expect("at least two nodes");
    demo.say(format!(
        "{} stops: its last beacon has port 0, which means goodbye",
        last.name()
    ));
    last.stop().await?;
    demo.expect(
        n - 1,
        "the EXIT",
        |_, e| matches!(e, Event::Exit { .. }),
        |d, i, e| {
            d.say(format!("  {} sees {} exit", NAMES[i], e.name()));
        },
    )
    .await?;

    for node in &mut demo.nodes {
        node.stop().await?;
    }
    demo.say("all nodes stopped. Try `harmony chat --name you --group CHAT --interface loopback` in two terminals.");
    Ok(())
}

fn enter_endpoint(e: &Event) -> &str {
    match e {
        Event::Enter { endpoint, .. } => endpoint,
        _ => "",
    }
}
