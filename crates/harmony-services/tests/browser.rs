//! The live page in a real browser: Debian's chromium, headless, driven over the DevTools
//! protocol (CDP) on a WebSocket. The page loads, a peer appears, a shout typed in the page
//! reaches a Rust node, and that node's shout appears in the page. Screenshots go to
//! `target/screenshots/` for review; they are not the assertion.
//!
//! Needs `chromium` (`apt-get install -y chromium`; `.ci/run` installs it), or
//! `HARMONY_CHROMIUM=/path/to/chrome`.

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use harmony_node::Event;
use harmony_services::log::{publisher, LogLevel};
use serde_json::{json, Value};
use support::*;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tracing_subscriber::layer::SubscriberExt;

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("HARMONY_CHROMIUM") {
        return p.into();
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "the browser test needs Debian's chromium: `apt-get install -y chromium` \
         (or set HARMONY_CHROMIUM to a Chrome/Chromium binary)"
    );
}

/// A headless chromium, killed and reaped when dropped.
struct Browser {
    child: Child,
    profile: PathBuf,
    ws_url: String,
}

impl Browser {
    fn launch() -> Self {
        let profile = std::env::temp_dir().join(format!("harmony-chromium-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let mut child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1400,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let ws_url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium prints its DevTools endpoint");
        Self {
            child,
            profile,
            ws_url,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A CDP connection with one page session.
struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
    session: Option<String>,
}

impl Cdp {
    async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("CDP connect");
        Self {
            ws,
            next_id: 0,
            session: None,
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = s.clone().into();
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .expect("CDP send");
        timeout(Duration::from_secs(30), async {
            loop {
                let m = self.ws.next().await.expect("CDP open").expect("CDP ok");
                let Message::Text(t) = m else { continue };
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["id"] == id {
                    assert!(v["error"].is_null(), "{method}: {}", v["error"]);
                    return v["result"].clone();
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("CDP {method} answered in time"))
    }

    /// Evaluates `expr` in the page (awaiting a promise) and returns its value.
    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        assert!(
            r["exceptionDetails"].is_null(),
            "{expr}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Waits (inside the page, on DOM changes) until `cond` is true.
    async fn wait_for(&mut self, cond: &str) {
        let expr = format!(
            "new Promise((resolve, reject) => {{
                const check = () => {{ if ({cond}) {{ obs.disconnect(); resolve(true); }} }};
                const obs = new MutationObserver(check);
                obs.observe(document, {{subtree: true, childList: true, characterData: true}});
                setTimeout(() => {{ obs.disconnect(); reject(new Error('timed out: ' + {cond:?})); }}, 20000);
                check();
            }})"
        );
        assert_eq!(self.eval(&expr).await, Value::Bool(true));
    }

    async fn screenshot(&mut self, name: &str) -> PathBuf {
        let r = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        let dir = harmony_testkit::workspace_root().join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

#[tokio::test]
async fn the_page_shows_peers_and_chats_both_ways_in_chromium() {
    let browser = Browser::launch();

    let port = harmony_testkit::free_udp_port();
    let bridge = bridge_with_collector(port).await;
    let addr = bridge.local_addr();

    // bob: a Rust node in CHAT that also publishes its logs to the bridge's collector.
    let (layer, logs) = publisher(1024, LogLevel::Info);
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let mut bob = builder(port, "bob").start().await.unwrap();
    logs.start(bob.name(), bob.endpoint()).await.unwrap();
    bob.join("CHAT").await.unwrap();

    let mut cdp = Cdp::connect(&browser.ws_url).await;
    let target = cdp
        .call("Target.createTarget", json!({"url": "about:blank"}))
        .await;
    let session = cdp
        .call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        )
        .await;
    cdp.session = Some(session["sessionId"].as_str().unwrap().to_owned());
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await;
    cdp.call(
        "Page.navigate",
        json!({"url": format!("http://{addr}/?group=CHAT")}),
    )
    .await;

    // A peer appears (bob, in CHAT), and the page is live.
    cdp.wait_for("document.querySelector('#dot.on') !== null")
        .await;
    timeout(WAIT, async {
        loop {
            let event = bob.next_event().await.unwrap();
            logs.handle_event(&event).await;
            if matches!(&event, Event::Join { name, group, .. } if &**name == "bridge" && &**group == "CHAT") {
                break;
            }
        }
    })
    .await
    .expect("the page made the bridge join CHAT");
    cdp.wait_for(r#"[...document.querySelectorAll('#peers .peer')].some(p => p.dataset.name === 'bob' && p.textContent.includes('CHAT'))"#)
        .await;
    tracing::info!(peer = "bridge", "bob sees the bridge");
    tracing::warn!("a warning for the log tail");

    // The page shouts; bob hears it.
    cdp.eval(
        "document.getElementById('chat-input').value = 'hello from the browser';
         document.getElementById('send').click(); true",
    )
    .await;
    let heard = timeout(WAIT, async {
        loop {
            match bob.next_event().await.unwrap() {
                Event::Shout {
                    name,
                    group,
                    content,
                    ..
                } if &*group == "CHAT" => {
                    return (name, String::from_utf8_lossy(&content[0]).into_owned())
                }
                event => logs.handle_event(&event).await,
            }
        }
    })
    .await
    .expect("bob hears the page");
    assert_eq!(
        heard,
        (
            std::sync::Arc::from("bridge"),
            "hello from the browser".to_owned()
        )
    );

    // bob shouts; the page shows it.
    bob.shout("CHAT", "hello, page").await.unwrap();
    cdp.wait_for(r#"[...document.querySelectorAll('#messages .msg')].some(m => m.dataset.from === 'bob' && m.textContent.includes('hello, page'))"#)
        .await;
    cdp.wait_for(r#"[...document.querySelectorAll('#logs .log')].some(l => l.textContent.includes('a warning for the log tail'))"#)
        .await;
    // Let the rate graphs draw one second's worth.
    cdp.wait_for("document.querySelector('#graphs canvas') !== null")
        .await;
    let shot = cdp.screenshot("bridge-page.png").await;
    eprintln!("screenshot: {}", shot.display());

    logs.stop().await;
    bob.stop().await.unwrap();
    bridge.stop().await;
    drop(browser);
}
