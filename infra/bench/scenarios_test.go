package main

import (
	"strings"
	"testing"
)

// TestCheckScenarios: every id the help names is accepted, alone or in a
// list; a typo is refused with the known ids, not run as nothing.
func TestCheckScenarios(t *testing.T) {
	for _, ok := range []string{"", "1", "1,3", "wan", "daemon", "backfill", "resume", "outage", "resolver", "hotcache", "cdn", "storage", "prune", "storage,3", "3,hotcache", "hotcache,cdn", "2,outage,resume", "prune,hotcache"} {
		if err := checkScenarios(ok); err != nil {
			t.Errorf("checkScenarios(%q): %v; want nil", ok, err)
		}
	}
	for _, bad := range []string{"wna", "1,,3", "hot-cache", "4", "CDN", "cloudfront", "purge", "erase"} {
		err := checkScenarios(bad)
		if err == nil || !strings.Contains(err.Error(), "known: ") {
			t.Errorf("checkScenarios(%q) = %v; want an error listing the known ids", bad, err)
		}
	}
}
