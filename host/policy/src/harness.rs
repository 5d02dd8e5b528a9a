//! The policy test harness: YAML case files run against a compiled policy.
