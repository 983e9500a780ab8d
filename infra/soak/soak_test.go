// Package soak is the chaos soak. The real agent binary runs against a
// private MinIO and the stack's dynalite, both behind Toxiproxy, while a
// writer drops files into the watch folder and a poller asks for every URL
// through lighttpd and the resolver, and probes each densely around the
// moment its file leaves the watch folder. Faults follow a seeded schedule:
// kill -9 of the agent, outages, connection resets, latency, blackholes, a
// MinIO crash mid-upload and an archive folder that refuses writes. At the
// end, with the faults off, the agent drains and everything is checked
// against what was written: nothing may be lost, corrupt or overwritten.
//
// "make test" runs the short profile; "make soak" the full one:
//
//	go test ./infra/soak -run TestSoak -v -timeout 2h -args -soak.profile full [-soak.seed N]
//
// -soak.break all breaks each outcome a check guards, once, to show that
// the checks fire; that run must fail.
package soak

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

const soakBucket = "offload-soak"

// agentHost is the agent's --host, which every ledger item must name.
const agentHost = "soak"

func TestSoak(t *testing.T) {
	s, err := loadSettings()
	if err != nil {
		t.Fatal(err)
	}
	st := stacktest.Require(t)
	// dynalite restarts are counted from here; each one is the stand-in's
	// crash (see stacktest.DynaliteRestart), so it is reported, not a bad count.
	dynaliteBefore := len(st.DynaliteRestarts(t))
	fmt.Printf("soak: seed %d (replay with -soak.seed %d), %d files up to %d MiB over %s, %d kills, %s outages\n",
		s.Seed, s.Seed, s.Files, s.MaxSize>>20, s.Duration, s.Kills, s.Outage)
	w := newWorld(t, st, s)
	files, faults := makePlan(s)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wr := &writer{watch: w.watch, archive: w.archive, seed: s.Seed, quiet: w.quiet, published: w.publish}
	written := make(chan struct{})
	go func() { defer close(written); wr.run(ctx, files, s.Duration) }()

	w.inject(faults)
	for waiting := true; waiting; {
		select {
		case <-written:
			waiting = false
		case <-time.After(500 * time.Millisecond):
			w.watchAgent()
		}
	}
	w.clearFaults()
	versions, byName, bytes, errs := wr.snapshot()
	for _, err := range errs {
		t.Errorf("writer: %v", err)
	}
	drain := s.Drain
	if s.Break[breakDrain] {
		drain = w.breakDrain(versions, byName)
	}
	fmt.Printf("soak: writer done after %s; faults off; draining (up to %s)\n", time.Since(w.start).Round(time.Second), drain)
	drained := w.drain(versions, byName, drain)
	w.unlockArchive()
	if err := w.agent.Stop(time.Minute); err != nil {
		t.Errorf("agent did not stop cleanly on SIGTERM: %v", err)
	}
	w.transitions.close()
	probes := w.poller.Probes()
	checks, failures := w.poller.Stop()
	restarts := st.DynaliteRestarts(t)[dynaliteBefore:]
	for _, rs := range restarts {
		t.Logf("%7s dynalite exited (%s) and was restarted %s later", rs.Exited.Sub(w.start).Round(100*time.Millisecond),
			rs.Reason, rs.Started.Sub(rs.Exited).Round(time.Millisecond))
	}
	w.breakEnd(versions, byName)

	r := w.check(versions, byName)
	r.filesWritten, r.bytesWritten = len(versions), bytes
	if !drained {
		r.drainTimedOut = 1
	}
	r.urlChecks, r.urlProbes = checks, probes
	for _, f := range failures {
		switch c := w.cause(f); {
		case c == causeS3Down && w.duringS3Down(f.At, f.End):
			if r.urlExcusedS3++; r.urlExcusedS3 <= 5 {
				t.Logf("poller, excused (MinIO down): %s", f)
			}
		case c == causeLedgerDown && duringDynaliteRestart(restarts, f.At, f.End):
			if r.urlExcusedDynalite++; r.urlExcusedDynalite <= 20 {
				t.Logf("poller, excused (dynalite restart): %s", f)
			}
		default:
			if r.urlFailures++; r.urlFailures <= 20 {
				t.Logf("poller (%s): %s", c, f)
			}
		}
	}
	if s.Break[breakFlash] {
		w.flashReport(failures)
	}
	r.faults = w.injected
	for _, d := range w.s3Down {
		r.s3DownFor += d[1].Sub(d[0])
	}
	for _, k := range w.minioKills {
		r.uploadsStruck += len(k.open)
		if len(k.open) == 0 {
			r.killsStruckNone++
		}
	}
	// An upload resumed keeps at least the parts it held at its last kill;
	// what it did not keep was sent again.
	resumed := map[string]int64{} // upload id -> the most bytes a resume kept
	for _, line := range w.agentLogLines(resumingMsg) {
		var l struct {
			UploadID  string `json:"upload_id"`
			BytesHeld int64  `json:"bytes_held"`
		}
		if json.Unmarshal([]byte(line), &l) == nil {
			resumed[l.UploadID] = max(resumed[l.UploadID], l.BytesHeld)
			r.resumedBytes += l.BytesHeld
		}
	}
	r.killsMidUpload = w.killsMidUpload
	for id, held := range w.heldAtKill {
		r.heldAtKills += held
		r.resentAfterKills += max(0, held-resumed[id])
	}
	r.agentCrashes = w.crashes
	r.dynaliteRestarts = len(restarts)
	r.print(os.Stdout, s, time.Since(w.start))
	for _, bad := range r.bad() {
		t.Errorf("%s = %d; want 0", bad.name, bad.n)
	}
	if t.Failed() {
		// The test's folders go when it ends; the agent's and the
		// resolver's logs are the evidence, so they stay.
		for name, log := range map[string]string{"agent": w.agentLog, "resolver": w.resolverLog} {
			keep := filepath.Join(os.TempDir(), fmt.Sprintf("offload-soak-%d-%s.log", s.Seed, name))
			if b, err := os.ReadFile(log); err == nil && os.WriteFile(keep, b, 0o644) == nil {
				fmt.Printf("soak: the %s's log is kept in %s\n", name, keep)
			}
		}
	}
}

// world is everything one soak run starts.
type world struct {
	t        *testing.T
	st       *stacktest.Stack
	s        settings
	rng      *rand.Rand
	start    time.Time
	mapping  offload.Mapping
	watch    string
	archive  string
	quiet    time.Duration
	minio    *stacktest.MinIO
	s3       *s3.Client // straight to the private MinIO, for checks
	s3Proxy  *stacktest.Proxy
	dbProxy  *stacktest.Proxy
	webBase  string
	web      string // lighttpd's host:port
	resolver string // the resolver's host:port
	poller   *stacktest.Poller
	// transitions probes each file around the moment it leaves the
	// watch folder.
	transitions *transitions
	agentBin    string
	agentEnv    []string
	agentLog    string
	resolverLog string // says why the resolver answered 503
	agent       *stacktest.Process
	injected    map[faultKind]int
	crashes     int            // agent exits the soak did not cause
	s3Down      [][2]time.Time // when the private MinIO was down, for the poller
	locked      []string       // archive folders made unwritable
	// minioKills is what each MinIO kill struck.
	minioKills []minioKill
	// heldAtKill is the bytes of the parts S3 held at the last agent kill
	// that found the upload open, by upload id; killsMidUpload counts the
	// kills that found one.
	heldAtKill     map[string]int64
	killsMidUpload int
	// flashes are breakFlash's windows.
	flashes [][2]time.Time
	// hold is a folder outside the watch folder, on its file system, where
	// the breakages put files for a moment.
	hold string
	// phantoms are uploads MinIO lists by key but answers NoSuchUpload
	// for (see openUploads), by upload id.
	phantomsMu sync.Mutex
	phantoms   map[string]bool
}

func newWorld(t *testing.T, st *stacktest.Stack, s settings) *world {
	bin := stacktest.Build(t, "./agent/cmd/offload-agent", "./lambda/cmd/offload-resolver")
	dir := t.TempDir()
	w := &world{t: t, st: st, s: s, rng: rand.New(rand.NewPCG(s.Seed, 0xfa17)),
		mapping:     offload.Mapping{URLPrefix: "/static/", KeyPrefix: stacktest.Prefix(t)},
		watch:       filepath.Join(dir, "www", "static"),
		archive:     filepath.Join(dir, "archive"),
		hold:        filepath.Join(dir, "hold"),
		quiet:       time.Second,
		agentBin:    bin["offload-agent"],
		agentLog:    filepath.Join(dir, "agent.log"),
		resolverLog: filepath.Join(dir, "resolver.log"),
		injected:    map[faultKind]int{},
		phantoms:    map[string]bool{},
	}
	for _, d := range []string{w.watch, w.archive, w.hold} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(w.unlockArchive) // never leave an immutable folder behind

	w.minio = st.StartMinIO(t, soakBucket)
	w.s3 = st.S3At(t, w.minio.Endpoint)
	w.s3Proxy = st.Proxy(t, w.minio.Endpoint)
	w.dbProxy = st.Proxy(t, st.DynamoDBEndpoint)

	resolverAddr := stacktest.FreeAddr(t)
	// The agent and the resolver run with only what template.yaml grants
	// each (the checker's w.s3 is root).
	stacktest.Start(t, append(w.minio.Env(st, stacktest.Resolver), "AWS_ENDPOINT_URL_S3="+w.minio.Endpoint), w.resolverLog, bin["offload-resolver"],
		"--listen", resolverAddr, "--bucket", soakBucket, "--key-prefix", w.mapping.KeyPrefix, "--log-format", "text")
	stacktest.WaitListening(t, resolverAddr)
	webAddr := stacktest.FreeAddr(t)
	// No agent fills the hot cache here: an empty one.
	stacktest.StartWebServer(t, "lighttpd", filepath.Dir(w.watch), t.TempDir(), webAddr, "http://"+resolverAddr)
	w.webBase = "http://" + webAddr
	w.poller = stacktest.NewPoller(t, s.PollRate)
	t.Cleanup(func() { w.poller.Stop() })
	w.transitions = newTransitions(w.poller, w.watch)
	t.Cleanup(w.transitions.close)
	w.resolver, w.web = resolverAddr, webAddr
	if s.Break[breakFlash] {
		w.makeFlashFile()
	}

	// The agent sees S3 and DynamoDB only through the proxies. Calls are
	// bounded at 30 s so a blackholed connection costs half a minute, not
	// the default two.
	w.agentEnv = append(w.minio.Env(st, stacktest.Agent), "AWS_ENDPOINT_URL_S3="+w.s3Proxy.Endpoint, "AWS_ENDPOINT_URL_DYNAMODB="+w.dbProxy.Endpoint,
		"OFFLOAD_BUCKET="+soakBucket)
	w.startAgent()
	w.start = time.Now()
	return w
}

func (w *world) startAgent() {
	w.agent = stacktest.Start(w.t, w.agentEnv, w.agentLog, w.agentBin, "run",
		"--watch", w.watch, "--archive", w.archive, "--key-prefix", w.mapping.KeyPrefix,
		"--quiet", w.quiet.String(), "--rescan", "10s", "--call-timeout", "30s",
		"--host", agentHost, "--log-format", "json")
}

func (w *world) urlFor(rel string) string {
	key, err := w.mapping.KeyForFile(rel)
	if err != nil {
		w.t.Errorf("the writer wrote %q, which has no key: %v", rel, err)
		return w.webBase + "/"
	}
	u, _ := w.mapping.URLForKey(key)
	return w.webBase + u
}

// watchAgent restarts the agent if it died without being killed, and
// counts that as a crash.
func (w *world) watchAgent() {
	if w.agent.Exited() {
		w.crashes++
		w.t.Logf("agent exited on its own (a crash); restarting it")
		w.startAgent()
	}
}

// sleepUntil waits for a moment of the schedule, watching the agent.
func (w *world) sleepUntil(at time.Time) {
	for time.Now().Before(at) {
		w.watchAgent()
		time.Sleep(min(time.Until(at), 500*time.Millisecond))
	}
}

// publish starts polling a version the writer finished, and probing its
// name around its transitions.
func (w *world) publish(v version) {
	u := w.urlFor(v.Rel)
	w.poller.AddContent(u, stacktest.Content{Sum: v.Sum, Head: v.Head})
	w.transitions.follow(v.Rel, u)
}

// s3Excuse is how long after the private MinIO is ready again a request to
// it may still fail: a request sent just before it was killed ends when its
// connection does.
const s3Excuse = 2 * time.Second

// duringS3Down reports whether a poller request that ran from start to end
// overlapped a window where the private MinIO, which serves the redirected
// downloads, was down (or had been up for less than s3Excuse).
func (w *world) duringS3Down(start, end time.Time) bool {
	for _, d := range w.s3Down {
		if end.After(d[0]) && start.Before(d[1].Add(s3Excuse)) {
			return true
		}
	}
	return false
}

// failureCause is who failed a poller request, as far as its answer tells.
type failureCause string

const (
	// causeS3Down: MinIO could not be reached, cut the body, or answered
	// 5xx. Excused only while it was down (duringS3Down).
	causeS3Down failureCause = "S3 unreachable"
	// causeLedgerDown: the resolver answered 503, which it does when the
	// ledger does not answer. Excused only while dynalite restarted.
	causeLedgerDown failureCause = "resolver 503"
	// causeOther is every other failure: a 404 (no file and no ledger
	// item), wrong bytes, a 403 from S3... Never excused.
	causeOther failureCause = "never excused"
)

// cause tells who failed f: which server gave the last answer, or could not
// be reached, and how.
func (w *world) cause(f stacktest.PollFailure) failureCause {
	u, err := url.Parse(f.From)
	if err != nil {
		return causeOther
	}
	switch {
	case "http://"+u.Host == w.minio.Endpoint && (f.Status == 0 || f.Cut || f.Status >= 500):
		return causeS3Down
	case u.Host == w.resolver && f.Status == http.StatusServiceUnavailable:
		return causeLedgerDown
	}
	return causeOther
}

// dynaliteExcuse is how long after dynalite's supervisor started it again
// a poller request may still fail: node needs up to a second to listen, and
// the resolver, which reads the ledger from the stack's dynalite directly,
// gives up on a look-up after 2 s (lambda's ledgerTimeout) with a 503.
const dynaliteExcuse = 3 * time.Second

// duringDynaliteRestart reports whether a poller request that ran from start
// to end overlapped one of dynalite's restarts: from its exit until
// dynaliteExcuse after it was started again.
func duringDynaliteRestart(restarts []stacktest.DynaliteRestart, start, end time.Time) bool {
	for _, r := range restarts {
		if end.After(r.Exited) && start.Before(r.Started.Add(dynaliteExcuse)) {
			return true
		}
	}
	return false
}

// locate finds the folders of the archive, for making them unwritable.
func (w *world) archiveFolders() []string {
	var dirs []string
	filepath.WalkDir(w.archive, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	return dirs
}

// lockArchive makes the archive refuse new entries: chattr +i as root
// (root ignores permission bits), chmod 0555 otherwise.
func (w *world) lockArchive() {
	w.locked = w.archiveFolders()
	for _, d := range w.locked {
		var err error
		if os.Geteuid() == 0 {
			err = exec.Command("chattr", "+i", d).Run()
		} else {
			err = os.Chmod(d, 0o555)
		}
		if err != nil {
			w.t.Fatalf("make %s unwritable: %v", d, err)
		}
	}
}

func (w *world) unlockArchive() {
	for _, d := range w.locked {
		if os.Geteuid() == 0 {
			if out, err := exec.Command("chattr", "-i", d).CombinedOutput(); err != nil {
				w.t.Errorf("chattr -i %s: %v %s", d, err, out)
			}
		} else {
			os.Chmod(d, 0o755)
		}
	}
	w.locked = nil
}

// agentLogLines returns the agent's JSON log lines with the given message.
func (w *world) agentLogLines(msg string) []string {
	b, _ := os.ReadFile(w.agentLog)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, `"msg":"`+msg+`"`) {
			out = append(out, line)
		}
	}
	return out
}
