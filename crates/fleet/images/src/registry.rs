//! The registry side: references, credentials, and oci-client's errors turned into ours.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use parking_lot::Mutex;

use crate::auth::Credentials;
use crate::error::chain;
use crate::manifest::{ACCEPT, Descriptor, MAX_MANIFEST};
use crate::{ImageError, ImagesConfig, Platform};

/// A registry that accepts the TCP connection but never answers must not hang a pull.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed between two reads of a response (not for the whole body: layers are large).
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Normalises a reference as Docker does: `busybox` → `docker.io/library/busybox:latest`.
pub fn normalize(image: &str) -> Result<String, ImageError> {
    Ok(parse(image)?.whole())
}

pub(crate) fn parse(image: &str) -> Result<Reference, ImageError> {
    let invalid = |reason: String| ImageError::InvalidReference {
        image: image.to_owned(),
        reason,
    };
    if image.trim().is_empty() {
        return Err(invalid("it is empty".into()));
    }
    let r = Reference::from_str(image).map_err(|e| invalid(e.to_string()))?;
    if let Some(d) = r.digest() {
        crate::manifest::check_digest(d).map_err(invalid)?;
    }
    Ok(r)
}

/// A registry client with the node's credentials; cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    creds: Credentials,
    platform: Platform,
    /// Repositories whose token dance has succeeded once; oci-client renews tokens itself
    /// afterwards, but only the first, explicit `auth` call reports a refusal instead of
    /// silently falling back to anonymous.
    authed: Mutex<HashSet<(String, String)>>,
}

/// A request's context for error messages.
pub(crate) struct Ctx<'a> {
    pub image: &'a str,
    pub reference: &'a Reference,
    pub credentials: &'a str,
}

impl Registry {
    /// A client for the registries `cfg` names, with the credentials of its auth file.
    pub fn new(cfg: &ImagesConfig) -> Result<Registry, ImageError> {
        // reqwest is built without a default TLS provider; installing one twice is harmless.
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let creds = Credentials::load(cfg.auth_file.as_deref())?;
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(cfg.insecure_registries.clone()),
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            // Platforms are picked here, so the error can list the ones an index has.
            platform_resolver: None,
            user_agent: concat!("kantai-images/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| ImageError::Registry {
            image: "-".into(),
            registry: "-".into(),
            message: format!("cannot set up the HTTP client: {}", chain(&e)),
        })?;
        Ok(Registry {
            inner: Arc::new(Inner {
                client,
                creds,
                platform: cfg.platform.clone(),
                authed: Mutex::default(),
            }),
        })
    }

    /// The platform picked from image indexes.
    pub fn platform(&self) -> &Platform {
        &self.inner.platform
    }

    /// The digest (`sha256:…`) the reference points at now (an index's own digest for a
    /// multi-platform image, as Knative records it). A digest reference is returned as is.
    pub async fn resolve(&self, image: &str) -> Result<String, ImageError> {
        let r = parse(image)?;
        if let Some(d) = r.digest() {
            return Ok(d.to_owned());
        }
        let name = r.whole();
        let (auth, credentials) = self.authenticate(&r, &name).await?;
        let ctx = Ctx {
            image: &name,
            reference: &r,
            credentials: &credentials,
        };
        let digest = self
            .inner
            .client
            .fetch_manifest_digest(&r, &auth)
            .await
            .map_err(|e| map_err(&ctx, "manifest", e))?;
        crate::manifest::check_digest(&digest).map_err(|m| ImageError::BadManifest {
            image: name.clone(),
            registry: r.registry().to_owned(),
            message: format!("the registry sent a malformed digest: {m}"),
        })?;
        Ok(digest)
    }

    /// The credentials for `r`'s registry, after the token dance for its repository.
    pub(crate) async fn authenticate(
        &self,
        r: &Reference,
        image: &str,
    ) -> Result<(RegistryAuth, String), ImageError> {
        let (auth, description) = self.inner.creds.for_registry(r.registry());
        let key = (r.resolve_registry().to_owned(), r.repository().to_owned());
        if self.inner.authed.lock().contains(&key) {
            return Ok((auth, description));
        }
        let ctx = Ctx {
            image,
            reference: r,
            credentials: &description,
        };
        self.inner
            .client
            .auth(r, &auth, RegistryOperation::Pull)
            .await
            .map_err(|e| map_err(&ctx, "authentication", e))?;
        self.inner.authed.lock().insert(key);
        Ok((auth, description))
    }

    /// The raw manifest `r` names and its digest (checked against `r`'s digest when it has one).
    pub(crate) async fn manifest(
        &self,
        ctx: &Ctx<'_>,
        auth: &RegistryAuth,
    ) -> Result<(Vec<u8>, String), ImageError> {
        let (body, digest) = self
            .inner
            .client
            .pull_manifest_raw(ctx.reference, auth, ACCEPT)
            .await
            .map_err(|e| map_err(ctx, "manifest", e))?;
        if body.len() > MAX_MANIFEST {
            return Err(ImageError::Limit {
                image: ctx.image.to_owned(),
                registry: ctx.reference.registry().to_owned(),
                message: format!(
                    "its manifest is {} bytes, more than the {MAX_MANIFEST} allowed",
                    body.len()
                ),
            });
        }
        Ok((body.to_vec(), digest))
    }

    /// Opens blob `desc` for streaming; see [`BlobStream`].
    pub(crate) async fn blob<'a>(
        &self,
        ctx: &'a Ctx<'a>,
        what: String,
        desc: &Descriptor,
    ) -> Result<BlobStream<'a>, ImageError> {
        let od = OciDescriptor {
            media_type: desc.media_type.clone(),
            digest: desc.digest.clone(),
            size: desc.size,
            // A manifest's foreign-layer URLs are never followed (the client would fetch
            // them from the node when the registry's blob fails, over plain HTTP too): a
            // registry must not make a node reach addresses of its choosing. containerd
            // does not follow them by default either.
            urls: None,
            annotations: None,
            artifact_type: None,
        };
        let stream = self
            .inner
            .client
            .pull_blob_stream(ctx.reference, &od)
            .await
            .map_err(|e| map_err(ctx, &what, e))?;
        Ok(BlobStream {
            ctx,
            what,
            expected: desc.digest.clone(),
            limit: desc.size.max(0) as u64,
            got: 0,
            stream,
        })
    }
}

/// A blob arriving chunk by chunk: its digest is verified when the stream ends (by oci-client)
/// and no more than the descriptor's size is accepted, so a lying registry cannot fill the disk.
pub(crate) struct BlobStream<'a> {
    ctx: &'a Ctx<'a>,
    what: String,
    expected: String,
    limit: u64,
    got: u64,
    stream: oci_client::client::SizedStream,
}

impl BlobStream<'_> {
    /// The next chunk, `None` at the verified end.
    pub async fn next(&mut self) -> Result<Option<bytes::Bytes>, ImageError> {
        let Some(chunk) = self.stream.next().await else {
            return Ok(None);
        };
        let chunk =
            chunk.map_err(|e| map_err(self.ctx, &self.what, OciDistributionError::IoError(e)))?;
        self.got += chunk.len() as u64;
        if self.got > self.limit {
            return Err(ImageError::DigestMismatch {
                image: self.ctx.image.to_owned(),
                registry: self.ctx.reference.registry().to_owned(),
                what: self.what.clone(),
                expected: self.expected.clone(),
                actual: format!(
                    "a blob longer than the {} bytes the manifest gives as its size",
                    self.limit
                ),
            });
        }
        Ok(Some(chunk))
    }
}

fn digest_error(ctx: &Ctx<'_>, what: &str, e: &DigestError) -> Option<ImageError> {
    match e {
        DigestError::VerificationError { expected, actual } => Some(ImageError::DigestMismatch {
            image: ctx.image.to_owned(),
            registry: ctx.reference.registry().to_owned(),
            what: what.to_owned(),
            expected: expected.clone(),
            actual: actual.clone(),
        }),
        _ => None,
    }
}

/// oci-client's error as one of ours, with what was asked for and what the registry said.
pub(crate) fn map_err(ctx: &Ctx<'_>, what: &str, e: OciDistributionError) -> ImageError {
    let image = ctx.image.to_owned();
    let registry = ctx.reference.registry().to_owned();
    let unauthorized = |message: String| ImageError::Unauthorized {
        image: image.clone(),
        registry: registry.clone(),
        credentials: ctx.credentials.to_owned(),
        message,
    };
    let not_found = |message: String| ImageError::NotFound {
        image: image.clone(),
        registry: registry.clone(),
        message,
    };
    let other = |message: String| ImageError::Registry {
        image: image.clone(),
        registry: registry.clone(),
        message,
    };
    match e {
        OciDistributionError::RegistryError { envelope, url } => {
            let said: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| format!("{:?}: {}", e.code, e.message))
                .collect();
            let message = format!("{what} request {url} answered {}", said.join("; "));
            let code = envelope.errors.first().map(|e| &e.code);
            match code {
                Some(
                    OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::BlobUnknown
                    | OciErrorCode::NotFound,
                ) => not_found(message),
                Some(OciErrorCode::Unauthorized | OciErrorCode::Denied) => unauthorized(message),
                _ => other(message),
            }
        }
        OciDistributionError::ServerError { code, url, message } => {
            let message = format!(
                "{what} request {url} answered HTTP {code}: {}",
                message.trim()
            );
            match code {
                404 => not_found(message),
                401 | 403 => unauthorized(message),
                _ => other(message),
            }
        }
        OciDistributionError::UnauthorizedError { url } => unauthorized(format!(
            "{what} request {url} answered HTTP 401 Unauthorized"
        )),
        OciDistributionError::AuthenticationFailure(reason) => unauthorized(format!(
            "the token service refused the credentials: {}",
            reason.trim()
        )),
        OciDistributionError::RequestError(e) => ImageError::Unreachable {
            image,
            registry,
            message: format!("{what} request failed: {}", chain(&e)),
        },
        OciDistributionError::DigestError(d) => {
            digest_error(ctx, what, &d).unwrap_or_else(|| other(format!("{what}: {d}")))
        }
        OciDistributionError::IoError(io) => {
            if let Some(d) = io.get_ref().and_then(|i| i.downcast_ref::<DigestError>())
                && let Some(e) = digest_error(ctx, what, d)
            {
                return e;
            }
            ImageError::Unreachable {
                image,
                registry,
                message: format!("{what} download failed: {}", chain(&io)),
            }
        }
        e @ (OciDistributionError::ManifestParsingError(_)
        | OciDistributionError::VersionedParsingError(_)
        | OciDistributionError::UnsupportedMediaTypeError(_)
        | OciDistributionError::UnsupportedSchemaVersionError(_)
        | OciDistributionError::ManifestEncodingError(_)) => ImageError::BadManifest {
            image,
            registry,
            message: chain(&e),
        },
        e => other(format!("{what}: {}", chain(&e))),
    }
}
