// One command line for every subcommand.
//
// Every subcommand of offload-agent parses its flags the same way: a stdlib
// flag.FlagSet of its own, named "offload-agent NAME", parsed by
// parseCommand, which
//   - prints the subcommand's own help on stdout and returns (false, 0) for
//     -h, -help or --help (also what "offload-agent help NAME" shows);
//   - for an unknown flag, says so on stderr with the closest flag
//     ("unknown flag --bukcet: did you mean --bucket?") and returns (false, 2);
//   - for a bad value, says "offload-agent NAME: --flag VALUE: what is wrong"
//     on stderr and returns (false, 2); positional arguments likewise;
//   - returns (true, 0) when the command may go on.
// Usage errors are one line on stderr, exit status 2; help is stdout, 0.
//
// A new subcommand, func xCommand(args []string, getenv func(string) string,
// stdout, stderr io.Writer) int, adopts it in two lines:
//
//	fs := newFlagSet("x", "offload-agent x [flags]\n\n  what x does, one paragraph.")
//	// fs.String, fs.Duration, fs.Func... as usual
//	if ok, code := parseCommand(fs, args, stdout, stderr); !ok {
//		return code
//	}
//
// and is listed in subcommands (cli.go) so that "help x" and the typo
// suggestions know it. A flag whose usage starts with "deprecated: " is left
// out of the help's list and named on its deprecated line.
//
// The agent's own settings (run, once, audit, status) are the settings
// table below: one entry per setting, its flag, its environment variable,
// its default and its help; a flag wins over the variable, the variable
// over the default. commandSettings says which commands take which
// settings (run and once take all of them); renamedFlags and renamedEnv keep
// the old spellings of renamed settings working, each with a one-line
// warning. A setting added to the table is taken by run and once; audit and
// status take it once it is listed in commandSettings too. Sizes take the units parseSize reads; durations Go's (2s, 1m,
// 1h30m); a zero duration or count is refused where it used to mean "the
// default" (see positiveDuration), and means zero only where zero is a
// setting of its own (--bwlimit 0, no limit).
//
// stdlib flag, not peterbourgon/ff: ff's gain is environment variables and
// one help style, and the settings table already gives both; ff derives a
// variable from each flag's name, where a renamed setting must still read
// its old variable (OFFLOAD_WORKERS) with a warning, and it leaves help on
// stdout, suggestions and the error format to the caller, as flag does.

package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/agent"
	"github.com/photosleeve/offload/agent/hotcache"
)

// overview is what "offload-agent help" prints before run's flags.
const overview = `offload-agent moves a web site's uploaded originals to S3 and keeps every URL working.

usage:
  offload-agent run [flags]      watch the folder and offload files as they settle, until SIGTERM
  offload-agent once [flags]     offload everything in the folder now, then exit
                                 (status 1 if any file failed, conflicted or was refused)
  offload-agent status [flags]   what the running agent is doing: pending files, uploads in
                                 flight, recent failures, totals
  offload-agent audit [flags]    compare the watch folder and the archive with the ledger and
                                 the bucket, read-only; print every discrepancy by kind
  offload-agent prune [flags]    remove archived files older than --min-age that S3 holds with
                                 the ledger's checksum (the offload-prune timer runs it)
  offload-agent doctor [flags]   check credentials, grants, folders, leases and the web
                                 server's fallback, one line each with the fix
  offload-agent erase [flags] --why REASON PATH_OR_KEY...
                                 erase originals for good: mark each in the ledger, delete
                                 every version of its key, abort its uploads (an operator's
                                 command, with EraserPolicy's grants)
  offload-agent init [flags]     configure this host (as root) from the SAM stack's outputs:
                                 the env file, the folders, the systemd drop-ins; idempotent
  offload-agent version          the version of this build (also --version)
  offload-agent help [COMMAND]   this text, or COMMAND's own help (also COMMAND --help)

`

// agentHelp is the help of run and once, before their flags.
const agentHelp = `offload-agent %s [flags]

  %s

Each file: settle (no writer has it open, and it was renamed into its name or is unchanged
for --quiet) -> upload with a full-object CRC64NVME that S3
checks, never overwriting (If-None-Match: *) -> verify -> record in the DynamoDB ledger ->
archive (or delete, or keep). A key that already holds other bytes is a conflict: the
local file is left where it is and an error is logged.

Hot cache (run only; --cache-dir DIR --access-log FILE): a path the web server redirected
--cache-threshold times within --cache-window is fetched from S3 into DIR, checked against
the ledger's size and CRC64NVME before it appears, and served by the web server from there
until it is evicted (least recently requested first over --cache-size, or idle for
--cache-idle). The web server's configuration must look in DIR: see infra/. Fetches take
at most --cache-fetch-budget per window; with signed links on (OFFLOAD_SIGNING_KEY or
--signing-key-file), only requests with a valid link count.

Erasures (run only): every --erase-poll the agent writes this host's heartbeat to the ledger,
looks for originals erased under its key prefix ("offload-agent erase"), removes its own
copies of each (watch folder, archive, upload records, hot cache; symbolic links are
removed, never followed) and acknowledges the erasure in the ledger. A file being
offloaded at that moment waits for the next poll. once does not poll.

S3 and DynamoDB endpoints, region and credentials come from the AWS SDK's own settings
(AWS_REGION, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_DYNAMODB, AWS_PROFILE, instance role...).
` + unitsHelp

// unitsHelp says how sizes and durations are written, for every command
// that takes them.
const unitsHelp = `
Sizes: a number, a fraction or not, and a unit: 512K, 8MiB, 1.5G, 1GB. K, M, G, T (as in
rclone, and as this agent always read them) and KiB, MiB, GiB, TiB are powers of 1024;
KB, MB, GB, TB are powers of 1000; B or none is bytes; units in any case.
Durations: 300ms, 2s, 1m30s, 24h.
`

// commandHelp is each settings-driven command's help, before its flags.
var commandHelp = map[string]string{
	"run":  fmt.Sprintf(agentHelp, "run", "Watch the folder and offload files as they settle, until SIGTERM."),
	"once": fmt.Sprintf(agentHelp, "once", "Offload everything in the folder now, then exit (status 1 if any file failed,\n  conflicted or was refused)."),
	"audit": `offload-agent audit [flags]

  Compare the watch folder and the archive with the ledger and the bucket, read-only, and
  print every discrepancy by kind: exit 0 if none, 1 if any, 3 if it could not look at
  everything. It reads the same settings as run (the same flags and environment), those
  that say where to look.

  --grace here is not run's: files, objects and erasures younger than it may be in
  progress and are not judged (0s judges everything). --deep also compares the CRC64NVME
  of every local file S3 holds. With --cache-dir, every cached file must be what the
  ledger records.

  Erasures: an erasure is complete once erase removed everything from S3 and every known
  host of the key prefix (one that wrote a heartbeat) acknowledged it. Until then audit
  reports erasure-incomplete (run offload-agent erase --why REASON KEY again),
  erasure-pending (naming each host not acknowledged, live or down since its last
  heartbeat; --host-timeout says when a host is down) or erased-object-present (the key
  answers again: run erase again), and exits 1. A retired host stays known until its
  heartbeat item is deleted:
  aws dynamodb delete-item --table-name TABLE --key '{"pk":{"S":"/host/NAME"}}'

Durations: 300ms, 2s, 1m30s, 24h.
`,
	"erase": eraseHelp,
	"prune": `offload-agent prune --min-age DURATION [flags]

  Remove archived files that S3 provably holds, to free the disk: a file goes only when its
  ledger item was recorded at least --min-age ago, is not an erasure's tombstone, and has the
  file's size and CRC64NVME, and S3 holds the version the item names with that size and
  full-object CRC64NVME (a HEAD of that version), as the key's current version (a HEAD of
  the key: a version under a delete marker or a newer version is what a lifecycle rule
  expires). A file that changed while prune looked is kept. Symbolic links are never
  followed; dot-folders are skipped; emptied folders stay. Each removed file is a line
  ("would remove" with --dry-run); a kept file is a line when a person should look
  (not_in_ledger, local_differs, s3_missing, s3_differs, s3_not_current, error); then the
  summary. Exit 0 done, 1 some file could not be checked or removed, 2 bad usage.
  It reads the same settings as run (the same flags and environment), those that say where
  to look; the offload-prune timer runs it daily with /etc/offload/agent.env.

Durations: 300ms, 2s, 1m30s, 24h; no d: 30 days is 720h.
`,
	"status": `offload-agent status [flags]

  Ask the running agent what it is doing: pending files, uploads in flight, recent
  failures, totals. It asks the agent's status socket (/run/offload/agent.sock, where the
  systemd unit's agent listens: run it as root or a member of group offload), or
  --status-socket PATH, or the agent's TCP listener with --metrics-addr HOST:PORT.
`,
}

// options is everything the command line and the environment say.
type options struct {
	agent     agent.Config
	metrics   string // listen address of the operations endpoints; "" is off
	pathStyle bool
	logFormat string
	logLevel  slog.Level
	// warnings are the deprecated spellings used, one line each, for the
	// caller to print on stderr.
	warnings []string

	statusSocket string // the --status-socket setting: auto, off or a path

	// prune's own settings.
	pruneMinAge     time.Duration // 0: not given
	metricsTextfile string

	// erase's own settings.
	cdnDistribution string // "": no CDN
	cdnWait         time.Duration
}

// setting is one flag with its environment fallback.
type setting struct {
	name, env, def, help string
	set                  func(o *options, v string) error
}

// booleans are the settings where --name alone means true.
var booleans = map[string]bool{"dry-run": true, "quiet-renamed": true}

// renamedFlags maps each old flag name to the setting that replaced it, and
// renamedEnv each old variable: both keep working, with a warning.
//   - --workers is rclone's --transfers (https://rclone.org/docs/#transfers-n:
//     "the number of file transfers to run in parallel").
//   - --metrics is --metrics-addr, as dockerd and rclone name the address of
//     a Prometheus listener (https://docs.docker.com/engine/daemon/prometheus/).
//   - --cache is --cache-dir (rclone's --cache-dir; OFFLOAD_CACHE_DIR already).
//
// --quiet stays: rclone's --min-age (https://rclone.org/filtering/#min-age-don-t-transfer-any-file-younger-than-this)
// leaves out files whose modification time is younger, for every file;
// --quiet waits on the change time, which a copy that keeps mtimes cannot
// fake, and a file renamed into its name does not wait at all, so
// --min-age would promise what the agent does not do.
var (
	renamedFlags = map[string]string{"workers": "transfers", "metrics": "metrics-addr", "cache": "cache-dir"}
	renamedEnv   = map[string]string{"OFFLOAD_WORKERS": "OFFLOAD_TRANSFERS", "OFFLOAD_METRICS": "OFFLOAD_METRICS_ADDR"}
)

// commandSettings lists the settings each command other than run and once
// takes (those two take every one): audit what says where to look, status
// where to ask.
var commandSettings = map[string][]string{
	"audit": {"watch", "archive", "after", "bucket", "table", "key-prefix", "url-prefix", "ignore", "call-timeout",
		"cache-dir", "host", "s3-path-style", "log-format", "log-level"},
	"erase": {"cdn-distribution", "cdn-wait", "bucket", "table", "key-prefix", "url-prefix", "call-timeout", "s3-path-style"},
	"prune": {"min-age", "metrics-textfile", "watch", "archive", "after", "bucket", "table", "key-prefix", "url-prefix", "ignore",
		"call-timeout", "s3-path-style", "log-format", "log-level"},
}

// commandOnly are the settings of one command alone, which no other
// command takes (once neither: erase-poll is run's alone).
var commandOnly = map[string]string{"min-age": "prune", "metrics-textfile": "prune", "erase-poll": "run",
	"cdn-distribution": "erase", "cdn-wait": "erase"}

var errHelp = errors.New("help requested")

// settings lists every flag; help prints them in this order.
var settings = []setting{
	{"cdn-distribution", "OFFLOAD_CDN_DISTRIBUTION_ID", "", "with the template's Cdn=on, the CloudFront distribution (output CdnDistributionId): each key's cached copies\nare invalidated once S3 holds none of it, and the erasure is done only when the invalidation is complete",
		func(o *options, v string) error {
			if v != "" {
				if err := offload.CheckDistributionID(v); err != nil {
					return err
				}
			}
			o.cdnDistribution = v
			return nil
		}},
	{"cdn-wait", "OFFLOAD_CDN_WAIT", agent.DefaultCDNWait.String(), "how long to wait for CloudFront to complete each invalidation; past it the key is not done (run erase again)",
		func(o *options, v string) error {
			d, err := time.ParseDuration(v)
			switch {
			case err != nil:
				return errors.New("want a duration like 15m")
			case d <= 0:
				return errors.New("want more than 0")
			}
			o.cdnWait = d
			return nil
		}},
	{"min-age", "OFFLOAD_PRUNE_MIN_AGE", "", "remove only archived files the ledger recorded at least this long ago; required, more than 0; hours are the largest unit: 720h is 30 days",
		func(o *options, v string) error {
			if v == "" {
				return nil // prune says it is required
			}
			d, err := time.ParseDuration(v)
			switch {
			case err != nil:
				return errors.New("want a duration like 720h (30 days; Go durations have no d)")
			case d <= 0:
				return errors.New("want more than 0")
			}
			o.pruneMinAge = d
			return nil
		}},
	{"metrics-textfile", "OFFLOAD_PRUNE_METRICS_TEXTFILE", "", "after the run, write its metrics to this file, NAME.prom, for node_exporter's textfile collector (replaced atomically)",
		func(o *options, v string) error {
			if v != "" && (!strings.HasSuffix(v, ".prom") || strings.HasSuffix(v, "/.prom")) {
				return errors.New("want a file NAME.prom: node_exporter's textfile collector reads only *.prom")
			}
			o.metricsTextfile = v
			return nil
		}},
	{"watch", "OFFLOAD_WATCH", "", "folder the back-end writes originals into (watched recursively)",
		func(o *options, v string) error { o.agent.Watch = v; return nil }},
	{"archive", "OFFLOAD_ARCHIVE", "", "folder offloaded files are moved to, same relative path (needed with --after archive)",
		func(o *options, v string) error { o.agent.Archive = v; return nil }},
	{"after", "OFFLOAD_AFTER", "archive", "what happens to a local file once S3 and the ledger hold it: archive, delete or keep",
		func(o *options, v string) error { o.agent.After = agent.After(v); return nil }},
	{"bucket", "OFFLOAD_BUCKET", "", "S3 bucket for the originals, a general purpose bucket (required)",
		func(o *options, v string) error {
			if v != "" {
				if err := offload.CheckBucketName(v); err != nil {
					return err
				}
			}
			o.agent.Bucket = v
			return nil
		}},
	{"table", "OFFLOAD_TABLE", "", "DynamoDB ledger table (required)",
		func(o *options, v string) error {
			if v != "" {
				if err := offload.CheckTableName(v); err != nil {
					return err
				}
			}
			o.agent.Table = v
			return nil
		}},
	{"storage-class", "OFFLOAD_STORAGE_CLASS", "", "S3 storage class of every upload, in S3's names: STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, GLACIER_IR (stored for less, still served at once)\nor REDUCED_REDUNDANCY; GLACIER and DEEP_ARCHIVE are refused, as a GET fails until a restore (default: none sent, S3's STANDARD)",
		func(o *options, v string) error {
			if err := agent.CheckStorageClass(v); err != nil {
				return err
			}
			o.agent.StorageClass = v
			return nil
		}},
	{"key-prefix", "OFFLOAD_KEY_PREFIX", offload.DefaultMapping.KeyPrefix, "prefix of every object key: empty or ending in /",
		func(o *options, v string) error { o.agent.Mapping.KeyPrefix = v; return nil }},
	{"url-prefix", "OFFLOAD_URL_PREFIX", offload.DefaultMapping.URLPrefix, "URL path the web server serves the watch folder under (shared with the resolver)",
		func(o *options, v string) error { o.agent.Mapping.URLPrefix = v; return nil }},
	{"quiet", "OFFLOAD_QUIET", agent.DefaultQuiet.String(), "a file written in place is settled when unchanged this long (one renamed into its name goes at once); more than 0",
		positiveDuration(func(o *options) *time.Duration { return &o.agent.Quiet })},
	{"quiet-renamed", "OFFLOAD_QUIET_RENAMED", "false", "renamed files wait for --quiet too (for a back-end that renames a first chunk into place and appends the rest)",
		boolSetter(func(o *options) *bool { return &o.agent.QuietForRenamed })},
	{"rescan", "OFFLOAD_RESCAN", agent.DefaultRescan.String(), "full scan period, on top of file-system events",
		positiveDuration(func(o *options) *time.Duration { return &o.agent.Rescan })},
	{"ignore", "OFFLOAD_IGNORE", strings.Join(agent.DefaultIgnore, ","), "comma-separated globs of base names never uploaded (dot-folders are always skipped)",
		func(o *options, v string) error { o.agent.Ignore = splitList(v); return nil }},
	{"part-size", "OFFLOAD_PART_SIZE", "8MiB", "multipart part size (5MiB..5GiB); larger files are uploaded in parts",
		positiveSize(func(o *options) *int64 { return &o.agent.PartSize })},
	{"concurrency", "OFFLOAD_CONCURRENCY", strconv.Itoa(agent.DefaultConcurrency), "memory budget in parts: the buffers of all uploads in flight, small files and parts alike, hold at most part-size x concurrency bytes",
		positiveInt(func(o *options) *int { return &o.agent.Concurrency })},
	{"transfers", "OFFLOAD_TRANSFERS", strconv.Itoa(agent.DefaultWorkers), "files offloaded at once; small files are latency-bound, so more in flight go faster, within the same memory budget",
		positiveInt(func(o *options) *int { return &o.agent.Workers })},
	{"dry-run", "OFFLOAD_DRY_RUN", "false", "say what would be uploaded, recorded and archived, and why; touch nothing (no upload, ledger write, move or abort)",
		boolSetter(func(o *options) *bool { return &o.agent.DryRun })},
	{"bwlimit", "OFFLOAD_BWLIMIT", "0", "cap on bytes per second sent to S3 across all uploads, e.g. 20M (= 20 MiB/s); 0 is no limit",
		func(o *options, v string) error { n, err := parseSize(v); o.agent.BandwidthLimit = n; return err }},
	{"grace", "OFFLOAD_GRACE", agent.DefaultGrace.String(), "on SIGTERM, how long in-flight uploads may finish before they are cut off (the files stay local; their multipart uploads are kept for the next run to resume)",
		positiveDuration(func(o *options) *time.Duration { return &o.agent.Grace })},
	{"call-timeout", "OFFLOAD_CALL_TIMEOUT", agent.DefaultCallTimeout.String(), "bound on every single S3 or DynamoDB call",
		positiveDuration(func(o *options) *time.Duration { return &o.agent.CallTimeout })},
	{"settle-timeout", "OFFLOAD_SETTLE_TIMEOUT", agent.DefaultSettleTimeout.String(), "once: a file still open for writing or changing this long after it was first seen is reported as not offloaded (exit status 1)",
		positiveDuration(func(o *options) *time.Duration { return &o.agent.SettleTimeout })},
	{"orphan-age", "OFFLOAD_ORPHAN_AGE", agent.DefaultOrphanAge.String(), "abort other agents' multipart uploads under the key prefix older than this (checked at start and every rescan); more than 0, as 0 would abort uploads other hosts have in flight",
		positiveDuration(func(o *options) *time.Duration { return &o.agent.OrphanAge })},
	{"erase-poll", "OFFLOAD_ERASE_POLL", agent.DefaultErasePoll.String(), "run: how often this host writes its heartbeat to the ledger and removes its copies of newly erased originals; more than 0",
		positiveDuration(func(o *options) *time.Duration { return &o.agent.ErasePoll })},
	{"cache-dir", "OFFLOAD_CACHE_DIR", "", "hot cache: keep the most requested offloaded originals in this folder, laid out as a second document root (/static/NAME is DIR/static/NAME), which the web server serves before it redirects; needs --access-log; never the watch or archive folder (default: off)",
		func(o *options, v string) error { o.agent.Cache.Dir = v; return nil }},
	{"access-log", "OFFLOAD_ACCESS_LOG", "", "the web server's access log (Common or Combined Log Format; rotation handled): each 302 under the URL prefix is a miss, each 200 for a cached file a hit",
		func(o *options, v string) error { o.agent.Cache.AccessLog = v; return nil }},
	{"cache-size", "OFFLOAD_CACHE_SIZE", "1GiB", "the hot cache's budget on disk; the least recently requested files go first when it is full, and no file over a quarter of it is cached",
		positiveSize(func(o *options) *int64 { return &o.agent.Cache.Size })},
	{"cache-threshold", "OFFLOAD_CACHE_THRESHOLD", strconv.Itoa(hotcache.DefaultThreshold), "redirects of one path within --cache-window that fetch it into the cache",
		positiveInt(func(o *options) *int { return &o.agent.Cache.Threshold })},
	{"cache-window", "OFFLOAD_CACHE_WINDOW", hotcache.DefaultWindow.String(), "the time --cache-threshold redirects must fall within, from the first",
		positiveDuration(func(o *options) *time.Duration { return &o.agent.Cache.Window })},
	{"cache-idle", "OFFLOAD_CACHE_IDLE", hotcache.DefaultIdle.String(), "a cached file not requested for this long is removed",
		positiveDuration(func(o *options) *time.Duration { return &o.agent.Cache.Idle })},
	{"cache-fetch-budget", "OFFLOAD_CACHE_FETCH_BUDGET", "", "bytes the hot cache may fetch from S3 per --cache-window, and at most at once, whatever is requested; a hot path it cannot pay for waits (default: twice --cache-size)",
		func(o *options, v string) error {
			if v == "" {
				return nil
			}
			return positiveSize(func(o *options) *int64 { return &o.agent.Cache.FetchBudget })(o, v)
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
	{"metrics-addr", "OFFLOAD_METRICS_ADDR", "", "serve /metrics, /healthz, /readyz and /status on this address, e.g. 127.0.0.1:9464 (default: off); status asks the agent there",
		func(o *options, v string) error {
			if v == "" {
				return nil
			}
			if _, _, err := net.SplitHostPort(v); err != nil {
				return errors.New("want host:port")
			}
			o.metrics = v
			return nil
		}},
	{"status-socket", "OFFLOAD_STATUS_SOCKET", "auto", "run: serve /status, /healthz, /readyz and /metrics on this unix socket (mode 0660), which offload-agent status asks; auto is agent.sock in $RUNTIME_DIRECTORY under systemd, else /run/offload/agent.sock if that folder is writable; off for none (once: only when given a path)",
		func(o *options, v string) error {
			if v != "" && v != "auto" && v != "off" && !filepath.IsAbs(v) {
				return fmt.Errorf("want an absolute path, auto or off, got %q", v)
			}
			o.statusSocket = v
			return nil
		}},
	{"log-format", "OFFLOAD_LOG_FORMAT", "text", "log format: text or json",
		func(o *options, v string) error {
			if v != "text" && v != "json" {
				return errors.New("want text or json")
			}
			o.logFormat = v
			return nil
		}},
	{"log-level", "OFFLOAD_LOG_LEVEL", "info", "log level: debug, info, warn or error",
		func(o *options, v string) error {
			if err := o.logLevel.UnmarshalText([]byte(v)); err != nil {
				return errors.New("want debug, info, warn or error")
			}
			return nil
		}},
}

// commandLine is the flags of one settings-driven command: a flag per
// setting it takes, the old spellings of renamed ones, and whatever flags of
// its own the command defines on fs before parsing.
type commandLine struct {
	cmd   string
	fs    *flag.FlagSet
	names []string           // the settings cmd takes, in help order
	given map[string]*string // a setting's flag value, by setting name
	alias map[string]string  // setting name → the old flag that gave it
	old   map[string]*string // setting name → the value its old flag gave
	// operands: the command takes arguments after its flags (erase's keys).
	operands bool
}

// newCommandLine makes the command line of run, once, audit or status.
func newCommandLine(cmd string) *commandLine {
	c := &commandLine{cmd: cmd, given: map[string]*string{}, alias: map[string]string{}, old: map[string]*string{}}
	c.fs = newFlagSet(cmd, commandHelp[cmd])
	takes := map[string]bool{}
	for _, n := range commandSettings[cmd] {
		takes[n] = true
	}
	for _, s := range settings {
		if commandSettings[cmd] != nil && !takes[s.name] {
			continue
		}
		if own, ok := commandOnly[s.name]; ok && own != cmd {
			continue
		}
		c.names = append(c.names, s.name)
		v := new(string)
		c.given[s.name] = v
		def := s.def
		if def == "" {
			def = `""`
		}
		usage := fmt.Sprintf("%s\nenv %s, default %s", s.help, s.env, def)
		if booleans[s.name] {
			c.fs.BoolFunc(s.name, usage, func(x string) error { *v = x; return nil })
		} else {
			c.fs.StringVar(v, s.name, "", usage)
		}
	}
	for old, name := range renamedFlags {
		if _, ok := c.given[name]; ok {
			v := new(string)
			c.old[name] = v
			c.fs.Func(old, "deprecated: use --"+name, func(x string) error { *v, c.alias[name] = x, old; return nil })
		}
	}
	c.fs.Usage = func() { writeUsage(c.fs, commandHelp[cmd], c.names) }
	return c
}

// parseFlags is newCommandLine(cmd) and resolve: the options of run, once,
// audit or status from args and the environment, without printing; -h is
// errHelp. main goes through parseCommand instead, which prints.
func parseFlags(cmd string, args []string, getenv func(string) string) (options, error) {
	c := newCommandLine(cmd)
	c.fs.SetOutput(io.Discard)
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return options{}, errHelp
		}
		return options{}, errors.New(describeParseError(c.fs, err))
	}
	if c.fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments %q", c.fs.Args())
	}
	return c.resolve(getenv)
}

// parseAgentFlags parses c's command line as every command does
// (parseCommand) and resolves the settings; a deprecated spelling is warned
// about on stderr. ok false: return code.
func parseAgentFlags(c *commandLine, args []string, getenv func(string) string, stdout, stderr io.Writer) (o options, ok bool, code int) {
	if ok, code := parseCommandArgs(c.fs, args, c.operands, stdout, stderr); !ok {
		return o, false, code
	}
	o, err := c.resolve(getenv)
	if err != nil { // one line: the error names the spelling used
		fmt.Fprintf(stderr, "%s: %v\n", c.fs.Name(), err)
		return o, false, 2
	}
	for _, w := range o.warnings {
		fmt.Fprintf(stderr, "%s: %s\n", c.fs.Name(), w)
	}
	return o, true, 0
}

// resolve applies, for each setting the command takes, the flag if given,
// else the environment variable if set, else the default.
func (c *commandLine) resolve(getenv func(string) string) (options, error) {
	var o options
	set := map[string]bool{}
	c.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	oldEnv := map[string]string{}
	for old, name := range renamedEnv {
		oldEnv[name] = old
	}
	pathStyle := ""
	for _, s := range settings {
		given, takes := c.given[s.name]
		if !takes {
			continue
		}
		v, from := s.def, "default"
		switch {
		case set[s.name]:
			v, from = *given, "--"+s.name+" "
		case c.alias[s.name] != "":
			old := c.alias[s.name]
			v, from = *c.old[s.name], "--"+old+" "
			o.warnings = append(o.warnings, fmt.Sprintf("--%s is deprecated; use --%s", old, s.name))
		case getenv(s.env) != "":
			v, from = getenv(s.env), s.env+"="
		case oldEnv[s.env] != "" && getenv(oldEnv[s.env]) != "":
			v, from = getenv(oldEnv[s.env]), oldEnv[s.env]+"="
			o.warnings = append(o.warnings, fmt.Sprintf("%s is deprecated; use %s", oldEnv[s.env], s.env))
		}
		if s.set == nil {
			pathStyle = v
			continue
		}
		if err := s.set(&o, v); err != nil {
			if from == "default" {
				return o, fmt.Errorf("--%s: default %s: %v", s.name, v, err)
			}
			msg := fmt.Sprintf("%s%s: %v", from, shown(v), err)
			if s.def != "" {
				msg += fmt.Sprintf(" (default %s)", s.def)
			}
			return o, errors.New(msg)
		}
	}
	// The key is never a flag (a command line is visible to every user of
	// the host); the environment, as the resolver reads it, or a file.
	if c.given["signing-key-file"] != nil {
		if k := getenv("OFFLOAD_SIGNING_KEY"); k != "" {
			if o.agent.Cache.SigningKey != nil {
				return o, errors.New("signing key: both OFFLOAD_SIGNING_KEY and a key file are given; give one")
			}
			o.agent.Cache.SigningKey = []byte(k)
		}
		if k := o.agent.Cache.SigningKey; k != nil && len(k) < offload.MinSigningKeyBytes {
			return o, fmt.Errorf("signing key: %d bytes, want at least %d", len(k), offload.MinSigningKeyBytes)
		}
	}
	switch pathStyle {
	case "auto":
		o.pathStyle = getenv("AWS_ENDPOINT_URL_S3") != "" || getenv("AWS_ENDPOINT_URL") != ""
	case "":
	default:
		b, err := strconv.ParseBool(pathStyle)
		if err != nil {
			return o, fmt.Errorf("s3-path-style %s: want true, false or auto", shown(pathStyle))
		}
		o.pathStyle = b
	}
	return o, nil
}

// shown is a value as an error message quotes it: bare when a shell would
// take it as it is, else quoted.
func shown(v string) string {
	plain := func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-/:@,=+%", r)
	}
	if v == "" || strings.ContainsFunc(v, func(r rune) bool { return !plain(r) }) {
		return strconv.Quote(v)
	}
	return v
}

// positiveDuration sets a duration that must be more than 0. Zero used to
// mean "the default" (agent.Config.WithDefaults fills in a zero field), so
// "--quiet 0s" silently meant 2s; it is refused instead, saying the default.
func positiveDuration(field func(*options) *time.Duration) func(*options, string) error {
	return func(o *options, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return errors.New("want a duration like 2s or 1m")
		}
		if d <= 0 {
			return errors.New("want more than 0")
		}
		*field(o) = d
		return nil
	}
}

// positiveInt sets a count that must be more than 0 (as positiveDuration).
func positiveInt(field func(*options) *int) func(*options, string) error {
	return func(o *options, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return errors.New("want a whole number")
		}
		if n <= 0 {
			return errors.New("want more than 0")
		}
		*field(o) = n
		return nil
	}
}

// positiveSize sets a size that must be more than 0 (as positiveDuration).
func positiveSize(field func(*options) *int64) func(*options, string) error {
	return func(o *options, v string) error {
		n, err := parseSize(v)
		if err != nil {
			return err
		}
		if n <= 0 {
			return errors.New("want more than 0")
		}
		*field(o) = n
		return nil
	}
}

// durationSetter and intSetter are positiveDuration and positiveInt under
// their old names, so an entry written against them keeps compiling and
// gets the zero rule.
var (
	durationSetter = positiveDuration
	intSetter      = positiveInt
)

func boolSetter(field func(*options) *bool) func(*options, string) error {
	return func(o *options, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("want true or false")
		}
		*field(o) = b
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

// maxSize bounds every size setting: 4 EiB, far beyond any disk or link,
// and room to double without overflowing an int64.
const maxSize = 1 << 62

// sizeUnits are the units parseSize reads, compared without case. Bare K, M,
// G and T are powers of 1024, as rclone reads them
// (https://rclone.org/docs/#size-option) and as this agent always has; the
// IEC names KiB... say so explicitly; KB, MB, GB and TB are the SI powers of
// 1000, as disk and link makers count.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
}

// parseSize reads a byte count: a whole or decimal number (1, 1.5, never
// .5, 1e3 or a sign), then, after optional spaces, one of sizeUnits. A
// fraction of a byte is dropped (1.1K is 1126).
func parseSize(v string) (int64, error) {
	bad := fmt.Errorf("want a size like 512K, 8MiB, 1.5G or 1GB")
	s := strings.TrimSpace(v)
	if len(s) > 64 { // no size needs more; bounds the arithmetic below
		return 0, bad
	}
	digits := func(s string) int {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i
	}
	whole := digits(s)
	if whole == 0 {
		return 0, bad
	}
	num, frac := s[:whole], ""
	rest := s[whole:]
	if strings.HasPrefix(rest, ".") {
		n := digits(rest[1:])
		if n == 0 {
			return 0, bad
		}
		frac, rest = rest[1:1+n], rest[1+n:]
	}
	mult, ok := sizeUnits[strings.ToLower(strings.TrimSpace(rest))]
	if !ok {
		return 0, bad
	}
	// (num.frac × mult), exactly, then down to whole bytes.
	n, _ := new(big.Int).SetString(num+frac, 10)
	n.Mul(n, big.NewInt(mult))
	n.Quo(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(frac))), nil))
	if n.Cmp(big.NewInt(maxSize)) > 0 {
		return 0, fmt.Errorf("more than the largest size, %d bytes (4 EiB)", int64(maxSize))
	}
	return n.Int64(), nil
}
