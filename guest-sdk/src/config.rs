//! [`Config`]: typed lookups over the `policy.config` pairs passed to
//! `init`, and [`ConfigError`], whose message becomes `init`'s error string.
//!
//! The pairs come from the edge config's `policy.config` YAML map, every
//! value as text. Lookups are by exact key; when a key is given twice the
//! last value wins, as in a YAML map.

use std::fmt;
use std::str::FromStr;

use crate::names;

/// The policy's configuration: keys and values as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pairs: Vec<(String, String)>,
}

/// A configuration the policy refuses. The `Display` text is what the
/// operator sees, e.g. `missing required key "domain"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A required key is absent.
    Missing {
        /// The key.
        key: String,
    },
    /// A key's value is unusable.
    Invalid {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A key the policy does not know (often a typo).
    Unknown {
        /// The key.
        key: String,
        /// The keys the policy knows, for the message.
        known: String,
    },
    /// Any other refusal, in the policy's own words.
    Other(String),
}

impl ConfigError {
    /// An [`Invalid`](ConfigError::Invalid) error.
    pub fn invalid(key: &str, value: &str, reason: impl fmt::Display) -> Self {
        ConfigError::Invalid {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Missing { key } => write!(f, "missing required key {key:?}"),
            ConfigError::Invalid { key, value, reason } => {
                write!(f, "key {key:?}: invalid value {value:?}: {reason}")
            }
            ConfigError::Unknown { key, known } => {
                write!(f, "unknown key {key:?} (known keys: {known})")
            }
            ConfigError::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Wraps the pairs `init` received.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Config { pairs }
    }

    /// Builds a config from borrowed pairs; for tests.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Config::new(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// Every key, in the order given (duplicates included).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(k, _)| k.as_str())
    }

    /// Every pair, in the order given.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of `key`, surrounding whitespace trimmed, if present.
    pub fn optional(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim())
    }

    /// The value of `key`; missing or blank is an error.
    pub fn required(&self, key: &str) -> Result<&str, ConfigError> {
        match self.optional(key) {
            None => Err(ConfigError::Missing {
                key: key.to_owned(),
            }),
            Some("") => Err(ConfigError::invalid(key, "", "must not be empty")),
            Some(value) => Ok(value),
        }
    }

    /// The comma-separated items of `key`, each trimmed, empty items
    /// dropped; an empty list when the key is absent.
    pub fn list(&self, key: &str) -> Vec<&str> {
        self.optional(key)
            .map(|value| {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `key` parsed with [`FromStr`]; `Ok(None)` when absent.
    pub fn parse<T>(&self, key: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.optional(key)
            .map(|value| {
                value
                    .parse()
                    .map_err(|err| ConfigError::invalid(key, value, err))
            })
            .transpose()
    }

    /// `key` parsed with [`FromStr`], or `default` when absent.
    pub fn parse_or<T>(&self, key: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        Ok(self.parse(key)?.unwrap_or(default))
    }

    /// The required DNS name at `key`, validated and normalised (lowercase,
    /// no trailing dot).
    pub fn dns_name(&self, key: &str) -> Result<String, ConfigError> {
        let value = self.required(key)?;
        if names::is_valid_dns_name(value) {
            Ok(names::normalize(value))
        } else {
            Err(ConfigError::invalid(key, value, "not a valid DNS name"))
        }
    }

    /// Refuses any key not in `known`, so a typo (`domian`) fails loudly
    /// instead of being ignored.
    pub fn deny_unknown_keys(&self, known: &[&str]) -> Result<(), ConfigError> {
        self.deny_unknown_keys_by(|key| known.contains(&key), &known.join(", "))
    }

    /// Like [`deny_unknown_keys`](Self::deny_unknown_keys) with a predicate,
    /// for key families such as `route.<n>`; `known` describes them for the
    /// message.
    pub fn deny_unknown_keys_by(
        &self,
        is_known: impl Fn(&str) -> bool,
        known: &str,
    ) -> Result<(), ConfigError> {
        match self.keys().find(|key| !is_known(key)) {
            Some(key) => Err(ConfigError::Unknown {
                key: key.to_owned(),
                known: known.to_owned(),
            }),
            None => Ok(()),
        }
    }
}

impl From<Vec<(String, String)>> for Config {
    fn from(pairs: Vec<(String, String)>) -> Self {
        Config::new(pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_pairs([
            ("domain", " Hearth.Example. "),
            ("aliases", "a.example, ,b.example ,"),
            ("rate", "10"),
            ("bad_rate", "ten"),
            ("blank", "  "),
            ("dup", "first"),
            ("dup", "second"),
        ])
    }

    #[test]
    fn required_and_optional() {
        let c = config();
        assert_eq!(c.required("rate"), Ok("10"));
        assert_eq!(c.optional("absent"), None);
        assert_eq!(c.optional("blank"), Some(""));
        assert_eq!(c.optional("dup"), Some("second"), "last value wins");
        assert_eq!(
            c.required("absent").unwrap_err().to_string(),
            r#"missing required key "absent""#
        );
        assert_eq!(
            c.required("blank").unwrap_err().to_string(),
            r#"key "blank": invalid value "": must not be empty"#
        );
    }

    #[test]
    fn lists_split_on_commas_and_drop_blanks() {
        let c = config();
        assert_eq!(c.list("aliases"), ["a.example", "b.example"]);
        assert!(c.list("absent").is_empty());
        assert!(c.list("blank").is_empty());
    }

    #[test]
    fn parse_reports_key_value_and_reason() {
        let c = config();
        assert_eq!(c.parse::<u32>("rate"), Ok(Some(10)));
        assert_eq!(c.parse::<u32>("absent"), Ok(None));
        assert_eq!(c.parse_or::<u32>("absent", 7), Ok(7));
        assert_eq!(
            c.parse::<u32>("bad_rate").unwrap_err().to_string(),
            r#"key "bad_rate": invalid value "ten": invalid digit found in string"#
        );
    }

    #[test]
    fn dns_names_are_validated_and_normalised() {
        let c = config();
        assert_eq!(c.dns_name("domain"), Ok("hearth.example".to_owned()));
        assert_eq!(
            c.dns_name("aliases").unwrap_err().to_string(),
            r#"key "aliases": invalid value "a.example, ,b.example ,": not a valid DNS name"#
        );
        assert!(matches!(
            c.dns_name("absent"),
            Err(ConfigError::Missing { .. })
        ));
    }

    #[test]
    fn unknown_keys_are_named() {
        let c = Config::from_pairs([("domain", "x.example"), ("domian", "y")]);
        assert_eq!(
            c.deny_unknown_keys(&["domain", "rate"])
                .unwrap_err()
                .to_string(),
            r#"unknown key "domian" (known keys: domain, rate)"#
        );
        assert_eq!(c.deny_unknown_keys(&["domain", "domian"]), Ok(()));
        assert_eq!(
            c.deny_unknown_keys_by(|k| k.starts_with("dom"), "dom*"),
            Ok(())
        );
    }
}
