package suite

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// Header is what the report says about where and how it was measured.
type Header struct {
	Machine string // CPU model and cores
	Date    string
	Go      string
	Redis   string    // server kind, or the miniredis warning
	Load    [2]string // the load average (1, 5, 15 minutes) at the start and at the end
	Config  Config
	Command string
	Quick   bool
}

// lossMargin is how much worse than a peer tier must be before a row is
// listed as a loss: less is within this machine's noise.
const lossMargin = 0.10

// Render writes the report as markdown.
func Render(w io.Writer, h Header, results []GroupResult) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("# tier against its peers and the floors\n\n")
	p("Produced by `%s`; do not edit by hand.\n\n", h.Command)
	if h.Quick {
		p("**Quick run** (CI smoke test): small figures, not for reading.\n\n")
	}
	p("| | |\n|---|---|\n")
	p("| machine | %s |\n| date | %s |\n| Go | %s |\n| Redis | %s |\n", h.Machine, h.Date, h.Go, h.Redis)
	p("| load average (1, 5, 15 min) | %s at the start, %s at the end |\n", h.Load[0], h.Load[1])
	p("| method | median of %d runs (min–max). ns/op and allocs/op: every implementation of a row is set up first (the near-hit rows, tagged or not, set them up anew for each run, so that the median is taken over several placements of the entries in the heap, not one), then in each run they take turns of %v each, in an order that rotates from turn to turn, until each has run %v, so that they share the same seconds of the machine; allocs/op counts every heap allocation of the process meanwhile (runtime.MemStats.Mallocs). Every cache is called through one func value that calls its own method, the same indirect call for all. The stale-window and outage rows alternate tier and the other row inside each run; rows of one figure per run (stampede, hit ratio, heap) run their implementations one after another, in an order that rotates from run to run |\n",
		h.Config.Runs, h.Config.Slice, h.Config.BenchTime)
	p("\nThe ratio columns are tier / that row: below 1× tier is faster or smaller, above 1× slower or bigger; for hit ratios and throughput, above 1× tier does better. Floors are the bare operations underneath, which no cache can beat.\n")

	section := ""
	anyMini := false
	for _, gr := range results {
		if gr.Section != section {
			section = gr.Section
			p("\n## %s\n\n", section)
			if d, ok := sectionNotes[section]; ok {
				p("%s\n\n", d)
			}
			p("| case | implementation |")
			for _, m := range gr.Metrics {
				p(" %s |", m.Name)
				if m.Ratio {
					p(" tier / this |")
				}
			}
			p("\n|---|---|")
			for _, m := range gr.Metrics {
				p("---:|")
				if m.Ratio {
					p("---:|")
				}
			}
			p("\n")
		}
		tierStats := gr.tierStats()
		for i, r := range gr.Results {
			c := ""
			if i == 0 {
				c = gr.Case
				if gr.OnMini {
					c += " †"
					anyMini = true
				}
			}
			p("| %s | %s |", c, implLabel(r.Impl))
			if r.Err != nil {
				p(" error: %s |", strings.ReplaceAll(r.Err.Error(), "|", "/"))
				for range len(gr.Metrics)*2 - 1 {
					p(" |")
				}
				p("\n")
				continue
			}
			for m, metric := range gr.Metrics {
				st, ok := Summarize(r.Samples[m])
				if !ok {
					p(" – |")
				} else {
					p(" %s |", formatStat(st, metric, len(r.Samples[m])))
				}
				if metric.Ratio {
					if r.Impl.Role == Tier || !ok || tierStats[m] == nil {
						p(" |")
					} else if nearZero(tierStats[m].Median) && nearZero(st.Median) {
						p(" – |")
					} else {
						p(" %s |", formatRatio(tierStats[m].Median, st.Median))
					}
				}
			}
			p("\n")
		}
	}
	if anyMini {
		p("\n† measured on the embedded miniredis, because no redis-server was on PATH: these figures say nothing about a real server.\n")
	}
	renderTargets(w, results)
	renderLosses(w, results)
}

var sectionNotes = map[string]string{
	"Near hit": "A hit of a struct value; every cache is filled to the row's size and holds every key. One goroutine reads the keys in order; " +
		"parallel workers each start at their own key and read every 7th; with one hot key every worker reads the same key. " +
		"RunParallel is GOMAXPROCS workers, ×4 is four times as many, which measures contention, not more cores.",
	"Far hit": "A near miss answered by Redis on loopback. tier drops its near copy before each read; go-redis/cache runs without its local cache. " +
		"Each implementation has a go-redis client of its own.",
	"Write": "One key written again and again. tier's Set encodes the value, runs one Lua script (SET PX and PUBLISH of a drop message), " +
		"and keeps near the value decoded from the bytes written; its own subscription hears the message and skips it. " +
		"The raw write runs the same two commands in a script of its own, with the same bytes, and one subscriber on its channel.",
	"Stale window": "Replica A, in this process, Sets a key that replica B, a child process, holds near. tier's window ends when B has " +
		"dropped its copy (Invalidation.OnPropagation is called once it has). As a check, B then Gets back to back until a Get does not " +
		"return the old copy: the start of that Get is the second row, and it is the first Get after the drop; every Get that starts " +
		"later reads Redis, which holds the new value. The raw round runs the same kind of script (SET PX, PUBLISH of a frame) " +
		"from this process, until a go-redis subscriber in B's process returns the message. The two kinds of rounds alternate in one loop; " +
		"times are the machine's wall clock, read in both processes. Figures: medians over the runs of each run's p50 and p99.",
	"Redis outage": "tier and go-redis/cache (with its local cache) take turns on one workload: 8 goroutines Get 20 keys through a loader " +
		"that takes 1ms; values are kept near for 1s, so Redis is read again every second, and in Redis for a minute. Gets/s counts Gets " +
		"that returned a value. Before: Redis up; during: the row's redis-server killed with SIGKILL, then restarted empty after the phase.",
	"Tags": "InvalidateTag advances a tag clock in Redis and sets the tag's marker, in one script that also announces it; " +
		"an entry is stale once a tag it carries has a marker above the clock it was born under, so no entry is listed or scanned. " +
		"The rows with 1k and more entries Set them, with the tag, near and in Redis, before the calls; µs/call is the mean of 200 calls, " +
		"and Redis commands and round trips are counted by a go-redis hook on the cache's client. The hit rows alternate tagged and " +
		"untagged entries as the near-hit and far-hit rows do.",
	"Stampede": "Goroutines wait at a barrier, then all read one key that neither tier holds; the source takes 20ms to answer.",
	"Near hit ratio": "Each cache replays the same trace (get, and on a miss store); one run, since the trace is fixed. " +
		"tier's default near tier is an approximate LRU; Near.Admission puts new keys on probation (S3-FIFO).",
	"Heap per entry": "Growth of the live heap after filling a new cache, divided by the entries; the keys exist before and are not counted.",
}

func implLabel(i Impl) string {
	name := i.Name
	switch i.Role {
	case Tier:
		name = "**" + name + "**"
	case Floor:
		name += " (floor)"
	case Ceiling:
		name += " (ceiling)"
	}
	if i.Note != "" {
		name += ", " + i.Note
	}
	return name
}

func (gr GroupResult) tierStats() []*Stat {
	out := make([]*Stat, len(gr.Metrics))
	for _, r := range gr.Results {
		if r.Impl.Role != Tier || r.Err != nil {
			continue
		}
		for m := range gr.Metrics {
			if st, ok := Summarize(r.Samples[m]); ok {
				out[m] = &st
			}
		}
	}
	return out
}

func formatStat(st Stat, m Metric, n int) string {
	f := func(v float64) string { return formatNum(v, m.Decimals) }
	if n == 1 || f(st.Min) == f(st.Max) && f(st.Min) == f(st.Median) {
		return f(st.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", f(st.Median), f(st.Min), f(st.Max))
}

// nearZero is true of a figure that prints as 0: allocations per
// operation of a loop that allocates nothing, where the process's
// background work leaves a trace.
func nearZero(v float64) bool { return math.Abs(v) < 0.05 }

func formatNum(v float64, decimals int) string {
	if nearZero(v) {
		v = 0
	}
	if decimals == 0 && math.Abs(v) < 10 && v != math.Trunc(v) {
		decimals = 1
	}
	s := fmt.Sprintf("%.*f", decimals, v)
	// Thousands separators for the integer part of large figures.
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	if len(intPart) > 4 {
		var b strings.Builder
		for i, ch := range intPart {
			if i > 0 && (len(intPart)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(ch)
		}
		intPart = b.String()
	}
	if neg {
		intPart = "-" + intPart
	}
	if frac != "" {
		return intPart + "." + frac
	}
	return intPart
}

func formatRatio(tier, other float64) string {
	if other == 0 {
		if tier == 0 {
			return "1×"
		}
		return "∞"
	}
	r := tier / other
	if r >= 1000 {
		return ">1000×"
	}
	if r >= 10 {
		return fmt.Sprintf("%.0f×", r)
	}
	return fmt.Sprintf("%.2f×", r)
}

// Loss is a row where tier does worse than a peer by more than the
// noise margin.
type Loss struct {
	Group  GroupResult
	Peer   string
	Metric Metric
	Tier   float64
	Other  float64
}

// Losses returns the rows where tier loses to a peer, by group, then
// metric, then peer.
func Losses(results []GroupResult) []Loss {
	var out []Loss
	for _, gr := range results {
		ts := gr.tierStats()
		for m, metric := range gr.Metrics {
			if !metric.Ratio || ts[m] == nil {
				continue
			}
			for _, r := range gr.Results {
				if r.Impl.Role != Peer || r.Err != nil {
					continue
				}
				st, ok := Summarize(r.Samples[m])
				if !ok {
					continue
				}
				t := ts[m].Median
				lost := t > st.Median*(1+lossMargin) && !nearZero(t)
				if metric.HigherBetter {
					lost = t < st.Median*(1-lossMargin/5)
				}
				if lost {
					out = append(out, Loss{gr, r.Impl.Name, metric, t, st.Median})
				}
			}
		}
	}
	return out
}

func renderLosses(w io.Writer, results []GroupResult) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("\n## Where tier loses\n\n")
	losses := Losses(results)
	if len(losses) == 0 {
		p("Nowhere in this run by more than the noise margin (%.0f%%; 2%% for hit ratios).\n", lossMargin*100)
		return
	}
	p("Rows where a peer beats tier by more than the noise margin (%.0f%%; 2%% for hit ratios), with the reason found by profiling (`go test -run x -bench 'Report/<id>' -cpuprofile cpu.out` in bench/, then `go tool pprof`):\n\n", lossMargin*100)
	for i := 0; i < len(losses); {
		g := losses[i].Group
		p("- **%s, %s** (`%s`): tier %s %s against", g.Section, g.Case, g.ID,
			formatNum(losses[i].Tier, losses[i].Metric.Decimals), losses[i].Metric.Name)
		var reasons []string
		first := i
		for j := i; j < len(losses) && losses[j].Group.ID == g.ID && losses[j].Metric.Name == losses[first].Metric.Name; j++ {
			l := losses[j]
			sep := ","
			if j == first {
				sep = ""
			}
			p("%s %s's %s (%s)", sep, l.Peer, formatNum(l.Other, l.Metric.Decimals), formatRatio(l.Tier, l.Other))
			why := lossReason(g.ID, l.Peer)
			if why == "" {
				why = "No reason recorded for the loss to " + l.Peer + " yet."
			}
			if !slices.Contains(reasons, why) {
				reasons = append(reasons, why)
			}
			i = j + 1
		}
		p(".")
		for _, why := range reasons {
			p(" %s", why)
		}
		p("\n")
	}
}
