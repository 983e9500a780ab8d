package stacktest

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestReadDynaliteRestarts(t *testing.T) {
	t.Parallel()
	exited := time.Date(2026, 11, 30, 7, 40, 1, 123456789, time.UTC)
	started := exited.Add(250 * time.Millisecond)
	line := exited.Format(time.RFC3339Nano) + " " + started.Format(time.RFC3339Nano) + " signal: killed\n"
	for _, tt := range []struct {
		name    string
		text    string
		want    int
		wantErr bool
	}{
		{"empty: no restart yet", "", 0, false},
		{"one", line, 1, false},
		{"two", line + line, 2, false},
		{"a line still being written is left out", line + line[:20], 1, false},
		{"garbage", "not a restart\n", 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "restarts")
			if err := os.WriteFile(path, []byte(tt.text), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := ReadDynaliteRestarts(path)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v; want error %v", err, tt.wantErr)
			}
			if len(got) != tt.want {
				t.Fatalf("got %d restarts; want %d", len(got), tt.want)
			}
			if tt.want > 0 {
				if r := got[0]; !r.Exited.Equal(exited) || !r.Started.Equal(started) || r.Reason != "signal: killed" {
					t.Errorf("got %+v; want exited %s, started %s, reason %q", r, exited, started, "signal: killed")
				}
			}
		})
	}
	if _, err := ReadDynaliteRestarts(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing restarts file: no error")
	}
}

// TestStackRecordsDynaliteRestarts checks that the stack tells tests where
// dynalite's restarts are recorded, and that the record reads.
func TestStackRecordsDynaliteRestarts(t *testing.T) {
	t.Parallel()
	st := Require(t)
	st.DynaliteRestarts(t) // fails the test unless set and readable
}
