// Command controllers runs kube-controller-manager of the test API server's release against
// it, for the tests that watch Pods and endpoints. It is test infrastructure only, built apart
// from the server so that the demo, which needs no controllers, does not wait for it.
//
// Usage: controllers --kubeconfig FILE [--lifeline-stdin]
//
// No kubelet runs: the tests' node agent (tests/support/node_agent.rs) plays one.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	kcm "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

// The controllers a migration's outage depends on: the StatefulSet, Deployment and ReplicaSet
// controllers make and replace Pods (and adopt orphans whose labels match), the EndpointSlice
// controller decides which Pods a Service reaches, the garbage collector deletes what an owner
// left (or orphans it), and the ServiceAccount controller makes each namespace's `default`,
// without which no Pod is admitted. Node lifecycle is left out: the node agent keeps its Node.
var controllers = []string{
	"statefulset-controller",
	"deployment-controller",
	"replicaset-controller",
	"endpointslice-controller",
	"garbage-collector-controller",
	"serviceaccount-controller",
}

func main() {
	fs := flag.NewFlagSet("controllers", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "the kubeconfig of the API server (serve writes one)")
	lifeline := fs.Bool("lifeline-stdin", false, "exit when stdin reaches EOF")
	_ = fs.Parse(os.Args[1:])
	if *kubeconfig == "" {
		fmt.Fprintln(os.Stderr, "--kubeconfig is required")
		os.Exit(2)
	}
	if *lifeline {
		// The controllers keep no state of their own: when the test process goes, so do they.
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			os.Exit(0)
		}()
	}
	cmd := kcm.NewControllerManagerCommand()
	cmd.SetArgs([]string{
		"--kubeconfig=" + *kubeconfig,
		"--controllers=" + strings.Join(controllers, ","),
		"--leader-elect=false",
		// Nothing scrapes it, and a port of its own would collide between parallel tests.
		"--secure-port=0",
		// Tests watch Pods come and go within seconds: start each controller at once.
		"--controller-start-interval=0s",
	})
	if err := cmd.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "controllers: %v\n", err)
		os.Exit(1)
	}
}
