//! Paths as both sides spell them.

use alloc::string::String;
use alloc::vec::Vec;

/// `path` as an absolute path without `.`, `..` (never above the root) and repeated
/// slashes: `./www/../etc//x` is `/etc/x`, an empty path `/`.
pub fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn dots_and_slashes_go() {
        assert_eq!(normalise("/./config.toml"), "/config.toml");
        assert_eq!(normalise("./www/../etc//x"), "/etc/x");
        assert_eq!(normalise("../../x"), "/x");
        assert_eq!(normalise(""), "/");
    }
}
