//! `harmony keygen NAME`: a CURVE certificate pair that czmq and pyzmq can load.

use std::path::PathBuf;

use clap::Args;
use harmony::security::Certificate;
use harmony::NodeError;

#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// Path of the public certificate; the secret one is written beside it as NAME_secret.
    name: PathBuf,
}

pub(crate) fn run(args: KeygenArgs) -> Result<(), NodeError> {
    let cert = Certificate::generate();
    cert.save(&args.name)
        .map_err(|e| NodeError::Invalid(format!("cannot write {}: {e}", args.name.display())))?;
    println!("public key {}", cert.public_z85());
    println!(
        "wrote {} and {}_secret",
        args.name.display(),
        args.name.display()
    );
    Ok(())
}
