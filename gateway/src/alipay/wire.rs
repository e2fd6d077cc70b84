//! Alipay's OpenAPI wire format: the signed parameter string, the signed span of a JSON answer,
//! and the form-encoded notify.

use std::collections::BTreeMap;

/// The string Alipay signs: parameters sorted by name, `sign` (and for notifies `sign_type`)
/// left out, empty values left out, joined as `k=v&k=v` with values as they are (not
/// URL-encoded).
pub fn sign_content(params: &BTreeMap<String, String>, excluded: &[&str]) -> String {
    let mut content = String::new();
    for (key, value) in params {
        if excluded.contains(&key.as_str()) || value.is_empty() {
            continue;
        }
        if !content.is_empty() {
            content.push('&');
        }
        content.push_str(key);
        content.push('=');
        content.push_str(value);
    }
    content
}

/// The raw text of the JSON object under `"<key>"` in `body`: Alipay signs exactly those bytes
/// of its answer, so they are verified before any parsing. Strings (with escapes) are skipped
/// while counting braces.
pub fn object_span<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    let quoted = format!("\"{key}\"");
    let after_key = body.find(&quoted)? + quoted.len();
    let rest = &body[after_key..];
    let colon = rest.find(':')?;
    if !rest[..colon].trim().is_empty() {
        return None;
    }
    let value = &rest[colon + 1..];
    let start = value.find('{')?;
    if !value[..start].trim().is_empty() {
        return None;
    }
    let bytes = value.as_bytes();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (index, &byte) in bytes.iter().enumerate().skip(start) {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&value[start..=index]);
                }
            }
            _ => {}
        }
    }
    None
}

/// Decodes an `application/x-www-form-urlencoded` body. A repeated name keeps its first value.
pub fn parse_form(body: &[u8]) -> Option<BTreeMap<String, String>> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
    let mut params = BTreeMap::new();
    for (key, value) in pairs {
        params.entry(key).or_insert(value);
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_content_sorts_and_skips() {
        let params: BTreeMap<String, String> = [
            ("sign", "xx"),
            ("b", "2"),
            ("a", "1"),
            ("empty", ""),
            ("sign_type", "RSA2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(sign_content(&params, &["sign"]), "a=1&b=2&sign_type=RSA2");
        assert_eq!(sign_content(&params, &["sign", "sign_type"]), "a=1&b=2");
    }

    #[test]
    fn object_span_finds_the_signed_bytes() {
        let body = r#"{"alipay_trade_query_response":{"code":"10000","msg":"a}\"{b","n":{"x":1}},"sign":"abc"}"#;
        assert_eq!(
            object_span(body, "alipay_trade_query_response"),
            Some(r#"{"code":"10000","msg":"a}\"{b","n":{"x":1}}"#)
        );
        assert_eq!(object_span(body, "missing"), None);
        assert_eq!(object_span(r#"{"k":{"unterminated""#, "k"), None);
        assert_eq!(object_span(r#"{"k":"text"}"#, "k"), None);
    }
}
