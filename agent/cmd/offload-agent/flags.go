package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/agent"
	"github.com/photosleeve/offload/agent/hotcache"
)

const usage = `offload-agent moves a web site's uploaded originals to S3 and keeps every URL working.

usage:
  offload-agent run  [flags]   watch the folder and offload files as they settle, until SIGTERM
  offload-agent once [flags]   offload everything in the folder now, then exit
                               (status 1 if any file failed, conflicted or was refused)
  offload-agent status [--metrics ADDR] [--json]
                               what the running agent is doing: pending files, uploads in
                               flight, recent failures, totals (asks its --metrics listener)
  offload-agent audit [flags] [--json] [--deep] [--grace 1h]
                               compare the watch folder and the archive with the ledger and
                               the bucket, read-only; print every discrepancy by kind (exit 1
                               if any, 3 if it could not look at everything). --deep also
                               compares the CRC64NVME of every local file S3 holds; files and
                               objects younger than --grace may be mid-offload, not judged.
                               With --cache, every cached file must be what the ledger records
  offload-agent doctor [flags]  check credentials, grants, folders, leases and the web
                               server's fallback, one line each with the fix (exit 1 if any
                               check fails); see offload-agent doctor --help
  offload-agent version        the version of this build (also --version)
  offload-agent help           this text

Each file: settle (no writer has it open, and it was renamed into its name or is unchanged
for --quiet) -> upload with a full-object CRC64NVME that S3
checks, never overwriting (If-None-Match: *) -> verify -> record in the DynamoDB ledger ->
archive (or delete, or keep). A key that already holds other bytes is a conflict: the
local file is left where it is and an error is logged.

Hot cache (run only; --cache DIR --access-log FILE): a path the web server redirected
--cache-threshold times within --cache-window is fetched from S3 into DIR, checked against
the ledger's size and CRC64NVME before it appears, and served by the web server from there
until it is evicted (least recently requested first over --cache-size, or idle for
--cache-idle). The web server's configuration must look in DIR: see infra/. Fetches take
at most --cache-fetch-budget per window; with signed links on (OFFLOAD_SIGNING_KEY or
--signing-key-file), only requests with a valid link count.

S3 and DynamoDB endpoints, region and credentials come from the AWS SDK's own settings
(AWS_REGION, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_DYNAMODB, AWS_PROFILE, instance role...).

flags (each also read from the environment variable shown; a flag wins):
`

// options is everything the command line and the environment say.
type options struct {
	agent     agent.Config
	metrics   string // listen address of the operations endpoints; "" is off
	pathStyle bool
	logFormat string
	logLevel  slog.Level
}

// setting is one flag with its environment fallback.
type setting struct {
	name, env, def, help string
	set                  func(o *options, v string) error
}

// booleans are the settings where --name alone means true.
var booleans = map[string]bool{"dry-run": true, "quiet-renamed": true}

var errHelp = errors.New("help requested")

// settings lists every flag; help prints them in this order.
var settings = []setting{
	{"watch", "OFFLOAD_WATCH", "", "folder the back-end writes originals into (watched recursively)",
		func(o *options, v string) error { o.agent.Watch = v; return nil }},
	{"archive", "OFFLOAD_ARCHIVE", "", "folder offloaded files are moved to, same relative path (needed with --after archive)",
		func(o *options, v string) error { o.agent.Archive = v; return nil }},
	{"after", "OFFLOAD_AFTER", "archive", "what happens to a local file once S3 and the ledger hold it: archive, delete or keep",
		func(o *options, v string) error { o.agent.After = agent.After(v); return nil }},
	{"bucket", "OFFLOAD_BUCKET", "", "S3 bucket for the originals (required)",
		func(o *options, v string) error { o.agent.Bucket = v; return nil }},
	{"table", "OFFLOAD_TABLE", "", "DynamoDB ledger table (required)",
		func(o *options, v string) error { o.agent.Table = v; return nil }},
	{"key-prefix", "OFFLOAD_KEY_PREFIX", offload.DefaultMapping.KeyPrefix, "prefix of every object key: empty or ending in /",
		func(o *options, v string) error { o.agent.Mapping.KeyPrefix = v; return nil }},
	{"url-prefix", "OFFLOAD_URL_PREFIX", offload.DefaultMapping.URLPrefix, "URL path the web server serves the watch folder under (shared with the resolver)",
		func(o *options, v string) error { o.agent.Mapping.URLPrefix = v; return nil }},
	{"quiet", "OFFLOAD_QUIET", agent.DefaultQuiet.String(), "a file written in place is settled when unchanged this long (one renamed into its name goes at once)",
		durationSetter(func(o *options) *time.Duration { return &o.agent.Quiet })},
	{"quiet-renamed", "OFFLOAD_QUIET_RENAMED", "false", "renamed files wait for --quiet too (for a back-end that renames a first chunk into place and appends the rest)",
		boolSetter(func(o *options) *bool { return &o.agent.QuietForRenamed })},
	{"rescan", "OFFLOAD_RESCAN", agent.DefaultRescan.String(), "full scan period, on top of file-system events",
		durationSetter(func(o *options) *time.Duration { return &o.agent.Rescan })},
	{"ignore", "OFFLOAD_IGNORE", strings.Join(agent.DefaultIgnore, ","), "comma-separated globs of base names never uploaded (dot-folders are always skipped)",
		func(o *options, v string) error { o.agent.Ignore = splitList(v); return nil }},
	{"part-size", "OFFLOAD_PART_SIZE", "8MiB", "multipart part size (5MiB..5GiB); larger files are uploaded in parts",
		func(o *options, v string) error { n, err := parseSize(v); o.agent.PartSize = n; return err }},
	{"concurrency", "OFFLOAD_CONCURRENCY", strconv.Itoa(agent.DefaultConcurrency), "memory budget in parts: the buffers of all uploads in flight, small files and parts alike, hold at most part-size x concurrency bytes",
		intSetter(func(o *options) *int { return &o.agent.Concurrency })},
	{"workers", "OFFLOAD_WORKERS", strconv.Itoa(agent.DefaultWorkers), "files offloaded at once; small files are latency-bound, so more in flight go faster, within the same memory budget",
		intSetter(func(o *options) *int { return &o.agent.Workers })},
	{"dry-run", "OFFLOAD_DRY_RUN", "false", "say what would be uploaded, recorded and archived, and why; touch nothing (no upload, ledger write, move or abort)",
		boolSetter(func(o *options) *bool { return &o.agent.DryRun })},
	{"bwlimit", "OFFLOAD_BWLIMIT", "0", "cap on bytes per second sent to S3 across all uploads, e.g. 20M (= 20 MiB/s); 0 is no limit",
		func(o *options, v string) error { n, err := parseSize(v); o.agent.BandwidthLimit = n; return err }},
	{"grace", "OFFLOAD_GRACE", agent.DefaultGrace.String(), "on SIGTERM, how long in-flight uploads may finish before they are aborted",
		durationSetter(func(o *options) *time.Duration { return &o.agent.Grace })},
	{"call-timeout", "OFFLOAD_CALL_TIMEOUT", agent.DefaultCallTimeout.String(), "bound on every single S3 or DynamoDB call",
		durationSetter(func(o *options) *time.Duration { return &o.agent.CallTimeout })},
	{"settle-timeout", "OFFLOAD_SETTLE_TIMEOUT", agent.DefaultSettleTimeout.String(), "once: a file still open for writing or changing this long after it was first seen is reported as not offloaded (exit status 1)",
		durationSetter(func(o *options) *time.Duration { return &o.agent.SettleTimeout })},
	{"orphan-age", "OFFLOAD_ORPHAN_AGE", agent.DefaultOrphanAge.String(), "abort other agents' multipart uploads under the key prefix older than this (checked at start and every rescan)",
		durationSetter(func(o *options) *time.Duration { return &o.agent.OrphanAge })},
	{"cache", "OFFLOAD_CACHE_DIR", "", "hot cache: keep the most requested offloaded originals in this folder, laid out as a second document root (/static/NAME is DIR/static/NAME), which the web server serves before it redirects; needs --access-log; never the watch or archive folder (default: off)",
		func(o *options, v string) error { o.agent.Cache.Dir = v; return nil }},
	{"access-log", "OFFLOAD_ACCESS_LOG", "", "the web server's access log (Common or Combined Log Format; rotation handled): each 302 under the URL prefix is a miss, each 200 for a cached file a hit",
		func(o *options, v string) error { o.agent.Cache.AccessLog = v; return nil }},
	{"cache-size", "OFFLOAD_CACHE_SIZE", "1GiB", "the hot cache's budget on disk; the least recently requested files go first when it is full, and no file over a quarter of it is cached",
		func(o *options, v string) error { n, err := parseSize(v); o.agent.Cache.Size = n; return err }},
	{"cache-threshold", "OFFLOAD_CACHE_THRESHOLD", strconv.Itoa(hotcache.DefaultThreshold), "redirects of one path within --cache-window that fetch it into the cache",
		intSetter(func(o *options) *int { return &o.agent.Cache.Threshold })},
	{"cache-window", "OFFLOAD_CACHE_WINDOW", hotcache.DefaultWindow.String(), "the time --cache-threshold redirects must fall within, from the first",
		durationSetter(func(o *options) *time.Duration { return &o.agent.Cache.Window })},
	{"cache-idle", "OFFLOAD_CACHE_IDLE", hotcache.DefaultIdle.String(), "a cached file not requested for this long is removed",
		durationSetter(func(o *options) *time.Duration { return &o.agent.Cache.Idle })},
	{"cache-fetch-budget", "OFFLOAD_CACHE_FETCH_BUDGET", "", "bytes the hot cache may fetch from S3 per --cache-window, and at most at once, whatever is requested; a hot path it cannot pay for waits (default: twice --cache-size)",
		func(o *options, v string) error {
			if v == "" {
				return nil
			}
			n, err := parseSize(v)
			o.agent.Cache.FetchBudget = n
			return err
		}},
	{"signing-key-file", "OFFLOAD_SIGNING_KEY_FILE", "", "with signed links on: a file holding the resolver's OFFLOAD_SIGNING_KEY (its bytes, a final newline dropped), mode 600 or 640; the hot cache then counts only requests with a valid link. OFFLOAD_SIGNING_KEY itself also works",
		func(o *options, v string) error {
			if v == "" {
				return nil
			}
			key, err := readKeyFile(v)
			o.agent.Cache.SigningKey = key
			return err
		}},
	{"host", "OFFLOAD_HOST", "", "host name recorded in the ledger (default: this machine's)",
		func(o *options, v string) error { o.agent.Host = v; return nil }},
	{"s3-path-style", "OFFLOAD_S3_PATH_STYLE", "auto", "path-style S3 URLs: true, false, or auto (true when AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL is set)",
		nil}, // resolved in parseFlags: it depends on other variables
	{"metrics", "OFFLOAD_METRICS", "", "serve /metrics, /healthz, /readyz and /status on this address, e.g. 127.0.0.1:9464 (default: off)",
		func(o *options, v string) error {
			if v == "" {
				return nil
			}
			if _, _, err := net.SplitHostPort(v); err != nil {
				return fmt.Errorf("want host:port, got %q", v)
			}
			o.metrics = v
			return nil
		}},
	{"log-format", "OFFLOAD_LOG_FORMAT", "text", "log format: text or json",
		func(o *options, v string) error {
			if v != "text" && v != "json" {
				return fmt.Errorf("want text or json, got %q", v)
			}
			o.logFormat = v
			return nil
		}},
	{"log-level", "OFFLOAD_LOG_LEVEL", "info", "log level: debug, info, warn or error",
		func(o *options, v string) error { return o.logLevel.UnmarshalText([]byte(v)) }},
}

// parseFlags applies, for each setting, the flag if given, else the
// environment variable if set, else the default.
func parseFlags(cmd string, args []string, getenv func(string) string) (options, error) {
	var o options
	fs := flag.NewFlagSet("offload-agent "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	given := map[string]*string{}
	for _, s := range settings {
		v := new(string)
		given[s.name] = v
		if booleans[s.name] {
			fs.BoolFunc(s.name, s.help, func(x string) error { *v = x; return nil })
			continue
		}
		fs.StringVar(v, s.name, "", s.help)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Print(usage)
			printFlags(nil)
			return o, errHelp
		}
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	pathStyle := ""
	for _, s := range settings {
		v, from := s.def, "default"
		if set[s.name] {
			v, from = *given[s.name], "--"+s.name
		} else if e := getenv(s.env); e != "" {
			v, from = e, s.env
		}
		if s.set == nil {
			pathStyle = v
			continue
		}
		if err := s.set(&o, v); err != nil {
			return o, fmt.Errorf("%s: %v", from, err)
		}
	}
	// The key is never a flag (a command line is visible to every user of
	// the host); the environment, as the resolver reads it, or a file.
	if k := getenv("OFFLOAD_SIGNING_KEY"); k != "" {
		if o.agent.Cache.SigningKey != nil {
			return o, errors.New("signing key: both OFFLOAD_SIGNING_KEY and a key file are given; give one")
		}
		o.agent.Cache.SigningKey = []byte(k)
	}
	if k := o.agent.Cache.SigningKey; k != nil && len(k) < offload.MinSigningKeyBytes {
		return o, fmt.Errorf("signing key: %d bytes, want at least %d", len(k), offload.MinSigningKeyBytes)
	}
	switch pathStyle {
	case "auto":
		o.pathStyle = getenv("AWS_ENDPOINT_URL_S3") != "" || getenv("AWS_ENDPOINT_URL") != ""
	default:
		b, err := strconv.ParseBool(pathStyle)
		if err != nil {
			return o, fmt.Errorf("s3-path-style: want true, false or auto, got %q", pathStyle)
		}
		o.pathStyle = b
	}
	return o, nil
}

func printFlags(w io.Writer) {
	if w == nil {
		w = stdout{}
	}
	for _, s := range settings {
		def := s.def
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "  --%-18s %s\n  %-20s env %s, default %s\n", s.name, s.help, "", s.env, def)
	}
}

type stdout struct{}

func (stdout) Write(p []byte) (int, error) { return fmt.Print(string(p)) }

func durationSetter(field func(*options) *time.Duration) func(*options, string) error {
	return func(o *options, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("want a duration like 2s or 1m, got %q", v)
		}
		*field(o) = d
		return nil
	}
}

func boolSetter(field func(*options) *bool) func(*options, string) error {
	return func(o *options, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", v)
		}
		*field(o) = b
		return nil
	}
}

func intSetter(field func(*options) *int) func(*options, string) error {
	return func(o *options, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("want a whole number, got %q", v)
		}
		*field(o) = n
		return nil
	}
}

func splitList(v string) []string {
	out := []string{}
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// readKeyFile reads a signing key: the file's bytes, a final newline
// dropped (an editor's or echo's), so the file holds what
// OFFLOAD_SIGNING_KEY would. Whoever can read the key can sign links to
// every original, and whoever can write it can swap it, so a file others
// may read, or its group write, is refused, as ssh refuses a private key
// others can read; 640 leaves room for a group the web server is in, when
// it reads the same file.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o027 != 0 {
		return nil, fmt.Errorf("%s has mode %04o: others may read it or its group write it; chmod 600 (or 640 for a group the web server is in)", path, perm)
	}
	const maxKeyFile = 64 << 10 // far beyond any key; a bound on a wrong file
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a key", path, maxKeyFile)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r")), nil
}

// parseSize reads a byte count: a number with an optional binary unit
// (K, M, G, T or KiB, MiB, GiB, TiB; all powers of 1024).
func parseSize(v string) (int64, error) {
	s := strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("want a size like 8MiB, got %q", v)
	}
	return n * mult, nil
}
