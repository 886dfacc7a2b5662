//! The zeromq/filemq capture (`tests/data/filemq-c.txt`) as frames; shared with the
//! harmony-files tests, which include this file by path.

use bytes::Bytes;

const CAPTURE: &str = include_str!("../data/filemq-c.txt");

/// `(direction, frame)` in capture order per direction; `+big OFFSET LEN` appends the
/// generated chunk of big.bin (byte i is i mod 251).
pub(crate) fn frames() -> Vec<(String, Bytes)> {
    CAPTURE
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let hex = fields[2];
            let mut bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            if let ["+big", offset, len] = fields[3..] {
                let offset: u64 = offset.parse().expect("offset");
                let len: u64 = len.parse().expect("len");
                bytes.extend((offset..offset + len).map(|i| (i % 251) as u8));
            }
            (fields[0].to_string(), Bytes::from(bytes))
        })
        .collect()
}
