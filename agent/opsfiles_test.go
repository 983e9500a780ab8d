package agent_test

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gopkg.in/yaml.v3"

	"github.com/photosleeve/offload/agent"
	"github.com/photosleeve/offload/agent/hotcache"
)

// TestDashboardAndAlertsUseRealMetrics: infra/grafana/dashboard.json and
// alerts.yaml parse, and every offload_ metric they name is one the agent
// serves (no AWS call is made: the clients are never used).
func TestDashboardAndAlertsUseRealMetrics(t *testing.T) {
	// With the hot cache configured, so that its metrics are served too.
	cfg := agent.Config{Watch: t.TempDir(), Archive: t.TempDir(), Bucket: "b", Table: "t",
		Cache: hotcache.Config{Dir: t.TempDir(), AccessLog: "/var/log/lighttpd/access.log"}}
	a, err := agent.New(cfg, s3.New(s3.Options{Region: "us-east-1"}), dynamodb.New(dynamodb.Options{Region: "us-east-1"}))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	_, text := get(t, srv, "/metrics")
	served := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[0] == "#" && f[1] == "TYPE" {
			served[f[2]] = true
			if f[3] == "histogram" {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					served[f[2]+s] = true
				}
			}
		}
	}

	dash, err := os.ReadFile("../infra/grafana/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(dash, &d); err != nil || len(d.Panels) == 0 {
		t.Fatalf("dashboard.json: %v (%d panels)", err, len(d.Panels))
	}
	rules, err := os.ReadFile("../infra/grafana/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(rules, &r); err != nil || len(r.Groups) == 0 || len(r.Groups[0].Rules) < 3 {
		t.Fatalf("alerts.yaml: %v", err)
	}
	metric := regexp.MustCompile(`offload_[a-z_]+`)
	check := func(where, expr string) {
		names := metric.FindAllString(expr, -1)
		if len(names) == 0 {
			t.Errorf("%s: no offload_ metric in %q", where, expr)
		}
		for _, n := range names {
			if !served[n] {
				t.Errorf("%s: %s is not a metric the agent serves", where, n)
			}
		}
	}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			check("dashboard panel "+p.Title, tg.Expr)
		}
	}
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			check("alert "+rule.Alert, rule.Expr)
		}
	}
}
