//! What a revision's container takes from Secrets and ConfigMaps, resolved: the control
//! plane computes a [`ResolvedConfig`] from the stored objects and ships it to the nodes
//! that run the revision; their runtimes turn it into env and files.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A revision's Secret and ConfigMap references, resolved. Its `Debug` hides every value:
/// secrets must never reach a log.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedConfig {
    /// `envFrom` variables, in order, with their prefixes; keys that are not valid variable
    /// names are left out (and named in `skipped`), as the kubelet does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<(String, String)>,
    /// The values of `env[i].valueFrom.secretKeyRef` / `configMapKeyRef`, by the entry's
    /// index in the container's `env`. An optional reference whose object or key is missing
    /// has no entry: the variable is not set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_values: BTreeMap<usize, String>,
    /// The files of each `secret`, `configMap` and `projected` volume, by volume name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Vec<VolumeFile>>,
    /// `envFrom` keys left out because they are not valid variable names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// What a required reference lacks, in Kubernetes' words (`secret "db" not found`,
    /// `couldn't find key password in Secret default/db`). An instance cannot start while
    /// this is not empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

impl std::fmt::Debug for ResolvedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedConfig")
            .field(
                "env_from",
                &self.env_from.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("env_values", &self.env_values.keys().collect::<Vec<_>>())
            .field("volumes", &self.volumes)
            .field("skipped", &self.skipped)
            .field("missing", &self.missing)
            .finish()
    }
}

/// One file of a volume.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeFile {
    /// The path relative to the volume's root (`config/app.yaml`); never absolute, never
    /// with `..`.
    pub path: String,
    /// The content.
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}

impl std::fmt::Debug for VolumeFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeFile")
            .field("path", &self.path)
            .field("bytes", &self.data.len())
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

/// Bytes as standard base64 text, as Kubernetes writes a Secret's `data`.
pub mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes bytes as base64.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    /// Reads base64 into bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}
