//! Kubernetes names for nfscope.
