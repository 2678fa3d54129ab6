//! The admin token of a data directory: made once, on first start, readable
//! by its owner only, and printed only that first time.

use std::path::{Path, PathBuf};

/// The data directory's admin token, and whether this start made it.
#[derive(Clone)]
pub struct AdminToken {
    pub token: String,
    pub created: bool,
    pub path: PathBuf,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken").field("path", &self.path).field("created", &self.created).finish()
    }
}

impl AdminToken {
    /// Reads the admin token of `data_dir`, creating it on first use.
    pub fn of(data_dir: &Path) -> std::io::Result<AdminToken> {
        let path = data_dir.join("auth").join("token");
        if let Ok(token) = std::fs::read_to_string(&path) {
            return Ok(AdminToken { token: token.trim().to_owned(), created: false, path });
        }
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(format!("no randomness for a token: {e}")))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::create_dir_all(path.parent().expect("token path has a parent"))?;
        write_private(&path, &token).map_err(|e| {
            std::io::Error::new(e.kind(), format!("writing the admin token to {}: {e}", path.display()))
        })?;
        Ok(AdminToken { token, created: true, path })
    }

    /// The token itself the first time (nobody has seen it yet), else where it is kept:
    /// a secret is not printed on every start.
    pub fn shown(&self) -> String {
        if self.created {
            format!("{} (new; kept in {})", self.token, self.path.display())
        } else {
            format!("in {} (printed once, when it was made)", self.path.display())
        }
    }

    /// The token, or the shell that reads it, for commands a person copies.
    pub fn for_shell(&self) -> String {
        if self.created { self.token.clone() } else { format!("$(cat {})", self.path.display()) }
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_private_and_not_shown_again() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = AdminToken::of(dir.path()).unwrap();
        assert!(first.created && first.token.len() == 48);
        assert_eq!(std::fs::metadata(&first.path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = AdminToken::of(dir.path()).unwrap();
        assert_eq!((again.created, &again.token), (false, &first.token));
        assert!(!again.shown().contains(&first.token), "a known token is not printed again");
        assert!(!format!("{again:?}").contains(&first.token), "nor in Debug");
    }
}
