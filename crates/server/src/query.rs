//! Query strings of the JSON endpoints, checked before any work is done.
//!
//! Owns the rule every endpoint applies: a key the endpoint does not know, or a key given twice,
//! is a 400 with a message naming it (so `?dport=80&dport=443` or a typo never silently answers
//! a different question). It does not know what the values mean: each endpoint parses those.

/// The pairs of a query string in order, or a message for the client when a key is unknown to
/// the endpoint (`known`) or repeated. Keys and values are shown escaped, never raw.
pub fn checked_params<'a>(
    pairs: &'a [(String, String)],
    known: &[&str],
) -> Result<Vec<(&'a str, &'a str)>, String> {
    let mut seen: Vec<&str> = Vec::with_capacity(pairs.len());
    for (key, _) in pairs {
        if !known.contains(&key.as_str()) {
            return Err(format!(
                "unknown query parameter {key:?}: expected one of {}",
                known.join(", ")
            ));
        }
        if seen.contains(&key.as_str()) {
            return Err(format!("query parameter {key:?} given more than once"));
        }
        seen.push(key);
    }
    Ok(pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::checked_params;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn known_keys_pass_in_order() {
        let given = pairs(&[("src", "10.0.0.1"), ("dport", "80")]);
        let checked = checked_params(&given, &["src", "dst", "dport"]).unwrap();
        assert_eq!(checked, [("src", "10.0.0.1"), ("dport", "80")]);
    }

    #[test]
    fn unknown_and_repeated_keys_are_refused() {
        let unknown = pairs(&[("sport", "1"), ("dprot", "80")]);
        let error = checked_params(&unknown, &["sport", "dport"]).unwrap_err();
        assert!(
            error.contains("unknown query parameter \"dprot\""),
            "{error}"
        );
        let repeated = pairs(&[("dport", "80"), ("dport", "443")]);
        let error = checked_params(&repeated, &["dport"]).unwrap_err();
        assert!(error.contains("\"dport\" given more than once"), "{error}");
        let control = pairs(&[("a\u{1b}[31m", "x")]);
        let error = checked_params(&control, &["a"]).unwrap_err();
        assert!(
            !error.contains('\u{1b}'),
            "control characters escaped: {error}"
        );
    }
}
