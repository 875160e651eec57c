//! `REGISTRY/REPO:TAG` references. The registry and the tag are both required: Kiln never
//! assumes Docker Hub and never invents `latest`.

use std::fmt;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Host and optional port: `ghcr.io`, `127.0.0.1:5000`, `[::1]:5000`.
    pub registry: String,
    /// Repository path: `you/app`.
    pub repository: String,
    /// The tag.
    pub tag: String,
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.registry, self.repository, self.tag)
    }
}

fn repo_component_ok(c: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    c.chars()
        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-'))
}

fn tag_ok(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl ImageRef {
    /// Parses `REGISTRY/REPO:TAG`, explaining what is wrong.
    pub fn parse(s: &str) -> Result<ImageRef, String> {
        let how =
            "expected REGISTRY/REPOSITORY:TAG, e.g. ghcr.io/you/app:1.0.0 or 127.0.0.1:5000/app:1";
        if s.contains('@') {
            return Err(format!(
                "{s:?}: a digest reference cannot be pushed to; {how}"
            ));
        }
        let (registry, rest) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} names no registry; {how}"))?;
        let looks_like_host = registry.contains('.')
            || registry.contains(':')
            || registry == "localhost"
            || registry.starts_with('[');
        if !looks_like_host {
            return Err(format!(
                "{s:?}: {registry:?} is not a registry host (Kiln does not assume Docker Hub: write docker.io/{s} for it); {how}"
            ));
        }
        let (repository, tag) = match rest.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, t),
            _ => {
                return Err(format!(
                    "{s:?} has no tag; tags are immutable releases and Kiln never invents `latest`: {how}"
                ))
            }
        };
        if !tag_ok(tag) {
            return Err(format!(
                "{s:?}: tag {tag:?} is not valid (letters, digits, _ . -; at most 128; not starting with . or -)"
            ));
        }
        if repository.is_empty() || !repository.split('/').all(repo_component_ok) {
            return Err(format!(
                "{s:?}: repository {repository:?} is not valid (lowercase letters, digits and . _ - between /)"
            ));
        }
        Ok(ImageRef {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.to_string(),
        })
    }

    /// The host without the port.
    pub fn host(&self) -> &str {
        if let Some(rest) = self.registry.strip_prefix('[') {
            return rest.split(']').next().unwrap_or(rest);
        }
        self.registry.split(':').next().unwrap_or(&self.registry)
    }

    /// Whether the registry is on this machine (127.0.0.0/8, `localhost`, `::1`): plain HTTP
    /// is allowed there without `--insecure`.
    pub fn is_loopback(&self) -> bool {
        let h = self.host();
        h == "localhost"
            || h.parse::<std::net::IpAddr>()
                .map(|ip| ip.is_loopback())
                .unwrap_or(false)
    }

    /// The same repository with the manifest digest instead of the tag: `REGISTRY/REPO@DIGEST`.
    pub fn pinned(&self, digest: &str) -> String {
        format!("{}/{}@{}", self.registry, self.repository, digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r = ImageRef::parse("127.0.0.1:5000/kiln/hello:1.0.0").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "kiln/hello");
        assert_eq!(r.tag, "1.0.0");
        assert_eq!(r.host(), "127.0.0.1");
        assert!(r.is_loopback());
        assert_eq!(r.to_string(), "127.0.0.1:5000/kiln/hello:1.0.0");
        assert_eq!(r.pinned("sha256:ab"), "127.0.0.1:5000/kiln/hello@sha256:ab");
        let r = ImageRef::parse("ghcr.io/you/app:v2").unwrap();
        assert!(!r.is_loopback());
        assert!(ImageRef::parse("localhost/app:1").unwrap().is_loopback());
        assert!(ImageRef::parse("[::1]:5000/app:1").unwrap().is_loopback());
        assert_eq!(ImageRef::parse("[::1]:5000/app:1").unwrap().host(), "::1");
    }

    #[test]
    fn refuses_what_would_be_guessed() {
        for (bad, why) in [
            ("ghcr.io/you/app", "never invents `latest`"),
            ("127.0.0.1:5000/app", "no tag"),
            ("you/app:1", "Docker Hub"),
            ("app:1", "no registry"),
            ("ghcr.io/you/app@sha256:abcd", "digest"),
            ("ghcr.io/You/app:1", "repository"),
            ("ghcr.io/you/app:-x", "tag"),
            ("ghcr.io/:1", "repository"),
        ] {
            let e = ImageRef::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
