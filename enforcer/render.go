package enforcer

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/podwall/podwall/policylib"
	"github.com/podwall/podwall/policylib/addrset"
)

// Render returns the ruleset as an nft -f script that replaces the table
// in one transaction, exactly as an Applier installs it: creating the table
// if missing, deleting it, then declaring it whole. The text is
// deterministic (pods, addresses and elements in order), so it serves
// dry runs, reviews and golden tests.
//
// The table holds four verdict maps (ingress4, ingress6, egress4, egress6)
// from local pod addresses to per-pod chains; per pod and isolated
// direction, a chain with an any-port set per address family of the pod
// and a map from protocol and port range to a chain per range, which holds
// a set of the peers allowed there per address family; and base chains on
// the forward, input and (without AllowHostToLocalPods) output hooks that
// accept established traffic, then jump to the source's egress chain and
// the destination's ingress chain. A per-pod chain returns when its any-port
// set matches, or goes on to its port range's chain, which returns when its
// peer set matches, so both ends are checked; both drop otherwise.
func (r *Ruleset) Render() string {
	var b strings.Builder
	w := func(indent int, format string, args ...any) {
		b.WriteString(strings.Repeat("\t", indent))
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	pods, withRules := len(r.Pods), 0
	for i := range r.Pods {
		if r.Pods[i].Ingress != nil || r.Pods[i].Egress != nil {
			withRules++
		}
	}
	w(0, "# podwall: %d local pods, %d with rules; host to local pods: %s.", pods, withRules, allowWord(r.AllowHostToLocalPods))
	if len(r.NodeAddrs) > 0 {
		addrs := make([]string, len(r.NodeAddrs))
		for i, a := range r.NodeAddrs {
			addrs[i] = a.String()
		}
		w(0, "# node addresses: %s", strings.Join(addrs, ", "))
	}
	for _, c := range r.Conflicts {
		w(0, "# address conflict: %s claimed by %v; dispatched to %s", c.Addr, c.Pods, c.Pods[0])
	}
	w(0, "table inet %s {}", r.Table)
	w(0, "delete table inet %s", r.Table)
	w(0, "table inet %s {", r.Table)

	first := true
	sep := func() {
		if !first {
			b.WriteByte('\n')
		}
		first = false
	}
	addrSetText := func(name string, v6 bool, s addrset.Set) {
		w(1, "set %s {", name)
		w(2, "type %s", addrType(v6))
		w(2, "flags interval")
		writeElements(&b, rangesText(familyRanges(s, v6)))
		w(1, "}")
	}
	for i := range r.Pods {
		p := &r.Pods[i]
		v4, v6 := p.families()
		for _, dir := range directions {
			rules := p.rules(dir)
			if rules == nil {
				continue
			}
			chain := chainName(dir, p.Pod)
			sep()
			pols := make([]string, len(rules.Policies))
			for j, k := range rules.Policies {
				pols[j] = k.String()
			}
			w(1, "# %s %s, isolated by %s", p.Pod, dir, strings.Join(pols, ", "))
			for _, fam := range []bool{false, true} {
				if fam && !v6 || !fam && !v4 {
					continue
				}
				addrSetText(anySetName(chain, fam), fam, rules.Any)
			}
			var portElems []string
			for j := range rules.Ports {
				pr := &rules.Ports[j]
				pc := portChainName(chain, pr)
				for _, fam := range []bool{false, true} {
					if fam && !v6 || !fam && !v4 {
						continue
					}
					addrSetText(peersSetName(pc, fam), fam, pr.Peers)
				}
				w(1, "chain %s {", pc)
				for _, rl := range portChainRules(dir, pc, v4, v6) {
					w(2, "%s", rl.text())
				}
				w(1, "}")
				portElems = append(portElems, fmt.Sprintf("%s . %s : goto %s", protoName(pr.Protocol), portsText(pr), pc))
			}
			w(1, "map %s {", portMapName(chain))
			w(2, "type inet_proto . inet_service : verdict")
			w(2, "flags interval")
			writeElements(&b, portElems)
			w(1, "}")
			w(1, "chain %s {", chain)
			for _, rl := range podChainRules(dir, chain, v4, v6) {
				w(2, "%s", rl.text())
			}
			w(1, "}")
		}
	}
	for _, dir := range directions {
		for _, fam := range []bool{false, true} {
			sep()
			w(1, "map %s {", mapName(dir, fam))
			w(2, "type %s : verdict", addrType(fam))
			writeElements(&b, mapElementsText(r, dir, fam))
			w(1, "}")
		}
	}
	for _, bc := range baseChains(r.AllowHostToLocalPods) {
		sep()
		w(1, "chain %s {", bc.name)
		w(2, "type filter hook %s priority filter; policy accept;", bc.name)
		for _, rl := range bc.rules {
			w(2, "%s", rl.text())
		}
		w(1, "}")
	}
	w(0, "}")
	return b.String()
}

func allowWord(b bool) string {
	if b {
		return "allowed"
	}
	return "judged by ingress rules"
}

func addrType(v6 bool) string {
	if v6 {
		return "ipv6_addr"
	}
	return "ipv4_addr"
}

func writeElements(b *strings.Builder, elems []string) {
	if len(elems) == 0 {
		return
	}
	b.WriteString("\t\telements = {\n")
	for _, e := range elems {
		b.WriteString("\t\t\t")
		b.WriteString(e)
		b.WriteString(",\n")
	}
	b.WriteString("\t\t}\n")
}

// rangeText writes an address range as nft reads it: an address, a prefix
// or from-to.
func rangeText(r addrset.Range) string {
	if r.From == r.To {
		return r.From.String()
	}
	if p, ok := r.Prefix(); ok {
		return p.String()
	}
	return r.From.String() + "-" + r.To.String()
}

func rangesText(rs []addrset.Range) []string {
	out := make([]string, len(rs))
	for i, rg := range rs {
		out[i] = rangeText(rg)
	}
	return out
}

func portsText(p *PortRule) string {
	if p.First == p.Last {
		return fmt.Sprint(p.First)
	}
	return fmt.Sprintf("%d-%d", p.First, p.Last)
}

func mapElementsText(r *Ruleset, dir policylib.Direction, v6 bool) []string {
	es := mapEntries(r, dir, v6)
	slices.SortFunc(es, func(a, b mapEntry) int { return cmp.Or(a.addr.Compare(b.addr), cmp.Compare(a.chain, b.chain)) })
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = fmt.Sprintf("%s : jump %s", e.addr, e.chain)
	}
	return out
}
