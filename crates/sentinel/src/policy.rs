//! Policy: rules over an account's signals, written in CEL (the Common Expression Language),
//! each with a graduated action that expires.
//!
//! A policy file is TOML, one `[[rule]]` table per rule:
//!
//! ```toml
//! [[rule]]
//! name = "probing_call_setup"
//! when = "misfits_10m >= 5"
//! action = "suspend_calling"
//! duration = "24h"
//! reason = "call set-ups that do not fit the call schema: a modified client"
//! ```
//!
//! `when` may use the signal names of [`crate::signals::SIGNAL_NAMES`] (integers, except
//! `network_is_hosting` and `client_is_unknown`, booleans). A file with an error (TOML, CEL, an unknown signal or
//! action, a duration that does not parse) is refused as a whole with its line, so a server
//! never starts on half a policy. CEL is evaluated by the `cel` crate: expressions cannot loop,
//! call out or allocate without bound, which a policy language run on every event needs.

use std::fmt;

use serde::Deserialize;

use crate::signals::{SIGNAL_NAMES, Snapshot};

/// The policy built in, used when the operator gives none (docs/sentinel.md explains each).
pub const DEFAULT_POLICY: &str = include_str!("default_policy.toml");

/// Rules in one file, at most.
pub const MAX_RULES: usize = 256;
/// The longest `when` expression.
pub const MAX_EXPRESSION_BYTES: usize = 4096;

/// What a rule does to an account, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Each call costs its caller proof of work (a fraction of a second of a processor, asked
    /// anew for every callee): nothing to a person, a price on every call of a campaign. The
    /// weakest action: hashing is cheap for whoever brings many cores or a GPU.
    RequireChallenge,
    /// At most one call a minute.
    SlowDown,
    /// No calls until an operator lets the account call again (or it expires).
    RequireOperator,
    /// No calls.
    SuspendCalling,
    /// No sign-in at all.
    SuspendAccount,
    /// No new registrations from the network the account registered from (the account
    /// itself is not touched by this).
    BlockNetwork,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Action::RequireChallenge,
        Action::SlowDown,
        Action::RequireOperator,
        Action::SuspendCalling,
        Action::SuspendAccount,
        Action::BlockNetwork,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::SlowDown => "slow_down",
            Action::RequireChallenge => "require_challenge",
            Action::RequireOperator => "require_operator",
            Action::SuspendCalling => "suspend_calling",
            Action::SuspendAccount => "suspend_account",
            Action::BlockNetwork => "block_network",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == text)
    }

    /// Whether the action stops the account placing calls.
    pub fn stops_calls(self) -> bool {
        matches!(self, Action::RequireOperator | Action::SuspendCalling | Action::SuspendAccount)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy file that cannot be used: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct PolicyError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    rule: Vec<toml::Spanned<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    when: toml::Spanned<String>,
    action: toml::Spanned<String>,
    duration: toml::Spanned<String>,
    #[serde(default)]
    reason: String,
}

/// One rule, ready to run.
pub struct Rule {
    pub name: String,
    pub when: String,
    pub action: Action,
    pub duration_ms: u64,
    pub reason: String,
    program: cel::Program,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("when", &self.when)
            .field("action", &self.action)
            .field("duration_ms", &self.duration_ms)
            .finish_non_exhaustive()
    }
}

/// The rules, in file order.
#[derive(Debug)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

/// A rule that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub rule: String,
    pub action: Action,
    pub duration_ms: u64,
    pub reason: String,
}

impl Policy {
    /// Parse and check a policy file.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let file: File = toml::from_str(text).map_err(|e| PolicyError {
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            message: e.message().to_owned(),
        })?;
        if file.rule.len() > MAX_RULES {
            return Err(PolicyError { line: 1, message: format!("more than {MAX_RULES} rules") });
        }
        let mut rules = Vec::new();
        for spanned in file.rule {
            let rule_line = line_of(text, spanned.span().start);
            let raw = spanned.into_inner();
            let at = |span: std::ops::Range<usize>, message: String| PolicyError {
                line: line_of(text, span.start),
                message: format!("rule `{}`: {message}", raw.name),
            };
            if raw.name.is_empty() || raw.name.len() > 64 {
                return Err(PolicyError {
                    line: rule_line,
                    message: "a rule needs a name of 1 to 64 characters".into(),
                });
            }
            if rules.iter().any(|r: &Rule| r.name == raw.name) {
                return Err(PolicyError {
                    line: rule_line,
                    message: format!("a second rule named `{}`", raw.name),
                });
            }
            let when = raw.when.get_ref().clone();
            if when.len() > MAX_EXPRESSION_BYTES {
                return Err(at(
                    raw.when.span(),
                    format!("`when` is longer than {MAX_EXPRESSION_BYTES} bytes"),
                ));
            }
            let program = cel::Program::compile(&when).map_err(|e| {
                at(raw.when.span(), format!("`when` is not a CEL expression: {}", one_line(&e)))
            })?;
            if let Some(unknown) =
                program.references().variables().into_iter().find(|v| !SIGNAL_NAMES.contains(v))
            {
                return Err(at(
                    raw.when.span(),
                    format!(
                        "`when` uses `{unknown}`, which is not a signal (they are: {})",
                        SIGNAL_NAMES.join(", ")
                    ),
                ));
            }
            let action = Action::parse(raw.action.get_ref()).ok_or_else(|| {
                let names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
                at(
                    raw.action.span(),
                    format!("no action `{}` (there are: {})", raw.action.get_ref(), names.join(", ")),
                )
            })?;
            let duration_ms = parse_duration(raw.duration.get_ref()).ok_or_else(|| {
                at(
                    raw.duration.span(),
                    format!("`{}` is not a duration like 30m, 24h or 7d", raw.duration.get_ref()),
                )
            })?;
            let rule = Rule { name: raw.name, when, action, duration_ms, reason: raw.reason, program };
            // Evaluated once on quiet signals, so a rule that does not give a boolean (or
            // fails) is found now rather than on the first event.
            rule.matches(&Snapshot::default()).map_err(|why| PolicyError {
                line: rule_line,
                message: format!("rule `{}`: {why}", rule.name),
            })?;
            rules.push(rule);
        }
        Ok(Self { rules })
    }

    /// The built-in policy.
    pub fn default_policy() -> Self {
        match Self::parse(DEFAULT_POLICY) {
            Ok(policy) => policy,
            // Checked by a test: the built-in file always parses.
            Err(_) => Self { rules: Vec::new() },
        }
    }

    /// Every rule that matches these signals, in file order. A rule that fails to evaluate
    /// (it passed the checks at load time, so only on extreme values) does not match.
    pub fn evaluate(&self, signals: &Snapshot) -> Vec<Verdict> {
        if self.rules.is_empty() {
            return Vec::new();
        }
        // One context for all the rules: making it is most of an evaluation's cost.
        let context = context_of(signals);
        self.rules
            .iter()
            .filter(|rule| rule.matches_in(&context) == Ok(true))
            .map(|rule| Verdict {
                rule: rule.name.clone(),
                action: rule.action,
                duration_ms: rule.duration_ms,
                reason: rule.reason.clone(),
            })
            .collect()
    }
}

/// The signals as CEL variables: integers, and `network_is_hosting` and `client_is_unknown`
/// booleans.
fn context_of(signals: &Snapshot) -> cel::Context<'static, 'static> {
    let mut context = cel::Context::default();
    for (name, value) in signals.named() {
        let value = if name == "network_is_hosting" || name == "client_is_unknown" {
            cel::Value::Bool(value != 0)
        } else {
            cel::Value::Int(i64::try_from(value).unwrap_or(i64::MAX))
        };
        context.add_variable_from_value(name, value);
    }
    context
}

impl Rule {
    fn matches(&self, signals: &Snapshot) -> Result<bool, String> {
        self.matches_in(&context_of(signals))
    }

    fn matches_in(&self, context: &cel::Context<'_, '_>) -> Result<bool, String> {
        match self.program.execute(context) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("`when` gives {other:?}, not true or false")),
            Err(e) => Err(format!("`when` fails: {e}")),
        }
    }
}

/// `90s`, `30m`, `24h`, `7d`.
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let number: u64 = text.get(..text.len() - unit.len_utf8())?.parse().ok()?;
    let ms = match unit {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        _ => return None,
    };
    let total = number.checked_mul(ms)?;
    (total > 0 && total <= 365 * 86_400_000).then_some(total)
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(1, |before| before.matches('\n').count() + 1)
}

fn one_line(e: &impl fmt::Display) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn the_default_policy_parses() {
        let policy = Policy::parse(DEFAULT_POLICY).unwrap();
        assert!(policy.rules.len() >= 3);
    }

    #[test]
    fn rules_match_on_signals() {
        let policy = Policy::default_policy();
        let quiet = Snapshot { account_age_s: Some(10), ..Snapshot::default() };
        assert!(policy.evaluate(&quiet).is_empty());
        let probing = Snapshot { misfits_10m: 5, ..Snapshot::default() };
        let verdicts = policy.evaluate(&probing);
        assert_eq!(verdicts[0].action, Action::SuspendCalling, "{verdicts:?}");
        // A new account calling many people who do not pick up.
        let cold = Snapshot {
            account_age_s: Some(600),
            calls_placed_10m: 12,
            calls_answered_10m: 1,
            distinct_callees_24h: 12,
            ..Snapshot::default()
        };
        assert!(policy.evaluate(&cold).iter().any(|v| v.action == Action::SuspendCalling));
        // A journalist: an old account calling many sources, most of whom answer.
        let journalist = Snapshot {
            account_age_s: None,
            calls_placed_10m: 12,
            calls_placed_24h: 50,
            calls_answered_10m: 9,
            calls_answered_24h: 40,
            distinct_callees_24h: 50,
            ..Snapshot::default()
        };
        assert!(policy.evaluate(&journalist).is_empty(), "{:?}", policy.evaluate(&journalist));
    }

    #[test]
    fn errors_name_the_line() {
        let bad_signal = "[[rule]]\nname = \"x\"\nwhen = \"calls_placd_10m > 3\"\naction = \"slow_down\"\nduration = \"1h\"\n";
        let e = Policy::parse(bad_signal).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("calls_placd_10m"), "{e}");

        let bad_cel = "# comment\n[[rule]]\nname = \"x\"\nwhen = \"misfits_10m >>> 3\"\naction = \"slow_down\"\nduration = \"1h\"\n";
        assert_eq!(Policy::parse(bad_cel).unwrap_err().line, 4);

        let bad_action =
            "[[rule]]\nname = \"x\"\nwhen = \"misfits_10m > 3\"\naction = \"shoot\"\nduration = \"1h\"\n";
        let e = Policy::parse(bad_action).unwrap_err();
        assert_eq!(e.line, 4);
        assert!(e.message.contains("suspend_calling"), "{e}");

        let bad_duration = "[[rule]]\nname = \"x\"\nwhen = \"misfits_10m > 3\"\naction = \"slow_down\"\nduration = \"forever\"\n";
        assert_eq!(Policy::parse(bad_duration).unwrap_err().line, 5);

        let not_bool =
            "[[rule]]\nname = \"x\"\nwhen = \"misfits_10m + 1\"\naction = \"slow_down\"\nduration = \"1h\"\n";
        let e = Policy::parse(not_bool).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("not true or false"), "{e}");

        let bad_toml = "[[rule]]\nname = \"x\"\nwhen = \"misfits_10m > 3\nduration = 3\n";
        assert!(Policy::parse(bad_toml).unwrap_err().line >= 3);

        let unknown_key = "[[rule]]\nname = \"x\"\nwhen = \"misfits_10m > 3\"\naction = \"slow_down\"\nduration = \"1h\"\nseverity = 3\n";
        assert!(Policy::parse(unknown_key).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m"), Some(1_800_000));
        assert_eq!(parse_duration("7d"), Some(604_800_000));
        assert_eq!(parse_duration("0h"), None);
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("10y"), None);
        assert_eq!(parse_duration("999999999999999999d"), None);
        assert_eq!(parse_duration("5é"), None);
    }
}
