//! Codec throughput of harmony-wire, one core, no I/O: a ZMTP frame stream, and ZRE WHISPER and
//! SHOUT messages carried in it, each at 64 B and 64 KiB of content.
//!
//! Each iteration moves a batch of messages: encode appends them to one reused buffer (as a
//! batched socket writer does); decode copies the stream into a read buffer in 64 KiB reads and
//! cuts frames from it (as a socket reader does; frame bodies are slices, not copies).

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use harmony_benches::{batch, codec, content, encode_stream, read_frames, SIZES};
use harmony_wire::zmtp::Frame;
use harmony_wire::zre::{ZreBody, ZreMessage};
use tokio_util::codec::Encoder;

fn throughput(messages: usize, size: usize) -> Throughput {
    Throughput::ElementsAndBytes {
        elements: messages as u64,
        bytes: (messages * size) as u64,
    }
}

/// Plain ZMTP messages of one frame each.
fn zmtp_frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("wire/zmtp_frame");
    for (label, size) in SIZES {
        let n = batch(size);
        let frames: Vec<Frame> = (0..n)
            .map(|_| Frame::message(content(size), false))
            .collect();
        let stream = encode_stream(&frames).freeze();
        group.throughput(throughput(n, size));

        group.bench_function(format!("encode/{label}"), |b| {
            let mut codec = codec();
            let mut out = BytesMut::with_capacity(stream.len());
            b.iter(|| {
                out.clear();
                for frame in &frames {
                    codec.encode(frame, &mut out).expect("encode");
                }
                black_box(out.len())
            });
        });

        group.bench_function(format!("decode/{label}"), |b| {
            let mut codec = codec();
            b.iter(|| {
                let mut count = 0;
                read_frames(&mut codec, &stream, |frame| {
                    black_box(&frame);
                    count += 1;
                });
                assert_eq!(count, n);
            });
        });
    }
    group.finish();
}

/// ZRE messages the way a peer sends them: the ZRE frame with MORE, then the content frame.
fn zre(c: &mut Criterion) {
    for kind in ["whisper", "shout"] {
        let mut group = c.benchmark_group(format!("wire/zre_{kind}"));
        for (label, size) in SIZES {
            let n = batch(size);
            let messages: Vec<ZreMessage> = (0..n)
                .map(|i| {
                    let content = vec![content(size)];
                    let body = if kind == "whisper" {
                        ZreBody::Whisper { content }
                    } else {
                        ZreBody::Shout {
                            group: "GLOBAL".into(),
                            content,
                        }
                    };
                    ZreMessage::new(i as u16, body)
                })
                .collect();
            let mut stream = BytesMut::new();
            for msg in &messages {
                encode_message(msg, &mut stream);
            }
            let stream = stream.freeze();
            group.throughput(throughput(n, size));

            group.bench_function(format!("encode/{label}"), |b| {
                let mut out = BytesMut::with_capacity(stream.len());
                b.iter(|| {
                    out.clear();
                    for msg in &messages {
                        encode_message(msg, &mut out);
                    }
                    black_box(out.len())
                });
            });

            group.bench_function(format!("decode/{label}"), |b| {
                let mut codec = codec();
                let mut parts: Vec<Bytes> = Vec::with_capacity(4);
                b.iter(|| {
                    let mut count = 0;
                    read_frames(&mut codec, &stream, |frame| {
                        let more = frame.more;
                        parts.push(frame.body);
                        if !more {
                            let msg = ZreMessage::decode(&parts, 1 << 20).expect("ZRE");
                            black_box(&msg);
                            parts.clear();
                            count += 1;
                        }
                    });
                    assert_eq!(count, n);
                });
            });
        }
        group.finish();
    }
}

/// Appends a ZRE message as ZMTP frames: every frame but the last carries MORE.
fn encode_message(msg: &ZreMessage, out: &mut BytesMut) {
    let frames = msg.to_frames().expect("ZRE encode");
    let last = frames.len() - 1;
    for (i, body) in frames.into_iter().enumerate() {
        Frame::message(body, i < last).encode(out);
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = zmtp_frames, zre
}
criterion_main!(benches);
