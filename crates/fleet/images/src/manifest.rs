//! Manifests and indexes, parsed leniently enough for what registries and tools really send
//! (umoci writes no `mediaType`) and strictly enough that nothing unrunnable gets through.

use serde::Deserialize;

use crate::Platform;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// What a pull accepts, most preferred first; schema 1 is not asked for (it cannot be run).
pub(crate) const ACCEPT: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// Docker caps images at 127 layers (overlayfs' lowerdir option runs out of room near there).
pub(crate) const MAX_LAYERS: usize = 128;
/// A manifest or index larger than this is not one (distribution itself refuses above 4 MiB).
pub(crate) const MAX_MANIFEST: usize = 4 << 20;
/// Image configs are a few KiB; a larger one is refused before download.
pub(crate) const MAX_CONFIG: u64 = 8 << 20;

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

/// A content descriptor.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default)]
    pub platform: Option<PlatformJson>,
}

/// An index entry's platform.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct PlatformJson {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    manifests: Option<Vec<Descriptor>>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
}

/// A layer to fetch: its descriptor and how to decompress it.
#[derive(Clone, Debug)]
pub(crate) struct Layer {
    pub desc: Descriptor,
    pub compression: Compression,
}

/// A single-platform image manifest, checked.
#[derive(Clone, Debug)]
pub(crate) struct ImageManifest {
    pub config: Descriptor,
    pub layers: Vec<Layer>,
}

/// What a manifest request returned.
pub(crate) enum Parsed {
    Index(Vec<Descriptor>),
    Image(ImageManifest),
}

/// `sha256:` and 64 lowercase hex digits (or sha512 and 128): digests become directory names,
/// so nothing else may pass.
pub(crate) fn check_digest(d: &str) -> Result<(), String> {
    let ok = match d.split_once(':') {
        Some(("sha256", hex)) => hex.len() == 64,
        Some(("sha512", hex)) => hex.len() == 128,
        _ => false,
    } && d.split_once(':').is_some_and(|(_, h)| {
        h.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(format!("{d:?} is not a sha256 or sha512 digest"))
    }
}

fn compression(media_type: &str) -> Option<Compression> {
    Some(match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Compression::None,
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Compression::Zstd,
        _ => return None,
    })
}

/// Parses a manifest or index; the error says what is wrong in operator terms.
pub(crate) fn parse(body: &[u8]) -> Result<Parsed, String> {
    if body.len() > MAX_MANIFEST {
        return Err(format!(
            "it is {} bytes, more than the {MAX_MANIFEST} allowed",
            body.len()
        ));
    }
    let raw: Raw =
        serde_json::from_slice(body).map_err(|e| format!("it is not a valid manifest: {e}"))?;
    match raw.schema_version {
        Some(2) => {}
        Some(v) => {
            return Err(format!(
                "schema version {v} is not supported (only 2; schema 1 images must be re-pushed)"
            ));
        }
        None => return Err("it has no schemaVersion".into()),
    }
    let is_index = match raw.media_type.as_deref() {
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) => {
            return Err(format!(
                "media type {other} is not an image manifest or index"
            ));
        }
        None => raw.manifests.is_some(),
    };
    if is_index {
        let manifests = raw.manifests.ok_or("the index has no `manifests` list")?;
        for m in &manifests {
            check_digest(&m.digest)?;
        }
        return Ok(Parsed::Index(manifests));
    }
    let config = raw.config.ok_or("the manifest has no `config`")?;
    check_digest(&config.digest)?;
    match config.media_type.as_str() {
        "application/vnd.oci.image.config.v1+json"
        | "application/vnd.docker.container.image.v1+json"
        | "" => {}
        other => {
            return Err(format!(
                "its config has media type {other}: it is not a container image"
            ));
        }
    }
    if config.size < 0 || config.size as u64 > MAX_CONFIG {
        return Err(format!(
            "its config is {} bytes; at most {MAX_CONFIG} are allowed",
            config.size
        ));
    }
    let descs = raw.layers.unwrap_or_default();
    if descs.len() > MAX_LAYERS {
        return Err(format!(
            "it has {} layers; at most {MAX_LAYERS} are allowed",
            descs.len()
        ));
    }
    let mut layers = Vec::with_capacity(descs.len());
    for (i, desc) in descs.into_iter().enumerate() {
        check_digest(&desc.digest)?;
        if desc.size < 0 {
            return Err(format!("layer {i} ({}) has a negative size", desc.digest));
        }
        let compression = compression(&desc.media_type).ok_or_else(|| {
            format!(
                "layer {i} ({}) has media type {:?}, which is not a tar layer kantai can unpack",
                desc.digest, desc.media_type
            )
        })?;
        layers.push(Layer { desc, compression });
    }
    Ok(Parsed::Image(ImageManifest { config, layers }))
}

fn matches(p: &PlatformJson, want: &Platform) -> bool {
    if p.os != want.os || p.architecture != want.architecture {
        return false;
    }
    let norm = |v: Option<&str>| match (want.architecture.as_str(), v) {
        // arm64 images are tagged `v8` or nothing interchangeably.
        ("arm64", Some("v8")) => None,
        (_, v) => v.map(str::to_owned),
    };
    match &want.variant {
        None => true,
        Some(v) => norm(Some(v)) == norm(p.variant.as_deref()),
    }
}

fn describe(p: &PlatformJson) -> String {
    match &p.variant {
        Some(v) if !v.is_empty() => format!("{}/{}/{v}", p.os, p.architecture),
        _ => format!("{}/{}", p.os, p.architecture),
    }
}

/// The index entry for `want`, or the list of platforms the index has.
pub(crate) fn select<'a>(
    manifests: &'a [Descriptor],
    want: &Platform,
) -> Result<&'a Descriptor, String> {
    let found = manifests
        .iter()
        .find(|m| m.platform.as_ref().is_some_and(|p| matches(p, want)));
    found.ok_or_else(|| {
        let names: Vec<String> = manifests
            .iter()
            .filter_map(|m| m.platform.as_ref())
            .filter(|p| p.os != "unknown")
            .map(describe)
            .collect();
        if names.is_empty() {
            "no platforms".to_owned()
        } else {
            names.join(", ")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn a_manifest_without_media_type_is_told_by_its_fields() {
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"{D}","size":3}}]}}"#
        );
        let Ok(Parsed::Image(m)) = parse(m.as_bytes()) else {
            panic!("not an image manifest")
        };
        assert_eq!(m.layers[0].compression, Compression::Zstd);
    }

    #[test]
    fn schema_1_and_foreign_artifacts_are_refused() {
        let e = parse(br#"{"schemaVersion":1,"fsLayers":[]}"#)
            .err()
            .unwrap();
        assert!(e.contains("schema version 1"), "{e}");
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"{D}","size":2}},"layers":[]}}"#
        );
        assert!(
            parse(m.as_bytes())
                .err()
                .unwrap()
                .contains("not a container image")
        );
    }

    #[test]
    fn digests_that_are_not_hex_are_refused() {
        assert!(check_digest("sha256:../../etc").is_err());
        assert!(check_digest(D).is_ok());
    }

    #[test]
    fn platform_selection_lists_what_is_there() {
        let entry = |arch: &str, variant: Option<&str>| Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: D.into(),
            size: 1,
            platform: Some(PlatformJson {
                os: "linux".into(),
                architecture: arch.into(),
                variant: variant.map(Into::into),
            }),
        };
        let idx = vec![entry("arm", Some("v7")), entry("arm64", Some("v8"))];
        let want = |a: &str, v: Option<&str>| Platform {
            os: "linux".into(),
            architecture: a.into(),
            variant: v.map(Into::into),
        };
        assert!(select(&idx, &want("arm64", None)).is_ok());
        assert!(select(&idx, &want("arm", Some("v7"))).is_ok());
        assert_eq!(
            select(&idx, &want("amd64", None)).err().unwrap(),
            "linux/arm/v7, linux/arm64/v8"
        );
    }
}
