//! Sentinel's sans-IO part: what the server keeps as evidence of its decisions against an
//! attack campaign, and how anyone can check it later.
//!
//! No files, sockets or clock here: the server hands in the time and its key, and writes the
//! lines this crate makes; `rampart admin evidence verify` hands the lines back.
#![forbid(unsafe_code)]

pub mod case;
pub mod engine;
pub mod evidence;
pub mod investigate;
pub mod policy;
pub mod signals;

pub use engine::{Decision, Sentinel, Subject};
pub use evidence::{
    Chain, EvidenceError, Excerpt, Head, Record, Verified, excerpt, verify, verify_against, verify_excerpt,
};
pub use policy::{Action, Policy, PolicyError};
pub use signals::{Network, Observation, Quirk, Ranges, Snapshot};
