package agent

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/photosleeve/offload/agent/hotcache"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

// metricFamilies gathers the offload_ metrics newMetrics registers for an
// agent built with this After and, if cache, the hot cache on. Nothing
// runs: the values are those of an agent that has done nothing yet.
func metricFamilies(after After, cache bool) ([]*dto.MetricFamily, error) {
	cfg := Config{After: after}
	if after == AfterArchive {
		cfg.Archive = "/nonexistent" // the free-bytes gauge reads -1; only its definition counts here
	}
	if cache {
		cfg.Cache = hotcache.Config{Dir: "/nonexistent", AccessLog: "/nonexistent"}
	}
	a := &Agent{cfg: cfg, s3: &s3Store{}, track: newTracker()}
	mfs, err := newMetrics(a).registry.Gather()
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(mfs, func(mf *dto.MetricFamily) bool {
		return !strings.HasPrefix(mf.GetName(), "offload_")
	}), nil
}

// metricsReference is docs/reference/metrics.md: every offload_ metric the
// agent serves, from the definitions in newMetrics.
func metricsReference() ([]byte, error) {
	all, err := metricFamilies(AfterArchive, true)
	if err != nil {
		return nil, err
	}
	names := func(mfs []*dto.MetricFamily) map[string]bool {
		s := map[string]bool{}
		for _, mf := range mfs {
			s[mf.GetName()] = true
		}
		return s
	}
	// A metric that only the cache, or only the archive, brings in.
	plain, err := metricFamilies(AfterKeep, false)
	if err != nil {
		return nil, err
	}
	withCache, err := metricFamilies(AfterKeep, true)
	if err != nil {
		return nil, err
	}
	withArchive, err := metricFamilies(AfterArchive, false)
	if err != nil {
		return nil, err
	}
	always, allNames := names(plain), names(all)
	extra := func(mfs []*dto.MetricFamily) []string {
		var out []string
		for n := range names(mfs) {
			if !always[n] {
				out = append(out, n)
			}
		}
		slices.Sort(out)
		return out
	}

	var b bytes.Buffer
	b.WriteString("# offload-agent: metrics reference\n\n")
	b.WriteString("The Prometheus metrics the agent serves at `/metrics` (on `--metrics-addr` and the status socket).\n")
	b.WriteString("Generated from the definitions the binary uses (`agent/metrics.go`); do not edit.\n")
	b.WriteString("`make docs` writes it again; `make test` fails while it is stale (`agent/metrics_reference_test.go`).\n\n")
	fmt.Fprintf(&b, "- Only with the hot cache on (`--cache-dir` and `--access-log`): %s.\n", metricNames(extra(withCache), allNames))
	fmt.Fprintf(&b, "- Only with `--after archive` (the default): %s.\n", metricNames(extra(withArchive), allNames))
	b.WriteString("- Every other metric in the table below is always served.\n")
	b.WriteString("- Where the labels column lists values, the agent serves one series per value from the start, each at 0.\n")
	if slices.ContainsFunc(all, func(mf *dto.MetricFamily) bool { return mf.GetType() == dto.MetricType_HISTOGRAM }) {
		b.WriteString("- A histogram is served as `NAME_bucket` (label `le`), `NAME_sum` and `NAME_count`.\n")
	}
	b.WriteString("- The standard Go runtime (`go_*`) and process (`process_*`) collectors are served too; they are not listed here.\n\n")

	metricTable(&b, all)

	// prune runs as a oneshot (the offload-prune timer) and serves nothing;
	// it writes its metrics to a file instead.
	prune, err := PruneMetrics(PruneSummary{}).Gather()
	if err != nil {
		return nil, err
	}
	b.WriteString("\n## offload-agent prune\n\n")
	b.WriteString("`offload-agent prune --metrics-textfile FILE` (or `OFFLOAD_PRUNE_METRICS_TEXTFILE`) writes these at the end of each run, ")
	b.WriteString("in the Prometheus text format, to a temporary file then renamed over FILE: ")
	b.WriteString("point node_exporter's textfile collector (`--collector.textfile.directory`) at FILE's folder, and name FILE `*.prom`. ")
	b.WriteString("Each is a gauge of the last run; a dry run removes nothing, so its removed counts are 0.\n\n")
	metricTable(&b, prune)
	return b.Bytes(), nil
}

// metricTable writes one Markdown table of mfs, by name.
func metricTable(b *bytes.Buffer, mfs []*dto.MetricFamily) {
	b.WriteString("| name | type | labels | meaning |\n")
	b.WriteString("|---|---|---|---|\n")
	slices.SortFunc(mfs, func(x, y *dto.MetricFamily) int { return strings.Compare(x.GetName(), y.GetName()) })
	for _, mf := range mfs {
		fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", mf.GetName(), strings.ToLower(mf.GetType().String()),
			metricLabels(mf), tableCell(mf.GetHelp()))
	}
}

// metricNames names the metrics of set as code: as prefix* when they are
// all the metrics that share their common prefix, else one by one.
func metricNames(set []string, all map[string]bool) string {
	if len(set) == 0 {
		return "none"
	}
	if len(set) > 1 {
		prefix := set[0]
		for _, n := range set[1:] {
			for !strings.HasPrefix(n, prefix) {
				prefix = prefix[:len(prefix)-1]
			}
		}
		prefix = prefix[:strings.LastIndex(prefix, "_")+1]
		sharing := 0
		for n := range all {
			if strings.HasPrefix(n, prefix) {
				sharing++
			}
		}
		if prefix != "offload_" && sharing == len(set) {
			return fmt.Sprintf("the `%s*` metrics", prefix)
		}
	}
	quoted := make([]string, len(set))
	for i, n := range set {
		quoted[i] = "`" + n + "`"
	}
	return strings.Join(quoted, ", ")
}

// metricLabels lists a family's labels. A label that varies across the
// family's series has its values listed: the code fixes them and serves
// each one. A family of one series (offload_build_info) has its label names
// only, as their values depend on the build.
func metricLabels(mf *dto.MetricFamily) string {
	values := map[string][]string{}
	for _, m := range mf.GetMetric() {
		for _, lp := range m.GetLabel() {
			if !slices.Contains(values[lp.GetName()], lp.GetValue()) {
				values[lp.GetName()] = append(values[lp.GetName()], lp.GetValue())
			}
		}
	}
	if len(values) == 0 {
		return "—"
	}
	var out []string
	for _, name := range slices.Sorted(maps.Keys(values)) {
		vs := values[name]
		if len(mf.GetMetric()) == 1 {
			out = append(out, "`"+tableCell(name)+"`")
			continue
		}
		slices.Sort(vs)
		for i, v := range vs {
			vs[i] = "`" + tableCell(v) + "`"
		}
		out = append(out, "`"+tableCell(name)+"`: "+strings.Join(vs, ", "))
	}
	return strings.Join(out, "; ")
}

// tableCell makes text safe inside one cell of a Markdown table.
func tableCell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.ReplaceAll(s, "|", `\|`)
}

// TestMetricsReferenceIsCurrent: the checked-in metrics reference is what
// newMetrics defines now. OFFLOAD_UPDATE_DOCS=1 (make docs) writes it.
func TestMetricsReferenceIsCurrent(t *testing.T) {
	want, err := metricsReference()
	if err != nil {
		t.Fatal(err)
	}
	stacktest.GeneratedDoc(t, "docs/reference/metrics.md", want, "a metric")
}
