package policylib_test

import (
	"net/netip"
	"testing"

	"github.com/podwall/podwall/policylib"
)

// TestPodRulesAgreeWithDecide checks the address-level rules a dataplane
// enforces against Decide, flow by flow, on generated clusters: what the
// enforcer installs must be what the engine predicts.
func TestPodRulesAgreeWithDecide(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 40
	}
	for seed := range int64(seeds) {
		g := genNewCluster(seed)
		for _, ipBlockMatchesPods := range []bool{true, false} {
			e, err := policylib.Build(g.snap, policylib.WithIPBlockMatchesPods(ipBlockMatchesPods))
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			rules := map[string]policylib.PodRules{}
			var addrs []netip.Addr
			for _, k := range genLivePods(&g.snap) {
				pr, err := e.PodRules(k.Namespace, k.Name)
				if err != nil {
					t.Fatal(err)
				}
				rules[k.String()] = pr
				addrs = append(addrs, pr.Addrs...)
			}
			addrs = append(addrs, g.externals...)
			for _, n := range g.snap.Nodes {
				for _, a := range n.Status.Addresses {
					if ip, err := netip.ParseAddr(a.Address); err == nil {
						addrs = append(addrs, ip)
					}
				}
			}
			for _, pr := range rules {
				for _, self := range pr.Addrs {
					for _, other := range addrs {
						if other.Is4() != self.Is4() || other == self {
							continue
						}
						for _, pp := range genPorts {
							check := func(dir string, from, to netip.Addr, got bool, pick func(policylib.Decision) policylib.Verdict) {
								d, err := e.Decide(policylib.Flow{From: policylib.AddrEndpoint(from), To: policylib.AddrEndpoint(to), Protocol: pp.Protocol, Port: pp.Port})
								if err != nil {
									t.Fatal(err)
								}
								if want := pick(d).Allowed(); got != want {
									t.Fatalf("seed %d (ipBlockMatchesPods=%v): %s of %s for %s -> %s %s: PodRules say %v, Decide says %v\nrules: %+v\n%s",
										seed, ipBlockMatchesPods, dir, pr.Pod, from, to, pp, got, want, pr, genDump(&g.snap))
								}
							}
							check("ingress", other, self, pr.Ingress.Permits(other, pp.Protocol, pp.Port),
								func(d policylib.Decision) policylib.Verdict { return d.Ingress })
							check("egress", self, other, pr.Egress.Permits(other, pp.Protocol, pp.Port),
								func(d policylib.Decision) policylib.Verdict { return d.Egress })
						}
					}
				}
			}
		}
	}
}
