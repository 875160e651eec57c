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

/// The host of a `registry` (`HOST[:PORT]`, `[IPV6][:PORT]`), without the port.
fn host(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.split(':').next().unwrap_or(registry)
}

/// Whether `registry` is on this machine (127.0.0.0/8, `localhost`, `::1`): plain HTTP is
/// allowed there without `--insecure`.
pub fn is_loopback(registry: &str) -> bool {
    let h = host(registry);
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// `HOST[:PORT]` or `[IPV6][:PORT]`: DNS labels or an address, so that a relative file path
/// such as `./x:1` is never taken for a registry.
fn registry_ok(r: &str) -> bool {
    let port_ok = |p: &str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit());
    let host = if let Some(rest) = r.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        return after.is_empty() || after.strip_prefix(':').is_some_and(port_ok);
    } else {
        match r.split_once(':') {
            Some((h, p)) if port_ok(p) => h,
            Some(_) => return false,
            None => r,
        }
    };
    !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

/// Splits `REGISTRY/REPO[:TAG]` (no digest), checking each part; `how` ends every message.
fn split(s: &str, how: &str) -> Result<(String, String, Option<String>), String> {
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
    if !registry_ok(registry) {
        return Err(format!(
            "{s:?}: {registry:?} is not a registry host name or address; {how}"
        ));
    }
    let (repository, tag) = match rest.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, Some(t)),
        _ => (rest, None),
    };
    if let Some(tag) = tag {
        if !tag_ok(tag) {
            return Err(format!(
                "{s:?}: tag {tag:?} is not valid (letters, digits, _ . -; at most 128; not starting with . or -)"
            ));
        }
    }
    if repository.is_empty() || !repository.split('/').all(repo_component_ok) {
        return Err(format!(
            "{s:?}: repository {repository:?} is not valid (lowercase letters, digits and . _ - between /)"
        ));
    }
    Ok((registry.into(), repository.into(), tag.map(String::from)))
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
        let (registry, repository, tag) = split(s, how)?;
        let tag = tag.ok_or_else(|| {
            format!("{s:?} has no tag; tags are immutable releases and Kiln never invents `latest`: {how}")
        })?;
        Ok(ImageRef {
            registry,
            repository,
            tag,
        })
    }

    /// The host without the port.
    pub fn host(&self) -> &str {
        host(&self.registry)
    }

    /// Whether the registry is on this machine (see [`is_loopback`]).
    pub fn is_loopback(&self) -> bool {
        is_loopback(&self.registry)
    }

    /// The same repository with the manifest digest instead of the tag: `REGISTRY/REPO@DIGEST`.
    pub fn pinned(&self, digest: &str) -> String {
        format!("{}/{}@{}", self.registry, self.repository, digest)
    }
}

/// A reference to pull: `REGISTRY/REPO:TAG`, `REGISTRY/REPO@sha256:HEX`, or both
/// (`REGISTRY/REPO:TAG@sha256:HEX`, where the digest decides and the tag is only a name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRef {
    /// Host and optional port.
    pub registry: String,
    /// Repository path.
    pub repository: String,
    /// The tag, if given.
    pub tag: Option<String>,
    /// The manifest digest (`sha256:` and 64 lowercase hex digits), if given.
    pub digest: Option<String>,
}

impl fmt::Display for PullRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Whether `d` is `sha256:` and 64 lowercase hex digits.
pub fn digest_ok(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

impl PullRef {
    /// Parses a reference to pull, explaining what is wrong.
    pub fn parse(s: &str) -> Result<PullRef, String> {
        let how = "expected REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:DIGEST, e.g. ghcr.io/you/app:1.0.0";
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (s, None),
        };
        if let Some(d) = digest {
            if !digest_ok(d) {
                return Err(format!(
                    "{s:?}: digest {d:?} is not sha256: followed by 64 lowercase hex digits; {how}"
                ));
            }
        }
        let (registry, repository, tag) = split(name, how)?;
        if tag.is_none() && digest.is_none() {
            return Err(format!(
                "{s:?} has no tag or digest; Kiln never invents `latest`: {how}"
            ));
        }
        Ok(PullRef {
            registry,
            repository,
            tag,
            digest: digest.map(String::from),
        })
    }

    /// Whether the registry is on this machine (see [`ImageRef::is_loopback`]).
    pub fn is_loopback(&self) -> bool {
        is_loopback(&self.registry)
    }

    /// `REGISTRY/REPO@DIGEST`: what a run of this reference is pinned to.
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
            ("./x:1", "not a registry host name"),
            ("a..b/x:1", "not a registry host name"),
            ("a.b:port/x:1", "not a registry host name"),
        ] {
            let e = ImageRef::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn parses_pull_references() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let r = PullRef::parse("127.0.0.1:5000/kiln/hello:1.0.0").unwrap();
        assert_eq!(
            (r.tag.as_deref(), r.digest.as_deref()),
            (Some("1.0.0"), None)
        );
        let s = format!("127.0.0.1:5000/kiln/hello@{d}");
        let r = PullRef::parse(&s).unwrap();
        assert_eq!(
            (r.tag.as_deref(), r.digest.as_deref()),
            (None, Some(&d[..]))
        );
        assert_eq!(r.to_string(), s);
        assert_eq!(r.pinned(&d), s);
        let s = format!("[::1]:5000/app:2@{d}");
        let r = PullRef::parse(&s).unwrap();
        assert_eq!(
            (r.registry.as_str(), r.tag.as_deref()),
            ("[::1]:5000", Some("2"))
        );
        assert!(r.is_loopback());
        assert_eq!(r.to_string(), s);
        for (bad, why) in [
            ("ghcr.io/you/app", "never invents `latest`"),
            ("ghcr.io/you/app@sha256:abcd", "64 lowercase hex"),
            ("ghcr.io/you/app@md5:00", "64 lowercase hex"),
            ("you/app:1", "Docker Hub"),
            ("target/kiln/images/hello.elf", "Docker Hub"),
            ("hello.elf", "no registry"),
            ("./hello:1", "not a registry host name"),
        ] {
            let e = PullRef::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
