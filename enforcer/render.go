package enforcer

import (
	"fmt"
	"net/netip"
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
// direction, a chain with an any-port set and a (address . protocol .
// port) set per address family of the pod; and base chains on the forward,
// input and (without AllowHostToLocalPods) output hooks that accept
// established traffic, then jump to the source's egress chain and the
// destination's ingress chain. A per-pod chain returns when a set matches,
// so both ends are checked, and drops otherwise.
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
				w(1, "set %s {", anySetName(chain, fam))
				w(2, "type %s", addrType(fam))
				w(2, "flags interval")
				writeElements(&b, anyElementsText(rules, fam))
				w(1, "}")
				w(1, "set %s {", portsSetName(chain, fam))
				w(2, "type %s . inet_proto . inet_service", addrType(fam))
				w(2, "flags interval")
				writeElements(&b, portElementsText(rules, fam))
				w(1, "}")
			}
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

func familyRanges(s addrset.Set, v6 bool) []addrset.Range {
	if v6 {
		return s.IPv6().Ranges()
	}
	return s.IPv4().Ranges()
}

func anyElementsText(r *Rules, v6 bool) []string {
	var out []string
	for _, rg := range familyRanges(r.Any, v6) {
		out = append(out, rangeText(rg))
	}
	return out
}

func portElementsText(r *Rules, v6 bool) []string {
	var out []string
	for _, p := range r.Ports {
		port := fmt.Sprint(p.First)
		if p.First != p.Last {
			port = fmt.Sprintf("%d-%d", p.First, p.Last)
		}
		for _, rg := range familyRanges(p.Peers, v6) {
			out = append(out, fmt.Sprintf("%s . %s . %s", rangeText(rg), protoName(p.Protocol), port))
		}
	}
	return out
}

func protoName(p policylib.Protocol) string { return strings.ToLower(p.String()) }

func mapElementsText(r *Ruleset, dir policylib.Direction, v6 bool) []string {
	var out []string
	for _, e := range mapEntries(r, dir, v6) {
		out = append(out, fmt.Sprintf("%s : jump %s", e.addr, e.chain))
	}
	return out
}

type mapEntry struct {
	addr  netip.Addr
	chain string
}

// mapEntries lists a verdict map's elements in address order.
func mapEntries(r *Ruleset, dir policylib.Direction, v6 bool) []mapEntry {
	var out []mapEntry
	for i := range r.Pods {
		p := &r.Pods[i]
		if p.rules(dir) == nil {
			continue
		}
		for _, a := range p.Addrs {
			if a.Is6() == v6 && r.dispatched(i, a) {
				out = append(out, mapEntry{a, chainName(dir, p.Pod)})
			}
		}
	}
	sortEntries(out)
	return out
}
