//! Name cases: how spec names (`volc_tts`, `createPayment`, `x-api-key`)
//! become the Rust names generated for them. The rules that say which
//! spelling a spec must use live in [`crate::check`]; these conversions give
//! the suggestion in their messages and the names codegen emits.

/// `some_name` / `some-name` -> `SomeName`.
pub(crate) fn to_pascal(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut chars = s.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// `SomeName` / `some-name` -> `some_name`.
pub(crate) fn to_snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_conversions() {
        assert_eq!(to_pascal("volc_tts"), "VolcTts");
        assert_eq!(to_pascal("en-female-1"), "EnFemale1");
        assert_eq!(to_snake("VolcTts"), "volc_tts");
        assert_eq!(to_snake("createPayment"), "create_payment");
        assert_eq!(to_snake("x-api-key"), "x_api_key");
    }
}
