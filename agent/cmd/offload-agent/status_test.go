package main

import (
	"testing"
	"time"

	"github.com/photosleeve/offload/agent"
)

func TestProgressText(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		f    agent.InFlight
		want string
	}{
		{agent.InFlight{Bytes: 100 << 20, Uploaded: 50 << 20, Started: now.Add(-5 * time.Second)},
			"[##########..........]  50%  50.0 MiB / 100.0 MiB  10.0 MiB/s  ETA 5s"},
		{agent.InFlight{Bytes: 3000, Started: now}, "[....................]   0%  0 B / 2.9 KiB"},
		{agent.InFlight{Bytes: 0, Started: now.Add(-time.Second)}, "[####################] 100%  0 B / 0 B"},
	} {
		if got := progressText(tt.f, now); got != tt.want {
			t.Errorf("progressText(%+v) = %q; want %q", tt.f, got, tt.want)
		}
	}
}

func TestBytesText(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 16<<20 + 2000: "16.0 MiB", 5 << 40: "5.0 TiB"} {
		if got := bytesText(n); got != want {
			t.Errorf("bytesText(%d) = %q; want %q", n, got, want)
		}
	}
}
