//! Case files for investigators: a JSON document signed by the server's evidence key, carrying
//! an excerpt of the evidence log that checks on its own.
//!
//! The file is `{"format", "case", "signed_by", "signature"}`. The signature is Ed25519 over
//! SHA-256 of a domain tag and the case's canonical JSON (serde_json's output of the parsed
//! value: keys sorted, no spaces), so re-indenting the file does not break it but changing any
//! value does.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::evidence::{Entry, EvidenceError, Excerpt, verify_excerpt};

/// The format name written into every case file.
pub const CASE_FORMAT: &str = "rampart-case-v1";
/// Domain tag hashed in front of the case's bytes.
const CASE_TAG: &[u8] = b"rampart-case-v1 signed case\n";
/// Largest case file read back.
pub const MAX_CASE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("not a case file: {0}")]
    Malformed(String),
    #[error("the case file is larger than {MAX_CASE_BYTES} bytes")]
    TooLarge,
    #[error("the case was signed by {found}, not by the expected key {expected}")]
    WrongKey { expected: String, found: String },
    #[error("the signature does not match the case (the case was changed after it was signed)")]
    Signature,
    #[error("its evidence excerpt: {0}")]
    Evidence(#[from] EvidenceError),
}

fn digest(case: &Value) -> Result<[u8; 32], CaseError> {
    let bytes = serde_json::to_vec(case).map_err(|e| CaseError::Malformed(e.to_string()))?;
    let mut hasher = Sha256::new();
    hasher.update(CASE_TAG);
    hasher.update(&bytes);
    Ok(hasher.finalize().into())
}

/// Sign a case (an object with an `evidence` excerpt) into the file's JSON.
pub fn sign_case(case: Value, key: &SigningKey) -> Result<Value, CaseError> {
    let signature = key.sign(&digest(&case)?);
    Ok(serde_json::json!({
        "format": CASE_FORMAT,
        "case": case,
        "signed_by": hex::encode(key.verifying_key().as_bytes()),
        "signature": hex::encode(signature.to_bytes()),
    }))
}

/// A case file that checked out.
#[derive(Debug)]
pub struct VerifiedCase {
    pub case: Value,
    pub signed_by: VerifyingKey,
    /// The evidence entries it carries, checked against the same key.
    pub entries: Vec<Entry>,
}

/// Check a case file: the signature (by `expected` when given, else by the key it names) and
/// the evidence excerpt inside it (every entry the server's, linked, within the signed head).
pub fn verify_case(text: &str, expected: Option<&VerifyingKey>) -> Result<VerifiedCase, CaseError> {
    if text.len() > MAX_CASE_BYTES {
        return Err(CaseError::TooLarge);
    }
    let file: Value = serde_json::from_str(text).map_err(|e| CaseError::Malformed(e.to_string()))?;
    let field = |name: &str| file.get(name).ok_or_else(|| CaseError::Malformed(format!("no {name}")));
    if field("format")?.as_str() != Some(CASE_FORMAT) {
        return Err(CaseError::Malformed(format!("its format is not {CASE_FORMAT}")));
    }
    let hex_field = |name: &str, len: usize| -> Result<Vec<u8>, CaseError> {
        let text =
            field(name)?.as_str().ok_or_else(|| CaseError::Malformed(format!("{name} is not text")))?;
        let bytes = hex::decode(text).map_err(|_| CaseError::Malformed(format!("{name} is not hex")))?;
        if bytes.len() != len {
            return Err(CaseError::Malformed(format!("{name} is not {len} bytes")));
        }
        Ok(bytes)
    };
    let mut key_bytes = [0u8; 32];
    key_bytes.copy_from_slice(&hex_field("signed_by", 32)?);
    let signed_by = VerifyingKey::from_bytes(&key_bytes)
        .map_err(|_| CaseError::Malformed("signed_by is not an Ed25519 key".into()))?;
    if let Some(expected) = expected
        && expected != &signed_by
    {
        return Err(CaseError::WrongKey {
            expected: hex::encode(expected.as_bytes()),
            found: hex::encode(signed_by.as_bytes()),
        });
    }
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&hex_field("signature", 64)?);
    let case = field("case")?.clone();
    signed_by
        .verify(&digest(&case)?, &Signature::from_bytes(&signature))
        .map_err(|_| CaseError::Signature)?;
    let excerpt: Excerpt = match case.get("evidence") {
        Some(e) => {
            serde_json::from_value(e.clone()).map_err(|e| CaseError::Malformed(format!("evidence: {e}")))?
        }
        None => return Err(CaseError::Malformed("no evidence".into())),
    };
    let entries = verify_excerpt(&excerpt, &signed_by)?;
    Ok(VerifiedCase { case, signed_by, entries })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::evidence::{Chain, Record};

    fn case(key: &SigningKey) -> Value {
        let mut chain = Chain::new();
        let record = Record {
            decision: "suspend_calling".into(),
            subject: "a7".into(),
            by: "rule probing_call_setup".into(),
            reason: "malformed call set-up".into(),
            signals: Default::default(),
            until_ms: None,
        };
        let line = chain.append(key, 5, record).unwrap();
        let excerpt = Excerpt { head: chain.head().to_line(key), lines: vec![line.trim_end().to_owned()] };
        serde_json::json!({ "cluster": { "id": "c7", "accounts": [7] }, "evidence": excerpt })
    }

    #[test]
    fn a_signed_case_verifies_and_any_change_fails() {
        let key = SigningKey::from_bytes(&[3u8; 32]);
        let file = sign_case(case(&key), &key).unwrap();
        let text = serde_json::to_string_pretty(&file).unwrap();
        let verified = verify_case(&text, Some(&key.verifying_key())).unwrap();
        assert_eq!(verified.entries.len(), 1);
        assert_eq!(verified.case["cluster"]["id"], "c7");
        // Re-indented: still the same case.
        assert!(verify_case(&serde_json::to_string(&file).unwrap(), None).is_ok());
        // A changed value.
        let changed = text.replacen("\"c7\"", "\"c8\"", 1);
        assert!(matches!(verify_case(&changed, None), Err(CaseError::Signature)));
        // Another key than expected.
        let other = SigningKey::from_bytes(&[4u8; 32]).verifying_key();
        assert!(matches!(verify_case(&text, Some(&other)), Err(CaseError::WrongKey { .. })));
        // Re-signed by someone else with an evidence excerpt that is not theirs.
        let forger = SigningKey::from_bytes(&[5u8; 32]);
        let forged = serde_json::to_string(&sign_case(case(&key), &forger).unwrap()).unwrap();
        assert!(matches!(verify_case(&forged, None), Err(CaseError::Evidence(_))));
        // Not a case at all.
        assert!(matches!(verify_case("[1]", None), Err(CaseError::Malformed(_))));
        assert!(matches!(verify_case("{", None), Err(CaseError::Malformed(_))));
    }
}
