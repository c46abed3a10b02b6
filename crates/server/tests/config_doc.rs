#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
//! Holds docs/configuration.md to the configuration code.
//!
//! The doc's defaults block is the first ```toml block after the heading that mentions
//! defaults. In it:
//! - a line that is not a comment sets a key to its default, so the block as written (TOML
//!   ignores the comments) must parse, with the server's own parser, to exactly
//!   `ServerConfig::default()`;
//! - a commented-out line `# key = value` is an example for a key without a fixed default;
//!   uncommenting all of them (each replacing an active line of the same key in the same
//!   table) must give a valid configuration too, so the examples cannot name unknown keys;
//! - every key the server knows (the fields of the serialized default, `None` ones included)
//!   must have a line, active or commented, in its table.

use std::collections::BTreeSet;
use std::path::Path;

use rampart_server::ServerConfig;
use serde_json::Value;

/// Keys with a built-in default that the doc shows only as a commented-out example, and why.
/// `data_dir`: the library's default (`rampart-data`) is replaced by the per-user data
/// directory in every `rampart` command that reads the file.
const EXAMPLE_ONLY: &[&str] = &["data_dir"];

fn doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The defaults block: the first ```toml block after a heading that mentions defaults.
fn defaults_block(doc: &str) -> String {
    let mut lines = doc.lines();
    lines
        .by_ref()
        .find(|l| l.starts_with('#') && l.to_ascii_lowercase().contains("default"))
        .expect("docs/configuration.md has no heading about defaults");
    lines.by_ref().find(|l| l.trim() == "```toml").expect("no ```toml block after the defaults heading");
    let block: Vec<&str> = lines.take_while(|l| l.trim() != "```").collect();
    assert!(!block.is_empty(), "the defaults block is empty");
    block.join("\n") + "\n"
}

#[derive(Debug, PartialEq)]
enum Line {
    /// `[a.b]`
    Table(String),
    /// `key = value`
    Active(String),
    /// `# key = value`: the key and the line uncommented.
    Example(String, String),
    /// Blank lines and prose comments.
    Other,
}

fn key_before_equals(text: &str) -> Option<String> {
    let key: String = text.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    let rest = text.get(key.len()..)?.trim_start();
    (!key.is_empty() && rest.starts_with('=') && !rest.starts_with("==")).then_some(key)
}

fn classify(line: &str) -> Line {
    let t = line.trim();
    if let Some(commented) = t.strip_prefix('#') {
        let text = commented.trim_start();
        return match key_before_equals(text) {
            Some(key) => Line::Example(key, text.to_owned()),
            None => Line::Other,
        };
    }
    if let Some(name) = t.strip_prefix('[') {
        let name = name.split(']').next().unwrap_or_default().trim();
        assert!(!name.starts_with('['), "arrays of tables are not expected in the defaults block");
        return Line::Table(name.to_owned());
    }
    if t.is_empty() {
        return Line::Other;
    }
    Line::Active(key_before_equals(t).unwrap_or_else(|| panic!("cannot read the key of `{line}`")))
}

/// (table, key, is_example) for every key line, and the tables named.
fn keys(block: &str) -> (Vec<(String, String, bool)>, BTreeSet<String>) {
    let mut table = String::new();
    let mut tables = BTreeSet::new();
    let mut out = Vec::new();
    for line in block.lines() {
        match classify(line) {
            Line::Table(t) => {
                tables.insert(t.clone());
                table = t;
            }
            Line::Active(k) => out.push((table.clone(), k, false)),
            Line::Example(k, _) => out.push((table.clone(), k, true)),
            Line::Other => {}
        }
    }
    (out, tables)
}

/// The block with every example uncommented and the active lines they replace dropped.
fn with_examples(block: &str) -> String {
    let (keys, _) = keys(block);
    let examples: BTreeSet<(String, String)> =
        keys.iter().filter(|(_, _, ex)| *ex).map(|(t, k, _)| (t.clone(), k.clone())).collect();
    let mut table = String::new();
    let mut out = String::new();
    for line in block.lines() {
        match classify(line) {
            Line::Table(t) => table = t,
            Line::Example(_, uncommented) => {
                out.push_str(&uncommented);
                out.push('\n');
                continue;
            }
            Line::Active(k) if examples.contains(&(table.clone(), k.clone())) => continue,
            _ => {}
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn json(config: &ServerConfig) -> Value {
    serde_json::to_value(config).unwrap()
}

/// Paths where two values differ, with both sides.
fn differences(path: &str, doc: &Value, code: &Value, out: &mut Vec<String>) {
    match (doc, code) {
        (Value::Object(a), Value::Object(b)) => {
            let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for name in names {
                let sub = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                differences(
                    &sub,
                    a.get(name).unwrap_or(&Value::Null),
                    b.get(name).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (a, b) if a != b => out.push(format!("{path}: the doc gives {a}, the code's default is {b}")),
        _ => {}
    }
}

#[test]
fn the_documented_defaults_are_the_defaults() {
    let block = defaults_block(&doc());
    let parsed = ServerConfig::from_toml(&block)
        .unwrap_or_else(|e| panic!("the defaults block of docs/configuration.md does not parse: {e}"));
    let mut diff = Vec::new();
    differences("", &json(&parsed), &json(&ServerConfig::default()), &mut diff);
    assert!(diff.is_empty(), "docs/configuration.md states wrong defaults:\n{}", diff.join("\n"));
}

#[test]
fn the_commented_out_examples_are_valid_settings() {
    let block = with_examples(&defaults_block(&doc()));
    if let Err(e) = ServerConfig::from_toml(&block) {
        panic!("with its examples uncommented, the defaults block does not parse: {e}\n{block}");
    }
}

#[test]
fn every_key_is_documented() {
    let block = defaults_block(&doc());
    let (lines, tables) = keys(&block);
    let documented: BTreeSet<(String, String)> =
        lines.iter().map(|(t, k, _)| (t.clone(), k.clone())).collect();
    let active: BTreeSet<(String, String)> =
        lines.iter().filter(|(_, _, ex)| !ex).map(|(t, k, _)| (t.clone(), k.clone())).collect();
    let mut missing = Vec::new();
    let mut only_examples = Vec::new();
    // Walk the serialized default: an object the doc gives a `[table]` of is a table, anything
    // else (scalars, arrays, inline tables such as rate-limit buckets) is one key.
    let mut stack = vec![(String::new(), json(&ServerConfig::default()))];
    while let Some((table, value)) = stack.pop() {
        let Value::Object(map) = value else { unreachable!() };
        for (key, v) in map {
            let full = if table.is_empty() { key.clone() } else { format!("{table}.{key}") };
            if v.is_object() && tables.contains(&full) {
                stack.push((full, v));
                continue;
            }
            let entry = (table.clone(), key.clone());
            if !documented.contains(&entry) {
                missing.push(full);
            } else if !v.is_null() && !active.contains(&entry) && !EXAMPLE_ONLY.contains(&full.as_str()) {
                only_examples.push(full);
            }
        }
    }
    assert!(missing.is_empty(), "docs/configuration.md does not list these settings: {missing:?}");
    assert!(
        only_examples.is_empty(),
        "these settings have a default but docs/configuration.md only shows a commented-out example: \
         {only_examples:?}"
    );
}

#[test]
fn the_line_reader_reads_the_doc_s_style() {
    assert_eq!(classify("[calls.relay]"), Line::Table("calls.relay".into()));
    assert_eq!(classify("max_devices = 5   # per account"), Line::Active("max_devices".into()));
    assert_eq!(
        classify("# tls_key = \"/etc/k.pem\"   # both"),
        Line::Example("tls_key".into(), "tls_key = \"/etc/k.pem\"   # both".into())
    );
    assert_eq!(classify("# Token buckets: `burst` at once"), Line::Other);
    assert_eq!(classify("# name coturn servers (use-auth-secret, a = b)"), Line::Other);
}
