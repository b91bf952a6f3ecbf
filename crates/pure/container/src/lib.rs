//! What a container runs: Kubernetes' rules applied to a container spec and an image's
//! config, giving the OCI runtime config (`config.json`) of one instance.
