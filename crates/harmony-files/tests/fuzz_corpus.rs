//! Replays `fuzz/corpus/{files_server,files_client,files_record}` through the checks their fuzz
//! targets run (`harmony_files::fuzzing`), so the seeds and every input the fuzzer ever found
//! stay checked on stable Rust; the ignored test `write_seed_corpus` writes the seeds.

use std::fs;
use std::path::{Path, PathBuf};

use harmony_files::fuzzing;

type Check = fn(&[u8]);

/// The harmony-files fuzz targets and the checks they run (the other targets are replayed by
/// their own crates' tests).
const TARGETS: &[(&str, &str, Check)] = &[
    ("files_server", "server_session", fuzzing::server_session),
    ("files_client", "client_session", fuzzing::client_session),
    ("files_record", "records", fuzzing::records),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

#[test]
fn every_corpus_file_is_handled_and_checked() {
    for (target, name, check) in TARGETS {
        let dir = root().join("corpus").join(target);
        let mut files: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "fuzz/corpus/{target} is empty");
        for file in files {
            let data = fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| {
                check(&data);
                // Cut anywhere: a session that ends early, a record written halfway.
                for cut in (0..data.len()).step_by(7) {
                    check(&data[..cut]);
                }
            });
            assert!(outcome.is_ok(), "{target}: {} fails", file.display());
        }
        let source = fs::read_to_string(root().join(format!("fuzz_targets/{target}.rs")))
            .unwrap_or_else(|e| panic!("fuzz target {target}: {e}"));
        let call = format!("harmony_files::fuzzing::{name}(");
        assert!(source.contains(&call), "{target} calls {call}");
    }
}

/// The seeds made now from real sessions (not only the committed ones) pass their checks: a
/// change that breaks a whole session is caught even before the corpus is written again.
#[test]
fn fresh_seeds_pass_their_checks() {
    let seeds = fuzzing::seeds();
    for (target, _, check) in TARGETS {
        let mine: Vec<_> = seeds.iter().filter(|(t, _, _)| t == target).collect();
        assert!(!mine.is_empty(), "no seed for {target}");
        for (_, name, data) in mine {
            assert!(data.len() > 100, "{target}/{name}: {} bytes", data.len());
            check(data);
        }
    }
}

/// Writes the seeds under `fuzz/corpus/` (then commit them).
#[test]
#[ignore = "writes the seed corpus"]
fn write_seed_corpus() {
    for (target, name, data) in fuzzing::seeds() {
        let dir = root().join("corpus").join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), data).unwrap();
    }
}
