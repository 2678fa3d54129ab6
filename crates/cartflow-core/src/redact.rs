//! Credentials out of what is printed: a URL's password (Redis, PostgreSQL,
//! Kafka, an MLflow server) never reaches a log line, an error body or
//! `/status`.

/// `scheme://user:secret@host/…` → `scheme://user:***@host/…`; a URL
/// without a password comes back as it was.
pub fn url(url: &str) -> String {
    let Some(scheme) = url.find("://") else { return url.to_owned() };
    let rest = &url[scheme + 3..];
    // The authority ends at the first '/', '?' or '#'; its userinfo at its last '@'.
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let Some(at) = authority.rfind('@') else { return url.to_owned() };
    match authority[..at].split_once(':') {
        Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &rest[at..]),
        None => url.to_owned(),
    }
}

/// Every URL-looking word of `text` with its password hidden (for error
/// messages of libraries that quote the URL they were given).
pub fn text(text: &str) -> String {
    text.split_inclusive(char::is_whitespace)
        .map(|word| if word.contains("://") && word.contains('@') { url(word) } else { word.to_owned() })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_hidden_and_nothing_else_changes() {
        assert_eq!(super::url("redis://:s3cret@127.0.0.1:6379/0"), "redis://:***@127.0.0.1:6379/0");
        assert_eq!(
            super::url("postgres://app:p@ss@db:5432/x?sslmode=require"),
            "postgres://app:***@db:5432/x?sslmode=require"
        );
        assert_eq!(super::url("postgres://postgres@127.0.0.1/shop"), "postgres://postgres@127.0.0.1/shop");
        assert_eq!(super::url("http://127.0.0.1:5001/a@b"), "http://127.0.0.1:5001/a@b");
        assert_eq!(super::url("embedded"), "embedded");
        assert_eq!(super::text("redis at rediss://u:pw@h:1/0: refused"), "redis at rediss://u:***@h:1/0: refused");
    }
}
