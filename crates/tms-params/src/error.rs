//! The typed errors of the crate. Messages name the offending field and never echo free text
//! that might hold card data (a PAN typed into a BIN field, for instance): list entries are
//! named by index, and only values that passed a shape check appear in messages.

use std::fmt;

use crate::resolve::LevelKind;

/// Why a single value is invalid, relative to the field that holds it. The parameter
/// validation adds the field path; value constructors used on their own return it as is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct InvalidValue {
    /// The path below the field, e.g. `.rules[2].method` inside `cvm_list`; usually empty.
    pub(crate) subpath: String,
    /// What is wrong.
    pub(crate) reason: String,
}

impl InvalidValue {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        Self {
            subpath: String::new(),
            reason: reason.into(),
        }
    }

    pub(crate) fn at(subpath: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            subpath: subpath.into(),
            reason: reason.into(),
        }
    }

    /// What is wrong.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The path below the field the value sits in (e.g. `.rules[2].method`); empty for a
    /// plain value.
    pub fn subpath(&self) -> &str {
        &self.subpath
    }

    pub(crate) fn in_field(self, field: &str) -> ParameterError {
        ParameterError::Invalid {
            field: format!("{field}{}", self.subpath),
            reason: self.reason,
        }
    }
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.subpath.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(
                f,
                "{}: {}",
                self.subpath.trim_start_matches('.'),
                self.reason
            )
        }
    }
}

/// Why a parameter set, or the combination of the sets down a hierarchy, is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParameterError {
    /// A value set at one level is invalid, on its own or against another value of the same
    /// level.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field path, e.g. `contactless_floor_limit` or `blocked_bin_ranges[3].low`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The combination of the levels breaks a rule that no single level breaks.
    #[error("{field} (set at {level} {node_id}): {reason}")]
    Combined {
        /// The field path, e.g. `contactless_floor_limit`.
        field: String,
        /// The deepest level among those that supplied the conflicting values: the level
        /// whose change broke the rule.
        level: LevelKind,
        /// The node at that level.
        node_id: String,
        /// What is wrong, naming the levels of every value involved.
        reason: String,
    },
    /// The levels handed to `resolve` are not a root-first path of the hierarchy.
    #[error("levels: {reason}")]
    Levels {
        /// What is wrong.
        reason: String,
    },
}

impl ParameterError {
    /// The field path the error is about (`levels` for a malformed level list).
    pub fn field(&self) -> &str {
        match self {
            Self::Invalid { field, .. } | Self::Combined { field, .. } => field,
            Self::Levels { .. } => "levels",
        }
    }
}

/// Why a signed parameter set is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The algorithm field names something other than Ed25519.
    #[error("algorithm: expected \"Ed25519\"")]
    UnsupportedAlgorithm,
    /// The signature is not 64 bytes.
    #[error("signature: expected 64 bytes, got {0}")]
    MalformedSignature(usize),
    /// The signature does not verify under the given key over the payload.
    #[error("signature: does not verify under the given key")]
    Invalid,
    /// The signed payload is not an encoded `ParameterSet`.
    #[error("payload: not a ParameterSet: {0}")]
    MalformedPayload(String),
    /// A clear-text copy differs from the signed payload (names the field).
    #[error("{0}: differs from the signed payload")]
    ClearFieldMismatch(&'static str),
}
