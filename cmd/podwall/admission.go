package main

import (
	"context"
	"fmt"

	"github.com/go-logr/logr"
	"github.com/open-policy-agent/opa/v1/bundle"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime"

	regorules "github.com/podwall/podwall/rules"
	"github.com/podwall/podwall/webhook/config"
	"github.com/podwall/podwall/webhook/rules"
	"github.com/podwall/podwall/webhook/server"
)

// admissionRules evaluates a configuration's rules away from the webhook
// (check and audit), each with the engine it names, through the same two
// evaluators the webhook runs, so a finding here is the webhook's answer.
type admissionRules struct {
	cfg    *config.AdmissionConfiguration
	goSide *rules.Evaluator
	rego   *server.RegoRules // nil: no rule is on rego
}

// newAdmissionRules prepares cfg (read from source) with the Rego bundle at
// bundlePath, or the embedded rules when it is "".
func newAdmissionRules(ctx context.Context, source string, cfg *config.AdmissionConfiguration, bundlePath string) (*admissionRules, error) {
	ev, err := rules.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	a := &admissionRules{cfg: cfg, goSide: ev}
	// A bundle given is read and compiled even when no rule uses it: a
	// wrong path or a broken bundle is an error, not silently nothing.
	var b *bundle.Bundle
	if bundlePath != "" {
		if b, _, err = server.LoadBundle(bundlePath); err != nil {
			return nil, fmt.Errorf("--bundle: %w", err)
		}
	}
	if len(server.RegoRuleNames(cfg)) == 0 {
		if b != nil {
			e, err := regorules.NewEvaluator(ctx, b)
			if err != nil {
				return nil, fmt.Errorf("--bundle %s: %w", bundlePath, err)
			}
			_ = e.Close(ctx)
		}
		return a, nil
	}
	if a.rego, err = server.NewRegoRules(ctx, b, logr.Discard()); err != nil {
		return nil, fmt.Errorf("--bundle %s: %w", bundlePath, err)
	}
	if err := a.rego.SetConfig(ctx, cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return a, nil
}

// setCluster gives the Rego rules the cluster the Go rules see (their
// data.kubernetes).
func (a *admissionRules) setCluster(ctx context.Context, objs []runtime.Object) error {
	if a.rego == nil {
		return nil
	}
	for _, o := range objs {
		if !regorules.HeldInData(o) {
			continue // a workload: the rules see it in requests only, as in the webhook
		}
		if err := regorules.PutKubernetesObject(ctx, a.rego.Store(), o); err != nil {
			return err
		}
	}
	return nil
}

func (a *admissionRules) validate(ctx context.Context, req *admissionv1.AdmissionRequest, cl rules.Cluster) rules.Result {
	res := a.goSide.Validate(ctx, req, cl)
	if a.rego != nil {
		a.rego.Validate(ctx, a.cfg, req, &res)
	}
	return res
}

func (a *admissionRules) mutate(ctx context.Context, req *admissionv1.AdmissionRequest, cl rules.Cluster) rules.Result {
	res := a.goSide.Mutate(ctx, req, cl)
	if a.rego != nil {
		a.rego.Mutate(ctx, a.cfg, req, &res)
	}
	return res
}
