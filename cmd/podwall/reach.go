package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

func init() { register(newReachCmd) }

func newReachCmd(e *env) *cobra.Command {
	var (
		files  []string
		flows  flowFlags
		output string
	)
	cmd := &cobra.Command{
		Use:   "reach -f PATH --port N [--from X] [--to X]",
		Short: "Show which pods can reach which, as truth tables or JSON",
		Long: `reach judges every ordered pair of sources and destinations (every pod to
every pod unless --from or --to say otherwise, self pairs included) for each
protocol and port, after Service translation, as the CNI would.

-o table prints one truth table per protocol/port: rows are sources,
numbered columns are destinations, '.' allowed, 'X' denied.
-o json prints {"results":[{"from","to","port","protocol","allowed",
"reason"}, ...]}, per protocol and port in flag order, then sorted by from
and to; a Service destination gives one result per backend pod, with "pod",
"targetPort" and "via". ICMP results have "port": 0.`,
		Example: `  # The seed scenario's stage 1, pods and nodes to pods on TCP 80:
  podwall reach -f examples/seed/cluster -f examples/seed/original/networkpolicy.yaml \
      --from pods --from nodes --port 80

  # Through the Service port, as JSON:
  podwall reach -f examples/seed/cluster --from default/busybox --to svc/default/httpd-svc --port 8080 -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(cmd, output); err != nil {
				return err
			}
			blocks, err := flows.blocks()
			if err != nil {
				return err
			}
			c, err := e.load(cmd, files)
			if err != nil {
				return err
			}
			eng, err := c.engine()
			if err != nil {
				return err
			}
			froms, err := c.targets(eng, "--from", flows.from, false)
			if err != nil {
				return err
			}
			tos, err := c.targets(eng, "--to", flows.to, true)
			if err != nil {
				return err
			}
			items, err := enumerate(cmd.Context(), eng, froms, tos, blocks, 0)
			if err != nil {
				return err
			}
			results := make([]result, 0, len(items))
			for i, it := range items {
				if i%4096 == 0 {
					if err := cmd.Context().Err(); err != nil {
						return err
					}
				}
				r, err := judge(eng, it)
				if err != nil {
					return err
				}
				results = append(results, r)
			}
			if output == formatTable {
				writeTruthTables(e.out, results)
				return nil
			}
			return writeStructured(e.out, output, struct {
				Results []result `json:"results"`
			}{results})
		},
	}
	addFilenameFlag(cmd, &files)
	flows.add(cmd)
	addOutputFlag(cmd, &output, formatTable, formatJSON, formatYAML)
	return cmd
}

// truthTable is one protocol/port's results as a from × to grid.
type truthTable struct {
	title      string
	rows, cols []string
	cells      map[[2]int]bool
}

func (t *truthTable) same(o *truthTable) bool {
	return strings.Join(t.cols, "\n") == strings.Join(o.cols, "\n")
}

// tables groups results, in order, into one table per protocol/port.
func tables(results []result) []*truthTable {
	var out []*truthTable
	byTitle := map[string]*truthTable{}
	index := func(list *[]string, s string) int {
		for i, x := range *list {
			if x == s {
				return i
			}
		}
		*list = append(*list, s)
		return len(*list) - 1
	}
	for _, r := range results {
		title := r.Protocol
		if r.Protocol != "ICMP" {
			title += "/" + strconv.Itoa(int(r.Port))
		}
		t, ok := byTitle[title]
		if !ok {
			t = &truthTable{title: title, cells: map[[2]int]bool{}}
			byTitle[title] = t
			out = append(out, t)
		}
		col := r.To
		if r.Pod != "" {
			col = fmt.Sprintf("%s -> %s:%d", r.To, r.Pod, r.TargetPort)
		}
		t.cells[[2]int{index(&t.rows, r.From), index(&t.cols, col)}] = r.Allowed
	}
	return out
}

// writeTruthTables prints the tables in the upstream e2e suite's notation
// ('.' allowed, 'X' denied, '?' not judged), with numbered columns and a
// legend, printed once when every table has the same columns.
func writeTruthTables(w io.Writer, results []result) {
	ts := tables(results)
	if len(ts) == 0 {
		fmt.Fprintln(w, "No flows: no sources or destinations (no pods in the input?).")
		return
	}
	shared := true
	for _, t := range ts[1:] {
		shared = shared && t.same(ts[0])
	}
	fmt.Fprintln(w, ". allowed, X denied")
	if shared {
		writeLegend(w, ts[0].cols)
	}
	for _, t := range ts {
		fmt.Fprintln(w)
		if !shared {
			writeLegend(w, t.cols)
			fmt.Fprintln(w)
		}
		writeTable(w, t)
	}
}

func writeLegend(w io.Writer, cols []string) {
	fmt.Fprintln(w, "columns (to):")
	numW := len(strconv.Itoa(len(cols)))
	for i, c := range cols {
		fmt.Fprintf(w, "  %*d  %s\n", numW, i+1, c)
	}
}

func writeTable(w io.Writer, t *truthTable) {
	const corner = "from \\ to"
	numW := len(strconv.Itoa(len(t.cols)))
	rowW := len(corner)
	for _, r := range t.rows {
		rowW = max(rowW, len(r))
	}
	rowW++ // a gap before the first column
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%-*s", t.title, rowW, corner)
	for j := range t.cols {
		fmt.Fprintf(&b, " %*d", numW, j+1)
	}
	b.WriteByte('\n')
	for i, r := range t.rows {
		fmt.Fprintf(&b, "%-*s", rowW, r)
		for j := range t.cols {
			mark := "?"
			if allowed, ok := t.cells[[2]int{i, j}]; ok {
				mark = "X"
				if allowed {
					mark = "."
				}
			}
			fmt.Fprintf(&b, " %*s", numW, mark)
		}
		b.WriteByte('\n')
	}
	io.WriteString(w, b.String())
}
