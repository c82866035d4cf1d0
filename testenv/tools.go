//go:build tools

// Keeps kubectl of the same pinned Kubernetes release in this module, so that the demo can
// build it instead of depending on whatever kubectl a machine has.
package main

import _ "k8s.io/kubernetes/cmd/kubectl"
