package cortexcli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"sigs.k8s.io/yaml"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/fleet"
	"github.com/helexa-ai/cortex/internal/units"
)

// Output formats.
const (
	OutputTable = "table"
	OutputJSON  = "json"
	OutputYAML  = "yaml"
)

// minWidth is the narrowest table the renderer lays out; below it lines
// are cut rather than columns squeezed to nothing.
const minWidth = 60

// Render writes the report in the format asked for. scope says where the
// report comes from ("namespace default", "gateway http://…") for the
// table's first line.
func Render(w io.Writer, r fleet.Report, format, scope string, width int) error {
	switch format {
	case OutputJSON:
		data, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", data)
		return err
	case OutputYAML:
		data, err := yaml.Marshal(r)
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	case OutputTable, "":
		_, err := io.WriteString(w, Table(r, scope, width))
		return err
	}
	return fmt.Errorf("unknown output format %q (want table, json or yaml)", format)
}

// Table renders the report for a terminal of the given width: a summary
// line, the nodes, the models, and what is wrong, in that order.
func Table(r fleet.Report, scope string, width int) string {
	width = max(width, minWidth)
	var b strings.Builder
	names := displayNames(r.Models)

	serving := 0
	for _, m := range r.Models {
		if m.Ready > 0 {
			serving++
		}
	}
	summary := fmt.Sprintf("FLEET %s   NODES %d/%d healthy   MODELS %d/%d serving", strings.ToUpper(string(r.Status)),
		r.Nodes.Healthy, r.Nodes.Total, serving, len(r.Models))
	switch {
	case scope == "":
	case utf8.RuneCountInString(summary)+3+utf8.RuneCountInString(scope) <= width:
		summary += "   " + scope
	default:
		summary += "\n" + cut(scope, width)
	}
	b.WriteString(summary + "\n\n")

	if len(r.Neurons) == 0 {
		b.WriteString("No NeuronNodes.\n")
	} else {
		rows := make([][]string, 0, len(r.Neurons))
		for _, n := range r.Neurons {
			rows = append(rows, []string{n.Name, nodeStatus(n), fmt.Sprint(n.GPUs), nodeMemory(n), nodeModels(n)})
		}
		table(&b, width, []column{{"NODE", 24}, {"STATUS", 14}, {"GPUS", 4}, {"MEMORY FREE/TOTAL", 17}, {"MODELS", 0}}, rows)
	}
	b.WriteString("\n")

	if len(r.Models) == 0 {
		b.WriteString("No Models.\n")
	} else {
		rows := make([][]string, 0, len(r.Models))
		for _, m := range r.Models {
			rows = append(rows, []string{names[m.Model], m.Phase, fmt.Sprintf("%d/%d", m.Ready, m.Desired), where(m)})
		}
		table(&b, width, []column{{"MODEL", 28}, {"PHASE", 13}, {"READY", 5}, {"WHERE", 0}}, rows)
	}

	problems := problemLines(r, names)
	if len(problems) > 0 {
		b.WriteString("\nPROBLEMS\n")
		labelWidth := 0
		for _, p := range problems {
			labelWidth = max(labelWidth, utf8.RuneCountInString(p.label))
		}
		labelWidth = min(labelWidth, width/3)
		for _, p := range problems {
			writeWrapped(&b, "  "+pad(cut(p.label, labelWidth), labelWidth)+"  ", p.text, width)
		}
	}
	return b.String()
}

// displayNames shortens Model keys to their names when every Model is in
// one namespace (the scope line says which); otherwise keys stay whole.
func displayNames(models []fleet.Model) map[string]string {
	out := make(map[string]string, len(models))
	namespaces := map[string]bool{}
	for _, m := range models {
		ns, _, _ := strings.Cut(m.Model, "/")
		namespaces[ns] = true
	}
	for _, m := range models {
		out[m.Model] = m.Model
		if _, name, ok := strings.Cut(m.Model, "/"); ok && len(namespaces) == 1 {
			out[m.Model] = name
		}
	}
	return out
}

func nodeStatus(n fleet.Node) string {
	s := "Ready"
	if !n.Ready {
		s = "NotReady"
	}
	if n.Cordoned {
		s += ",Cordoned"
	}
	return s
}

func nodeMemory(n fleet.Node) string {
	if n.MemoryTotalBytes == 0 {
		return "-"
	}
	return units.FreeOfTotal(n.MemoryFreeBytes, n.MemoryTotalBytes)
}

// nodeModels names a node's models without their namespaces: the column
// is narrow, and the models table below has the keys.
func nodeModels(n fleet.Node) string {
	if len(n.Models) == 0 {
		return "-"
	}
	out := make([]string, 0, len(n.Models))
	for _, k := range n.Models {
		_, name, ok := strings.Cut(k, "/")
		if !ok {
			name = k
		}
		out = append(out, name)
	}
	return strings.Join(out, ",")
}

// where says where a Model is: its replicas' nodes (with their state when
// it is not serving), or where it could be loaded when it has none.
func where(m fleet.Model) string {
	var held, could []string
	for _, l := range m.Locations {
		switch {
		case l.State == fleet.StatePlaceable:
			could = append(could, l.Node)
		case l.State == "Ready" && l.NodeReady:
			held = append(held, l.Node)
		case l.State == "Ready":
			held = append(held, l.Node+"(node down)")
		default:
			held = append(held, l.Node+"("+strings.ToLower(l.State)+")")
		}
	}
	switch {
	case len(held) > 0:
		return strings.Join(held, ",")
	case len(could) > 0:
		return "can load on " + strings.Join(could, ",")
	}
	return "-"
}

type problem struct{ label, text string }

// problemLines lists unhealthy nodes, then what cannot serve, by Model.
func problemLines(r fleet.Report, names map[string]string) []problem {
	var out []problem
	for _, n := range r.Neurons {
		switch {
		case !n.Ready:
			out = append(out, problem{"node " + n.Name, "not Ready (" + n.Reason + ")"})
		case n.Reason == cortexv1.ReasonHeartbeatLate:
			out = append(out, problem{"node " + n.Name, "heartbeat late (" + n.Reason + "): serving, but its neuron cannot reach the API server"})
		}
	}
	for _, u := range r.Unservable {
		label, ok := names[u.Model]
		if !ok {
			label = u.Model
		}
		text := u.Reason + ": " + u.Detail
		if u.Node != "" {
			text = "on " + u.Node + ": " + text
		}
		out = append(out, problem{label, text})
	}
	return out
}

type column struct {
	header string
	// max is the column's widest; 0 takes what the others leave.
	max int
}

// table writes rows under headers, each column as wide as its widest cell
// up to its max, the last one filling the line; longer cells are cut with
// an ellipsis so that no line exceeds width.
func table(b *strings.Builder, width int, cols []column, rows [][]string) {
	widths := make([]int, len(cols))
	used := 0
	for i, c := range cols {
		w := utf8.RuneCountInString(c.header)
		for _, r := range rows {
			w = max(w, utf8.RuneCountInString(r[i]))
		}
		if c.max > 0 {
			w = min(w, c.max)
		}
		widths[i] = w
		if i < len(cols)-1 {
			used += w + 2
		}
	}
	last := len(cols) - 1
	// On a narrow terminal the widest fixed columns give way until the
	// last one has some room.
	for used > width-12 {
		widest := 0
		for i := range last {
			if widths[i] > widths[widest] {
				widest = i
			}
		}
		if widths[widest] <= 4 {
			break
		}
		widths[widest]--
		used--
	}
	widths[last] = max(min(widths[last], width-used), 1)
	line := func(cells []string) {
		parts := make([]string, len(cells))
		for i, c := range cells {
			parts[i] = pad(cut(c, widths[i]), widths[i])
		}
		b.WriteString(strings.TrimRight(strings.Join(parts, "  "), " ") + "\n")
	}
	headers := make([]string, len(cols))
	for i, c := range cols {
		headers[i] = c.header
	}
	line(headers)
	for _, r := range rows {
		line(r)
	}
}

// cut shortens s to n runes, ending with an ellipsis when it had to.
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n <= 1 {
		return string([]rune(s)[:n])
	}
	return string([]rune(s)[:n-1]) + "…"
}

func pad(s string, n int) string {
	if k := utf8.RuneCountInString(s); k < n {
		return s + strings.Repeat(" ", n-k)
	}
	return s
}

// writeWrapped writes prefix and text, wrapping text at word boundaries so
// that no line exceeds width; continuation lines are indented under the
// text. A word longer than a line is cut.
func writeWrapped(b *strings.Builder, prefix, text string, width int) {
	indent := utf8.RuneCountInString(prefix)
	avail := max(width-indent, 10)
	lines := wrap(text, avail)
	for i, l := range lines {
		if i == 0 {
			b.WriteString(prefix)
		} else {
			b.WriteString(strings.Repeat(" ", indent))
		}
		b.WriteString(l + "\n")
	}
}

func wrap(text string, n int) []string {
	var lines []string
	cur := ""
	for _, word := range strings.Fields(text) {
		word = cut(word, n)
		switch {
		case cur == "":
			cur = word
		case utf8.RuneCountInString(cur)+1+utf8.RuneCountInString(word) <= n:
			cur += " " + word
		default:
			lines = append(lines, cur)
			cur = word
		}
	}
	if cur != "" || len(lines) == 0 {
		lines = append(lines, cur)
	}
	return slices.Clip(lines)
}
