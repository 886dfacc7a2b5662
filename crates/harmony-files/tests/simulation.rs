//! Deterministic simulation of the sans-IO server and clients under fixed seeds: random files,
//! chunk sizes and credit windows, changes and deletes while clients sync, a late joiner, and a
//! client that crashes mid-file and resumes from what it has. Every client ends with exactly
//! the published files. And clients that subscribe while the server is still hashing what it
//! found: every file arrives, the cache is honoured, and synced means what it says.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use bytes::Bytes;
use harmony_files::{ext, path, Client, ClientConfig, FileOp, Manifest, Server, ServerConfig};
use support::{pump, MemDest, MemSource};

/// xorshift64*: small, seedable, good enough to pick test cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_file(rng: &mut Rng) -> Bytes {
    let len = match rng.below(4) {
        0 => 0,
        1 => rng.below(100),
        _ => rng.below(60_000),
    };
    let seed = rng.next();
    Bytes::from(
        (0..len)
            .map(|i| (seed.wrapping_add(i * 31) >> 3) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// Every other version with its manifest (as the driver publishes), the rest without (the
/// transfer hashes): both paths meet random credit windows, changes and resumes.
fn publish(server: &mut Server, source: &mut MemSource, vpath: String, data: Bytes, version: u64) {
    if (vpath.len() as u64 + version) % 2 == 0 {
        let manifest = Manifest::of(&data, server.config().chunk_size);
        server.file_changed_with_manifest(&vpath, data.len() as u64, version, manifest);
    } else {
        server.file_changed(&vpath, data.len() as u64, version);
    }
    source.0.insert(vpath, data);
}

/// name -> (size, digest) of what every client must end with.
fn expected(source: &MemSource) -> BTreeMap<String, (usize, String)> {
    expected_under(source, "/")
}

/// The same for a client subscribed to `sub`: what is under it, named relative to it.
fn expected_under(source: &MemSource, sub: &str) -> BTreeMap<String, (usize, String)> {
    source
        .0
        .iter()
        .filter_map(|(k, v)| Some((name_under(sub, k)?, (v.len(), ext::digest_of(v)))))
        .collect()
}

/// The name of `vpath` in the destination of a client subscribed to `sub`.
fn name_under(sub: &str, vpath: &str) -> Option<String> {
    let subs = [sub.to_string()];
    path::strip_subscription(vpath, &subs)
        .ok()
        .map(str::to_string)
}

fn summary(dest: &MemDest) -> BTreeMap<String, (usize, String)> {
    dest.files
        .iter()
        .map(|(k, v)| (k.clone(), (v.len(), ext::digest_of(v))))
        .collect()
}

fn client(
    rng: &mut Rng,
    now: Instant,
    have: &MemDest,
    partial: Option<harmony_files::ResumePoint>,
) -> Client {
    let config = ClientConfig {
        credit_window: [997, 4096, 100_000, 8 << 20][rng.below(4) as usize],
        ..ClientConfig::default()
    };
    let cache = have
        .files
        .iter()
        .map(|(name, data)| (name.clone(), ext::digest_of(data)))
        .collect();
    Client::new(config, cache, partial.into_iter().collect(), now)
}

fn run(seed: u64) {
    let now = Instant::now();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let config = ServerConfig {
        chunk_size: [1000, 65_536, 1_000_000][rng.below(3) as usize],
        ..ServerConfig::default()
    };
    let mut server = Server::new(config);
    let mut source = MemSource::default();
    let mut version = 0;
    for i in 0..1 + rng.below(12) {
        version += 1;
        let name = format!("/d{}/f{i}", rng.below(3));
        publish(
            &mut server,
            &mut source,
            name,
            random_file(&mut rng),
            version,
        );
    }
    let a = Bytes::from_static(b"A");
    let mut clients = vec![(
        a.clone(),
        client(&mut rng, now, &MemDest::default(), None),
        MemDest::default(),
    )];
    // Let A get part of the way, then change things under it.
    for (_, c, d) in clients.iter_mut() {
        while let Some(msg) = c.poll_transmit() {
            server.handle_message(&a, &msg.to_bytes().unwrap(), now);
        }
        d.apply(c);
    }
    for _ in 0..rng.below(40) {
        if let Some((to, msg)) = server.poll_transmit(&mut source) {
            assert_eq!(to, a);
            let (_, c, d) = &mut clients[0];
            c.handle_message(&msg.to_bytes().unwrap(), now);
            d.apply(c);
            while let Some(m) = c.poll_transmit() {
                server.handle_message(&a, &m.to_bytes().unwrap(), now);
            }
        }
    }
    for _ in 0..rng.below(5) {
        version += 1;
        let names: Vec<String> = source.0.keys().cloned().collect();
        match rng.below(3) {
            0 if !names.is_empty() => {
                let victim = &names[rng.below(names.len() as u64) as usize];
                server.file_removed(victim);
                source.0.remove(victim);
            }
            1 if !names.is_empty() => {
                let name = names[rng.below(names.len() as u64) as usize].clone();
                publish(
                    &mut server,
                    &mut source,
                    name,
                    random_file(&mut rng),
                    version,
                );
            }
            _ => publish(
                &mut server,
                &mut source,
                format!("/new{version}"),
                random_file(&mut rng),
                version,
            ),
        }
    }
    // A crashes mid-file: a new connection resumes from what it has.
    let (_, mut old, dest) = clients.pop().unwrap();
    let partial = old.take_partial();
    let resumed_from = partial.as_ref().map(|p| (p.name.clone(), p.offset));
    server.peer_gone(&a);
    let a2 = Bytes::from_static(b"A2");
    let b = Bytes::from_static(b"B");
    clients.push((a2, client(&mut rng, now, &dest, partial), dest));
    clients.push((
        b,
        client(&mut rng, now, &MemDest::default(), None),
        MemDest::default(),
    ));
    pump(&mut server, &mut source, &mut clients[..], now, 1_000_000);
    for (id, c, d) in &clients {
        assert_eq!(c.error(), None, "seed {seed} client {id:?}");
        assert_eq!(summary(d), expected(&source), "seed {seed} client {id:?}");
    }
    if let Some((name, offset)) =
        resumed_from.filter(|(n, o)| *o > 0 && source.0.contains_key(&format!("/{n}")))
    {
        // The server resumed from the offset unless the file changed since.
        let opened = clients[0].2.ops.iter().find_map(|op| match op {
            FileOp::Open {
                name: n, offset, ..
            } if *n == name => Some(*offset),
            _ => None,
        });
        assert!(
            opened == Some(offset) || opened == Some(0),
            "seed {seed}: {opened:?}"
        );
    }
}

fn seeds() -> std::ops::Range<u64> {
    std::env::var("HARMONY_SIM_SEEDS").map_or(0..20, |s| {
        let n: u64 = s.parse().expect("HARMONY_SIM_SEEDS");
        n..n + 1
    })
}

#[test]
fn seeded_simulation() {
    for seed in seeds() {
        run(seed);
    }
}

/// What became of a file found by a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Pending,
    Published,
    /// Given up (changed while hashed, unreadable) or removed before it was published.
    Dropped,
}

/// What a client of [`run_while_hashing`] must see.
struct Expect {
    /// What it subscribed to.
    sub: String,
    /// Files under `sub` published or pending when it subscribed: all of them settled once it
    /// is synced (and nothing else: files pending elsewhere do not hold it).
    waits_for: Vec<String>,
    /// Cached with the digest the server will publish: never sent.
    same: BTreeSet<String>,
}

/// Moves client messages and at most `n` server messages.
fn pump_some(
    server: &mut Server,
    source: &mut MemSource,
    clients: &mut [(Bytes, Client, MemDest)],
    n: u64,
) {
    let now = Instant::now();
    for (id, client, _) in clients.iter_mut() {
        while let Some(msg) = client.poll_transmit() {
            server.handle_message(id, &msg.to_bytes().unwrap(), now);
        }
    }
    for _ in 0..n {
        let Some((to, msg)) = server.poll_transmit(source) else {
            return;
        };
        if let Some((_, client, dest)) = clients.iter_mut().find(|(id, ..)| *id == to) {
            client.handle_message(&msg.to_bytes().unwrap(), now);
            dest.apply(client);
        }
    }
}

/// A scan found files; their manifests are made one by one (in the order found, as the
/// manifest thread does) while clients subscribe with random caches, transfers are under way,
/// later scans find more files, and some files are given up or removed before they are
/// published.
fn run_while_hashing(seed: u64) {
    let now = Instant::now();
    let mut rng = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
    let mut server = Server::new(ServerConfig {
        chunk_size: [1000, 65_536][rng.below(2) as usize],
        ..ServerConfig::default()
    });
    // On disk, and what became of it.
    let mut disk: BTreeMap<String, (Bytes, Fate)> = BTreeMap::new();
    let mut source = MemSource::default();
    let mut queue = std::collections::VecDeque::new();
    let found = 1 + rng.below(15);
    let ready = rng.below(found + 1);
    for i in 0..found {
        let name = format!("/d{}/f{i}", rng.below(3));
        let data = random_file(&mut rng);
        if i < ready {
            publish(&mut server, &mut source, name.clone(), data.clone(), 1);
            disk.insert(name, (data, Fate::Published));
        } else {
            server.file_pending(&name);
            queue.push_back(name.clone());
            disk.insert(name, (data, Fate::Pending));
        }
    }
    let mut clients: Vec<(Bytes, Client, MemDest)> = Vec::new();
    let mut expect: Vec<Expect> = Vec::new();
    let mut later = 0;
    for step in 0..200 {
        if queue.is_empty() && step > 20 {
            break;
        }
        match rng.below(5) {
            0 if clients.len() < 4 => {
                let extensions = rng.below(4) != 0;
                // The whole tree, or one of its directories.
                let sub = match rng.below(5) {
                    k @ 0..=2 => format!("/d{k}"),
                    _ => "/".to_string(),
                };
                let (mut dest, mut same) = (MemDest::default(), BTreeSet::new());
                if extensions {
                    for (vpath, (data, fate)) in &disk {
                        let Some(name) = name_under(&sub, vpath) else {
                            continue;
                        };
                        match (rng.below(4), fate) {
                            (0, Fate::Pending | Fate::Published) => {
                                same.insert(name.clone());
                                dest.files.insert(name, data.to_vec());
                            }
                            (1, _) => {
                                dest.files.insert(name, b"stale".to_vec());
                            }
                            _ => {}
                        }
                    }
                    dest.files.insert("ghost".into(), b"ghost".to_vec());
                }
                let have = dest
                    .files
                    .iter()
                    .map(|(n, d)| (n.clone(), ext::digest_of(d)))
                    .collect();
                let config = ClientConfig {
                    subscriptions: vec![sub.clone()],
                    credit_window: [997, 4096, 100_000][rng.below(3) as usize],
                    extensions,
                    ..ClientConfig::default()
                };
                let waits_for = disk
                    .iter()
                    .filter(|(v, (_, fate))| *fate != Fate::Dropped && path::under(v, &sub))
                    .map(|(v, _)| v.clone())
                    .collect();
                let id = Bytes::from(format!("C{step}"));
                clients.push((id, Client::new(config, have, vec![], now), dest));
                expect.push(Expect {
                    sub,
                    waits_for,
                    same,
                });
                // Subscribed before anything else happens to the files.
                pump(&mut server, &mut source, &mut clients, now, 1_000_000);
                assert!(clients.iter().all(|(_, c, _)| c.is_subscribed()));
                check_not_held(seed, &disk, &clients, &expect);
            }
            1 | 2 => {
                let Some(vpath) = queue.pop_front() else {
                    continue;
                };
                let entry = disk.get_mut(&vpath).unwrap();
                match rng.below(6) {
                    0 => {
                        server.file_skipped(&vpath);
                        entry.1 = Fate::Dropped;
                    }
                    1 => {
                        server.file_removed(&vpath);
                        entry.1 = Fate::Dropped;
                    }
                    _ => {
                        let data = entry.0.clone();
                        entry.1 = Fate::Published;
                        publish(&mut server, &mut source, vpath, data, 1);
                    }
                }
                if rng.below(3) == 0 {
                    pump(&mut server, &mut source, &mut clients, now, 1_000_000);
                    check_not_held(seed, &disk, &clients, &expect);
                }
            }
            3 if later < 3 => {
                later += 1;
                let vpath = format!("/later{later}");
                server.file_pending(&vpath);
                queue.push_back(vpath.clone());
                disk.insert(vpath, (random_file(&mut rng), Fate::Pending));
            }
            _ => pump_some(&mut server, &mut source, &mut clients, rng.below(30)),
        }
        check_synced(seed, &disk, &clients, &expect);
    }
    pump(&mut server, &mut source, &mut clients, now, 1_000_000);
    check_synced(seed, &disk, &clients, &expect);
    for ((id, client, dest), expect) in clients.iter().zip(&expect) {
        assert_eq!(client.error(), None, "seed {seed} {id:?}");
        if client.is_harmony_server() {
            assert!(client.is_synced(), "seed {seed} {id:?}");
        }
        let want = expected_under(&source, &expect.sub);
        assert_eq!(summary(dest), want, "seed {seed} {id:?}");
        for op in &dest.ops {
            match op {
                FileOp::Open { name, .. } => {
                    let again = expect.same.contains(name);
                    assert!(!again, "seed {seed} {id:?}: {name} sent again");
                }
                FileOp::Delete { name } => {
                    // Only what the server never published.
                    let dropped = disk
                        .get(&path::join(&expect.sub, name))
                        .is_none_or(|(_, fate)| *fate == Fate::Dropped);
                    assert!(dropped, "seed {seed} {id:?}: {name} deleted");
                }
                _ => {}
            }
        }
    }
}

/// Once everything has moved, a client none of whose files is pending is in sync, whatever is
/// pending elsewhere.
fn check_not_held(
    seed: u64,
    disk: &BTreeMap<String, (Bytes, Fate)>,
    clients: &[(Bytes, Client, MemDest)],
    expect: &[Expect],
) {
    for ((id, client, _), expect) in clients.iter().zip(expect) {
        let waits = expect.waits_for.iter().any(|v| disk[v].1 == Fate::Pending);
        if client.is_harmony_server() && !waits {
            let sub = &expect.sub;
            assert!(client.is_synced(), "seed {seed} {id:?} under {sub}");
        }
    }
}

/// A synced client has every file it waited for as published, and none of those dropped.
fn check_synced(
    seed: u64,
    disk: &BTreeMap<String, (Bytes, Fate)>,
    clients: &[(Bytes, Client, MemDest)],
    expect: &[Expect],
) {
    for ((id, client, dest), expect) in clients.iter().zip(expect) {
        if !client.is_synced() {
            continue;
        }
        for vpath in &expect.waits_for {
            let (data, fate) = &disk[vpath];
            let have = name_under(&expect.sub, vpath).and_then(|name| dest.files.get(&name));
            match fate {
                Fate::Pending => panic!("seed {seed} {id:?}: synced while {vpath} pending"),
                Fate::Published => {
                    let same = have.map(Vec::as_slice) == Some(&data[..]);
                    assert!(same, "seed {seed} {id:?}: {vpath}");
                }
                Fate::Dropped => assert!(have.is_none(), "seed {seed} {id:?}: {vpath}"),
            }
        }
    }
}

#[test]
fn seeded_simulation_while_hashing() {
    for seed in seeds() {
        run_while_hashing(seed);
    }
}

#[test]
fn a_crashed_client_resumes_from_its_offset() {
    let now = Instant::now();
    let mut server = Server::new(ServerConfig {
        chunk_size: 1000,
        ..ServerConfig::default()
    });
    let mut source = MemSource::default();
    let data = Bytes::from((0..50_000u32).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
    publish(&mut server, &mut source, "/big".into(), data.clone(), 1);
    let config = ClientConfig {
        credit_window: 10_000,
        ..ClientConfig::default()
    };
    let mut first = Client::new(config.clone(), vec![], vec![], now);
    let mut dest = MemDest::default();
    let a = Bytes::from_static(b"A");
    // Handshake and the first window (10 000 bytes) only.
    for _ in 0..3 {
        while let Some(m) = first.poll_transmit() {
            server.handle_message(&a, &m.to_bytes().unwrap(), now);
        }
        while let Some((_, m)) = server.poll_transmit(&mut source) {
            first.handle_message(&m.to_bytes().unwrap(), now);
        }
        dest.apply(&mut first);
        if dest
            .partial
            .as_ref()
            .is_some_and(|(_, d)| d.len() >= 10_000)
        {
            break;
        }
    }
    let partial = first.take_partial().expect("mid-file");
    assert!(partial.offset >= 10_000 && partial.offset < 50_000);
    let offset = partial.offset;
    // A connection that fails before the server resumes the file keeps it for the next one.
    let mut failed = Client::new(config.clone(), vec![], vec![partial], now);
    let mut kept = failed.take_resume_points();
    assert_eq!(kept.len(), 1);
    let partial = kept.pop().unwrap();
    assert_eq!((partial.name.as_str(), partial.offset), ("big", offset));
    server.peer_gone(&a);
    let second = Client::new(config, vec![], vec![partial], now);
    let mut clients = vec![(Bytes::from_static(b"A2"), second, dest)];
    pump(&mut server, &mut source, &mut clients, now, 100_000);
    let dest = &clients[0].2;
    assert_eq!(dest.files["big"], data.to_vec());
    assert!(dest.ops.contains(&FileOp::Open {
        name: "big".into(),
        offset,
        size: Some(50_000)
    }));
    // Only what was missing was sent again.
    let resent: usize = dest
        .ops
        .iter()
        .skip_while(|op| !matches!(op, FileOp::Open { offset: o, .. } if *o == offset))
        .map(|op| match op {
            FileOp::Write { data, .. } => data.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(resent as u64, 50_000 - offset);
}
