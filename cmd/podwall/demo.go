package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"

	"github.com/podwall/podwall/enforcer/agent/demo"
)

func init() { register(newDemoCmd) }

func newDemoCmd(e *env) *cobra.Command {
	var (
		seedDir   string
		timeout   time.Duration
		verbosity int
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the seed scenario in network namespaces, enforced for real (root)",
		Long: `demo builds the seed scenario (examples/seed) in network namespaces on this
machine: a node namespace with a bridge and the three node addresses
(192.168.2.100-102), a namespace per pod (three httpd pods serving HTTP on
port 80, busybox, busybox-access) and a client outside the cluster. It runs
podwall's agent on it (nftables in the node namespace, every pod local, the
manifests in a watched directory) and walks the seed's stages: no policy,
networkpolicy.yaml, networkpolicy-ipblock.yaml.

For every flow it prints the verdict of a real connection (one HTTP GET on
:80, one ICMP echo, each with a timeout) next to the one policylib predicts.
The node's own traffic is judged by the pods' ingress rules here
(AllowHostToLocalPods=false), as the seed's walkthrough observed.

Nothing leaves the namespaces it creates, and they are removed when it ends,
also on error or interrupt. Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), the
ip tool and br_netfilter.

Exit status: 0 when every probe agrees with policylib, 1 when one does not,
2 when the demo cannot run (not root, no seed), 130 when interrupted.`,
		Example: `  sudo podwall demo
  sudo podwall demo --seed examples/seed --probe-timeout 500ms`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := os.Stat(seedDir); err != nil {
				return &usageError{cmd: cmd.CommandPath(), err: flagError("--seed "+seedDir,
					fmt.Errorf("%w (the default is relative to the repository's root: run there, or give --seed)", unwrapPath(err)))}
			}
			log := logr.Discard()
			if verbosity > 0 {
				var err error
				if log, err = newLogger(e.stderr, "text", verbosity-1); err != nil {
					return err
				}
			}
			res, err := demo.Run(cmd.Context(), demo.Options{
				Seed:         seedDir,
				ProbeTimeout: timeout,
				Out:          e.stdout,
				Logger:       log,
			})
			if errors.Is(err, demo.ErrUnavailable) {
				return fmt.Errorf("%w (run it as root)", err)
			}
			if err != nil {
				return err
			}
			if res.Disagreements > 0 {
				return exitStatus(exitFound)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&seedDir, "seed", "examples/seed", "the seed scenario's directory (cluster/ and original/)")
	fl.DurationVar(&timeout, "probe-timeout", demo.DefaultProbeTimeout, "how long one probe waits")
	fl.IntVarP(&verbosity, "verbosity", "v", 0, "1: show the agent's logs on stderr; 2: and its no-op syncs")
	return cmd
}
