// Command report measures tier against its peers and the floors beneath
// them, in one process run, and prints the figures as markdown:
//
//	cd bench && go run ./cmd/report          # the full run, written to RESULTS.md
//	cd bench && go run ./cmd/report -quick   # the CI smoke run, printed only
//
// It starts a redis-server on a free loopback port when the binary is on
// PATH, and otherwise uses an embedded miniredis and marks the rows that
// touched it.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/tier-cache/tier/bench/internal/redisproc"
	"github.com/tier-cache/tier/bench/internal/suite"
)

func main() {
	if suite.ReplicaRequested() { // replica B of the stale-window row
		os.Exit(suite.ReplicaMain())
	}
	suite.QuietRedis()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run() error {
	quick := flag.Bool("quick", false, "the CI smoke run: every row, small figures, in well under a minute; writes no file unless -out is given")
	out := flag.String("out", "", "write the report to this file (default: RESULTS.md for a full run, nothing for -quick)")
	runs := flag.Int("runs", 0, "runs of each group (default: 5, or 1 with -quick)")
	benchtime := flag.Duration("benchtime", 0, "time each implementation of a timed row is measured per run (default: 300ms, or 20ms with -quick)")
	only := flag.String("only", "", "measure only the groups whose ID matches this regular expression (e.g. 'near|far'); writes no file unless -out is given")
	list := flag.Bool("list", false, "list the groups' IDs and exit")
	mini := flag.Bool("miniredis", false, "use the embedded miniredis even if redis-server is on PATH")
	debug := flag.Bool("v", false, "print the time of each measurement")
	flag.Parse()
	if *debug {
		suite.Debug = os.Stderr
	}

	cfg := suite.Full
	if *quick {
		cfg = suite.Quick
	}
	if *runs > 0 {
		cfg.Runs = *runs
	}
	if *benchtime > 0 {
		cfg.BenchTime = *benchtime
	}
	groups := suite.Groups(cfg)
	if *list {
		for _, g := range groups {
			fmt.Printf("%-22s %s: %s\n", g.ID, g.Section, g.Case)
		}
		return nil
	}
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			return fmt.Errorf("-only: %w", err)
		}
		groups = filter(groups, re)
		if len(groups) == 0 {
			return fmt.Errorf("-only %q matches no group (see -list)", *only)
		}
	}
	path := *out
	if path == "" && !*quick && *only == "" && *runs == 0 && *benchtime == 0 {
		path = "RESULTS.md"
	}

	srv, err := redisproc.Start(*mini)
	if err != nil {
		return err
	}
	defer srv.Close()
	redisNote := srv.Kind + " on loopback, started for this run"
	if !srv.Real {
		redisNote = "embedded miniredis (no redis-server on PATH): rows that use Redis are marked †"
		fmt.Fprintln(os.Stderr, "report: no redis-server on PATH, using the embedded miniredis; Redis rows are marked †")
	}

	env := suite.NewEnv(cfg, srv)
	defer env.Close()
	began := time.Now()
	loadStart := loadAverage()
	fmt.Fprintf(os.Stderr, "report: load average %s at the start\n", loadStart)
	var results []suite.GroupResult
	for i, g := range groups {
		fmt.Fprintf(os.Stderr, "report: [%d/%d] %s: %s ... ", i+1, len(groups), g.Section, g.Case)
		gr := suite.Run(env, g)
		fmt.Fprintf(os.Stderr, "%.1fs\n", gr.Duration.Seconds())
		for _, r := range gr.Results {
			if r.Err != nil {
				fmt.Fprintf(os.Stderr, "report:   %s: %v\n", r.Impl.Name, r.Err)
			}
		}
		results = append(results, gr)
	}

	loadEnd := loadAverage()
	fmt.Fprintf(os.Stderr, "report: load average %s at the end\n", loadEnd)
	command := "cd bench && go run ./cmd/report"
	if *quick {
		command += " -quick"
	}
	h := suite.Header{
		Machine: machine(),
		Date:    began.UTC().Format("2006-01-02 15:04 UTC"),
		Go:      runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		Redis:   redisNote,
		Load:    [2]string{loadStart, loadEnd},
		Config:  cfg,
		Command: command,
		Quick:   *quick,
	}
	var buf bytes.Buffer
	suite.Render(&buf, h, results)
	fmt.Fprintf(&buf, "\nThe run took %s.\n", time.Since(began).Round(time.Second))
	os.Stdout.Write(buf.Bytes())
	if path != "" {
		if kept := keptSection(path); kept != "" {
			buf.WriteString(kept)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "report: wrote %s\n", path)
	}
	for _, gr := range results {
		for _, r := range gr.Results {
			if r.Err != nil {
				return fmt.Errorf("%s / %s: %w", gr.ID, r.Impl.Name, r.Err)
			}
		}
	}
	return nil
}

func filter(groups []suite.Group, re *regexp.Regexp) []suite.Group {
	var out []suite.Group
	for _, g := range groups {
		if re.MatchString(g.ID) {
			out = append(out, g)
		}
	}
	return out
}

// keptHeading starts the one section of RESULTS.md that the report does
// not measure: a one-off comparison of two versions of tier, with the
// command that made it, carried over from the file it replaces.
const keptHeading = "\n## Before and after this rewrite\n"

// keptSection returns the kept section of the file at path, from its
// heading to the end of the file, or "".
func keptSection(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	_, after, ok := strings.Cut(string(b), keptHeading)
	if !ok {
		return ""
	}
	return keptHeading + after
}

// loadAverage returns the 1, 5 and 15 minute load averages of the
// machine, as uptime prints them.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// machine names the CPU model and counts the cores.
func machine() string {
	model := runtime.GOARCH
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		model = cpuModel(f, model)
		f.Close()
	}
	return fmt.Sprintf("%s, %d cores (GOMAXPROCS %d)", model, runtime.NumCPU(), runtime.GOMAXPROCS(0))
}

func cpuModel(r io.Reader, fallback string) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return fallback
}
