//! Escaping for server-rendered pages. Every value that came from outside
//! (a tag, a run name, a model's source) goes through [`text`] in element
//! content and through [`attr`] inside a quoted attribute; no attribute is
//! ever written unquoted.

/// Text for element content or a quoted attribute value.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `name="value"`, escaped: the only way pages here write an attribute.
pub fn attr(name: &str, value: &str) -> String {
    format!("{name}=\"{}\"", text(value))
}

/// A path segment or query value, percent-encoded (RFC 3986 unreserved characters kept).
pub fn url_part(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_stay_values() {
        assert_eq!(attr("href", "x autofocus onfocus=alert(1)"), "href=\"x autofocus onfocus=alert(1)\"");
        assert_eq!(attr("title", "\" onmouseover=\"x"), "title=\"&quot; onmouseover=&quot;x\"");
        assert_eq!(text("<script>"), "&lt;script&gt;");
        assert_eq!(url_part("a b/c?"), "a%20b%2Fc%3F");
    }
}
