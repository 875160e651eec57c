//! Talking to a registry with `oci-client` (a [`Session`]): TLS by default (plain HTTP only
//! for loopback registries or with `--insecure`), basic credentials or the registry's
//! bearer-token flow; pushing with immutable tags, and fetching manifests and blobs for
//! [`super::pull`].
//!
//! Credentials, first found wins: `--username`/`--password`; `KILN_REGISTRY_USERNAME` and
//! `KILN_REGISTRY_PASSWORD`; the registry's entry in Docker's `config.json`
//! (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, `auths.REGISTRY.auth`); anonymous.
//!
//! Order: check the tag does not exist (unless `force`), upload the blobs, then put the
//! manifest under the tag. The tag appears only with that last request, so a push that fails
//! part-way leaves no tag (only unreferenced blobs, which the registry's garbage collector
//! removes).

use super::{Artifact, ImageRef, MEDIA_MANIFEST};
use anyhow::{anyhow, bail};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use std::path::PathBuf;
use std::time::Duration;

/// Username and password for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <hidden>)", self.username)
    }
}

/// How to push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Allow plain HTTP to a non-loopback registry.
    pub insecure: bool,
    /// Replace an existing tag.
    pub force: bool,
    /// Credentials from the command line, if any.
    pub credentials: Option<Credentials>,
}

/// Decodes standard base64 (Docker's `auth` field).
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.trim().bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Credentials for `registry` from a Docker `config.json` text.
pub fn docker_config_credentials(config: &str, registry: &str) -> Option<Credentials> {
    let v: serde_json::Value = serde_json::from_str(config).ok()?;
    let auths = v.get("auths")?.as_object()?;
    let entry = auths.iter().find_map(|(k, e)| {
        let k = k
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .trim_end_matches("/v1")
            .trim_end_matches("/v2");
        (k == registry).then_some(e)
    })?;
    if let (Some(u), Some(p)) = (entry.get("username"), entry.get("password")) {
        return Some(Credentials {
            username: u.as_str()?.into(),
            password: p.as_str()?.into(),
        });
    }
    let decoded = String::from_utf8(base64_decode(entry.get("auth")?.as_str()?)?).ok()?;
    let (u, p) = decoded.split_once(':')?;
    Some(Credentials {
        username: u.into(),
        password: p.into(),
    })
}

/// Resolves the credentials for `registry` (see the module docs for the order).
pub fn credentials(registry: &str, given: Option<&Credentials>) -> Option<Credentials> {
    if let Some(c) = given {
        return Some(c.clone());
    }
    if let (Ok(u), Ok(p)) = (
        std::env::var("KILN_REGISTRY_USERNAME"),
        std::env::var("KILN_REGISTRY_PASSWORD"),
    ) {
        return Some(Credentials {
            username: u,
            password: p,
        });
    }
    let path = match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => PathBuf::from(d).join("config.json"),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".docker/config.json"),
    };
    docker_config_credentials(&std::fs::read_to_string(path).ok()?, registry)
}

/// Turns a client error into a message that says what happened, where, and how to fix it.
fn explain(e: &OciDistributionError, s: &Session, during: &str) -> anyhow::Error {
    let scheme = s.scheme;
    let url = format!("{scheme}://{}", s.registry);
    let auth_hint = "pass --username and --password (or set KILN_REGISTRY_USERNAME and KILN_REGISTRY_PASSWORD, or `docker login`)";
    let text = format!("{e}");
    let lower = text.to_lowercase();
    let denied = matches!(
        e,
        OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_)
    ) || matches!(
        e,
        OciDistributionError::ServerError {
            code: 401 | 403,
            ..
        }
    ) || lower.contains("unauthorized")
        || lower.contains("denied");
    if denied {
        return anyhow!(
            "the registry {url} refused access to {} while {during} (authentication failed: wrong or missing credentials); {auth_hint}",
            s.repository
        );
    }
    if let OciDistributionError::RequestError(re) = e {
        let mut chain = String::new();
        let mut src: Option<&dyn std::error::Error> = Some(re);
        while let Some(s) = src {
            chain.push_str(&format!(": {s}"));
            src = s.source();
        }
        if re.is_connect() || re.is_timeout() {
            let tls = chain.to_lowercase().contains("tls") || chain.contains("certificate");
            let hint = if tls && scheme == "https" {
                "the registry does not speak TLS there; if it is a plain-HTTP registry you trust, pass --insecure"
            } else {
                "is it running, and is the address right?"
            };
            return anyhow!("could not reach the registry at {url} while {during}{chain}; {hint}");
        }
        return anyhow!("request to the registry at {url} failed while {during}{chain}");
    }
    anyhow!("the registry at {url} failed while {during}: {text}")
}

/// Whether the registry answered that the manifest (tag or digest) does not exist.
pub fn not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code: 404, .. } => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().all(|x| {
            matches!(
                x.code,
                oci_client::errors::OciErrorCode::ManifestUnknown
                    | oci_client::errors::OciErrorCode::NameUnknown
            )
        }),
        _ => false,
    }
}

/// One repository of one registry: the client, the credentials and a runtime to block on.
pub struct Session {
    client: Client,
    auth: RegistryAuth,
    rt: tokio::runtime::Runtime,
    registry: String,
    repository: String,
    scheme: &'static str,
}

impl Session {
    /// Prepares requests to `registry`/`repository` (nothing is sent yet): plain HTTP to a
    /// loopback registry or with `insecure`, else TLS; `given` credentials first, then
    /// [`credentials`]' other sources.
    pub fn open(
        registry: &str,
        repository: &str,
        insecure: bool,
        given: Option<&Credentials>,
    ) -> anyhow::Result<Session> {
        let plain = insecure || super::reference::is_loopback(registry);
        let config = ClientConfig {
            protocol: if plain {
                ClientProtocol::HttpsExcept(vec![registry.to_string()])
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(300)),
            ..ClientConfig::default()
        };
        let auth = match credentials(registry, given) {
            Some(c) => RegistryAuth::Basic(c.username, c.password),
            None => RegistryAuth::Anonymous,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow!("could not start the network runtime: {e}"))?;
        Ok(Session {
            client: Client::new(config),
            auth,
            rt,
            registry: registry.into(),
            repository: repository.into(),
            scheme: if plain { "http" } else { "https" },
        })
    }

    /// The client's reference for a tag or a digest (`sha256:...`).
    fn reference(&self, tag_or_digest: &str) -> Reference {
        let (r, repo) = (self.registry.clone(), self.repository.clone());
        if tag_or_digest.contains(':') {
            Reference::with_digest(r, repo, tag_or_digest.into())
        } else {
            Reference::with_tag(r, repo, tag_or_digest.into())
        }
    }

    /// The manifest's bytes for a tag or digest (`accept`: the media types asked for), or
    /// `None` when the registry has no such manifest.
    pub fn manifest(
        &self,
        tag_or_digest: &str,
        accept: &[&str],
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let reference = self.reference(tag_or_digest);
        self.rt.block_on(async {
            self.client
                .auth(&reference, &self.auth, RegistryOperation::Pull)
                .await
                .map_err(|e| explain(&e, self, "authenticating"))?;
            match self.client.pull_manifest_raw(&reference, &self.auth, accept).await {
                Ok((bytes, _)) => Ok(Some(bytes.to_vec())),
                Err(e) if not_found(&e) => Ok(None),
                // The client checks a digest reference itself; report what came back.
                Err(OciDistributionError::DigestError(e)) => bail!(
                    "the registry at {}://{} sent a manifest that does not match {tag_or_digest} ({e}); refusing it",
                    self.scheme,
                    self.registry
                ),
                Err(e) => Err(explain(&e, self, "fetching the manifest")),
            }
        })
    }

    /// Streams the blob `digest` into `sink`, chunk by chunk. The client also checks the
    /// digest at the end and fails the stream when it differs; callers hash for themselves.
    pub fn blob(
        &self,
        digest: &str,
        sink: &mut dyn FnMut(&[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        use futures_util::StreamExt;
        let reference = self.reference(digest);
        self.rt.block_on(async {
            let mut stream = self
                .client
                .pull_blob_stream(&reference, digest)
                .await
                .map_err(|e| explain(&e, self, &format!("fetching blob {digest}")))?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| {
                    anyhow!(
                        "the download of blob {digest} from {}://{} failed: {e}",
                        self.scheme,
                        self.registry
                    )
                })?;
                sink(&chunk)?;
            }
            Ok(())
        })
    }
}

/// Pushes `artifact` to `r` and returns the manifest digest.
pub fn push(r: &ImageRef, artifact: &Artifact, opts: &PushOptions) -> anyhow::Result<String> {
    let creds = opts.credentials.as_ref();
    let s = Session::open(&r.registry, &r.repository, opts.insecure, creds)?;
    let reference = s.reference(&r.tag);
    let (client, auth) = (&s.client, &s.auth);
    s.rt.block_on(async {
        client
            .auth(&reference, auth, RegistryOperation::Push)
            .await
            .map_err(|e| explain(&e, &s, "authenticating"))?;
        match client.fetch_manifest_digest(&reference, auth).await {
            Ok(existing) if !opts.force => bail!(
                "{r} already exists (manifest {existing}); tags are immutable releases, so publish refuses to overwrite it: choose a new tag, or pass --force to replace it"
            ),
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(explain(&e, &s, "checking whether the tag exists")),
        }
        for blob in artifact.layers.iter().chain(std::iter::once(&artifact.config)) {
            let digest = blob.digest();
            let exists = client
                .blob_exists(&reference, &digest)
                .await
                .map_err(|e| explain(&e, &s, "checking blobs"))?;
            if !exists {
                client
                    .push_blob(&reference, blob.data.clone(), &digest)
                    .await
                    .map_err(|e| explain(&e, &s, &format!("uploading blob {digest}")))?;
            }
        }
        client
            .push_manifest_raw(
                &reference,
                artifact.manifest.clone(),
                MEDIA_MANIFEST.parse().expect("a valid header value"),
            )
            .await
            .map_err(|e| explain(&e, &s, "putting the manifest"))?;
        Ok(artifact.digest())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_docker_config() {
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert!(base64_decode("!!").is_none());
        let cfg = r#"{"auths":{"https://ghcr.io":{"auth":"dXNlcjpwYXNz"},"127.0.0.1:5000":{"username":"a","password":"b"}}}"#;
        let c = docker_config_credentials(cfg, "ghcr.io").unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("user", "pass"));
        let c = docker_config_credentials(cfg, "127.0.0.1:5000").unwrap();
        assert_eq!(c.username, "a");
        assert!(docker_config_credentials(cfg, "quay.io").is_none());
        assert!(!format!("{c:?}").contains('b'));
    }

    #[test]
    fn a_registry_that_is_down_is_a_clear_error() {
        // Bind then drop a listener: nothing listens on the port afterwards.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = ImageRef::parse(&format!("127.0.0.1:{port}/kiln/x:1")).unwrap();
        let a =
            super::super::kiln_artifact(b"\x7fELF", &crate::provenance::tests::sample()).unwrap();
        let e = push(&r, &a, &PushOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("could not reach the registry at http://127.0.0.1:"),
            "{e}"
        );
        assert!(e.contains("is it running"), "{e}");
    }
}
