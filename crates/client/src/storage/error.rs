//! What can go wrong with the profile's storage.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot create the profile directory {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("profile database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("the profile is damaged: {0}")]
    Corrupt(&'static str),
    #[error("wrong passphrase for this profile")]
    WrongPassphrase,
    #[error(
        "this profile is encrypted: give its passphrase (you are asked on a terminal; scripts set RAMPART_PASSPHRASE or --passphrase-file)"
    )]
    Locked,
}
