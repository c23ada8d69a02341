package soak

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// Print writes the report as Markdown tables.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "%d requests in %.0f s.\n\n", r.Requests, r.Duration.Seconds())
	fmt.Fprintln(w, "| Fault | Sent | Completed | Hung up on purpose | Failed | Error events | HTTP errors | Resets | Cut or malformed | Timeouts | Failed to warm Models | Not in dialect | Routable again | Warm loads | Double loads |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, p := range r.Phases {
		routable := "—"
		if p.Routable >= 0 {
			routable = fmt.Sprintf("%.1f s", p.Routable.Seconds())
		}
		loads, doubles := fmt.Sprint(p.Loads), fmt.Sprint(p.DoubleLoads)
		if p.Fault == "steady" {
			loads, doubles = "—", "—"
		}
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %s | %s | %s |\n",
			p.Fault, p.Sent, p.Completed, p.Abandoned, p.FailedTotal(), p.Failed[ErrorEvent], p.Failed[HTTPError],
			p.Failed[Reset], p.Failed[Broken], p.Failed[Timeout], p.WarmFailed, p.NonDialect, routable, loads, doubles)
	}
	fmt.Fprintln(w)
	for _, p := range r.Phases {
		if p.Note == "" && len(p.Examples) == 0 {
			continue
		}
		fmt.Fprintf(w, "- **%s**: %s", p.Fault, p.Note)
		if len(p.Examples) > 0 {
			fmt.Fprintf(w, " Failures, e.g.: %s", strings.Join(p.Examples, "; "))
		}
		fmt.Fprintln(w)
	}
	if len(r.Skipped) > 0 {
		fmt.Fprintf(w, "\nSkipped (bounds reached): %s\n", strings.Join(r.Skipped, ", "))
	}
	if len(r.PrefixesLearned) > 0 {
		names := slices.Sorted(maps.Keys(r.PrefixesLearned))
		parts := make([]string, len(names))
		for i, n := range names {
			parts[i] = fmt.Sprintf("%s %.0f", n, r.PrefixesLearned[n])
		}
		fmt.Fprintf(w, "\nRouted prompt prefixes each gateway learned from its peers (prefix sync): %s.\n", strings.Join(parts, ", "))
	}
	fmt.Fprintln(w, "\n| Process (ran the whole soak) | Start | End |")
	fmt.Fprintln(w, "| --- | --- | --- |")
	for _, f := range r.Resources {
		fmt.Fprintf(w, "| %s | %s | %s |\n", f.Process, f.Start, f.End)
	}
}
