//! A policy config written in YAML → the `list<tuple<string, string>>` that
//! `init` receives. Shared by case files (`harness/cases.rs`) and the edge
//! config (`policy.config`, in the `hearth-wasm-edge` crate), so a value
//! means the same in both.

use serde_yaml::Value;

/// A config that cannot be given to a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config is not a mapping (or null, meaning empty).
    #[error("policy config must be a mapping of names to values")]
    NotAMapping,
    /// A key is not a scalar.
    #[error("policy config keys must be text, numbers or booleans")]
    BadKey,
    /// A value is a list or mapping.
    #[error("policy config value of {key:?} must be text, a number or a boolean, not a {kind}")]
    BadValue {
        /// The key whose value is wrong.
        key: String,
        /// `list` or `mapping`.
        kind: &'static str,
    },
}

/// Converts a YAML mapping to config pairs, in file order. Scalars become
/// text: strings as written, numbers in their YAML form (`8443`, `0.5`),
/// booleans as `true`/`false`, null as the empty string. `null` as the
/// whole config is an empty config. Lists and nested mappings are refused.
pub fn config_map(value: &Value) -> Result<Vec<(String, String)>, ConfigError> {
    let mapping = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Mapping(m) => m,
        Value::Tagged(t) => return config_map(&t.value),
        _ => return Err(ConfigError::NotAMapping),
    };
    mapping
        .iter()
        .map(|(k, v)| {
            let key = scalar_text(k).ok_or(ConfigError::BadKey)?;
            let value = scalar_text(v).ok_or_else(|| ConfigError::BadValue {
                key: key.clone(),
                kind: if v.is_sequence() { "list" } else { "mapping" },
            })?;
            Ok((key, value))
        })
        .collect()
}

/// Parses `key=value` command-line pairs (`--policy-config k=v`) into
/// config pairs; the value may contain `=`.
pub fn config_pairs<S: AsRef<str>>(pairs: &[S]) -> Result<Vec<(String, String)>, String> {
    pairs
        .iter()
        .map(|p| {
            let p = p.as_ref();
            match p.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
                _ => Err(format!(
                    "policy config entry {p:?} is not of the form key=value"
                )),
            }
        })
        .collect()
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some(String::new()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Tagged(t) => scalar_text(&t.value),
        Value::Sequence(_) | Value::Mapping(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn scalars_become_text_in_order() {
        let got = config_map(&yaml(
            "domain: a.example\nport: 8443\nratio: 0.5\nstrict: true\nnone: ~\n",
        ))
        .unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("domain", "a.example"),
                ("port", "8443"),
                ("ratio", "0.5"),
                ("strict", "true"),
                ("none", "")
            ])
        );
    }

    #[test]
    fn null_and_empty_mapping_are_empty() {
        assert_eq!(config_map(&Value::Null).unwrap(), vec![]);
        assert_eq!(config_map(&yaml("{}")).unwrap(), vec![]);
    }

    #[test]
    fn numeric_keys_are_text() {
        assert_eq!(config_map(&yaml("1: one")).unwrap(), pairs(&[("1", "one")]));
    }

    #[test]
    fn nested_values_are_refused_with_their_key() {
        let err = config_map(&yaml("routes: [a, b]")).unwrap_err();
        assert_eq!(
            err,
            ConfigError::BadValue {
                key: "routes".into(),
                kind: "list"
            }
        );
        assert!(err.to_string().contains("\"routes\""), "{err}");
        let err = config_map(&yaml("routes: {a: b}")).unwrap_err();
        assert_eq!(
            err,
            ConfigError::BadValue {
                key: "routes".into(),
                kind: "mapping"
            }
        );
    }

    #[test]
    fn a_list_is_not_a_config() {
        assert_eq!(
            config_map(&yaml("[a]")).unwrap_err(),
            ConfigError::NotAMapping
        );
    }

    #[test]
    fn command_line_pairs_split_at_the_first_equals() {
        assert_eq!(
            config_pairs(&["domain=a.example", "route.1=x -> y=z"]).unwrap(),
            pairs(&[("domain", "a.example"), ("route.1", "x -> y=z")])
        );
        assert!(config_pairs(&["novalue"]).is_err());
        assert!(config_pairs(&["=v"]).is_err());
    }
}
