//! Container images for a node: pulled from OCI registries into a content-addressed layer
//! store under the node's state directory.
