package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "100": 100, "8MiB": 8 << 20, "8M": 8 << 20, "1G": 1 << 30, "5 MiB": 5 << 20, "2KiB": 2048, "7B": 7} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5M", "8MB", "99999999999T", "x"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, nil; want an error", in, got)
		}
	}
}

func TestParseFlagsPrecedence(t *testing.T) {
	env := map[string]string{"OFFLOAD_BUCKET": "from-env", "OFFLOAD_TABLE": "table-env", "OFFLOAD_QUIET": "5s", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000"}
	o, err := parseFlags("run", []string{"--bucket", "from-flag", "--ignore", "*.a, *.b"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if o.agent.Bucket != "from-flag" || o.agent.Table != "table-env" || o.agent.Quiet != 5*time.Second {
		t.Errorf("flag > env > default not honoured: %+v", o.agent)
	}
	if o.agent.Rescan != time.Minute || o.agent.After != "archive" || o.agent.Mapping.KeyPrefix != "original/" || o.agent.PartSize != 8<<20 {
		t.Errorf("defaults not applied: %+v", o.agent)
	}
	if strings.Join(o.agent.Ignore, "|") != "*.a|*.b" {
		t.Errorf("ignore = %q", o.agent.Ignore)
	}
	if !o.pathStyle {
		t.Errorf("path style not chosen for a custom S3 endpoint")
	}
	o, _ = parseFlags("run", nil, func(string) string { return "" })
	if o.pathStyle {
		t.Errorf("path style chosen without a custom endpoint")
	}
}

func TestParseFlagsErrorsNameTheSource(t *testing.T) {
	for _, tt := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--quiet", "soon"}, nil, "--quiet"},
		{nil, map[string]string{"OFFLOAD_WORKERS": "many"}, "OFFLOAD_WORKERS"},
		{nil, map[string]string{"OFFLOAD_S3_PATH_STYLE": "maybe"}, "s3-path-style"},
		{[]string{"--log-format", "xml"}, nil, "--log-format"},
		{[]string{"--nope"}, nil, "nope"},
		{[]string{"extra"}, nil, "unexpected"},
	} {
		_, err := parseFlags("run", tt.args, func(k string) string { return tt.env[k] })
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseFlags(%q, %v) = %v; want an error naming %q", tt.args, tt.env, err, tt.want)
		}
	}
}
