package soak

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"
)

// The knobs. "make test" runs the short profile; "make soak" the full one,
// and any flag given on top overrides the profile.
var (
	profileFlag  = flag.String("soak.profile", "short", "short (a minute or two, in make test) or full (make soak)")
	seedFlag     = flag.Uint64("soak.seed", 0, "seed of the sizes, contents and fault schedule; 0 picks one (it is printed)")
	filesFlag    = flag.Int("soak.files", 0, "files the writer drops (profile default when 0)")
	killsFlag    = flag.Int("soak.kills", 0, "kill -9 and restart of the agent (profile default when 0)")
	outageFlag   = flag.Duration("soak.outage", 0, "length of the full S3 and DynamoDB outages (profile default when 0)")
	maxSizeFlag  = flag.Int64("soak.max-size", 0, "largest file in bytes; sizes are log-uniform from 1 KiB (profile default when 0)")
	durationFlag = flag.Duration("soak.duration", 0, "time the writer spreads the files over (profile default when 0)")
	breakFlag    = flag.String("soak.break", "", "comma-separated breakages to show that the checks fire (see breakages), or all; the run must then fail")
)

// settings is one soak run's size.
type settings struct {
	Files            int
	Kills            int
	Outage           time.Duration
	MinSize, MaxSize int64
	Duration         time.Duration // the writer's time; faults happen within it
	Drain            time.Duration // how long the agent gets to finish after faults stop
	PollRate         int64         // bytes per second the poller may read, so it does not starve the agent
	Seed             uint64
	Break            map[breakage]bool
}

var profiles = map[string]settings{
	"short": {Files: 100, Kills: 3, Outage: 5 * time.Second, MinSize: 1 << 10, MaxSize: 16 << 20,
		Duration: 30 * time.Second, Drain: 3 * time.Minute, PollRate: 16 << 20},
	"full": {Files: 2000, Kills: 20, Outage: 60 * time.Second, MinSize: 1 << 10, MaxSize: 64 << 20,
		Duration: 12 * time.Minute, Drain: 15 * time.Minute, PollRate: 32 << 20},
}

func loadSettings() (settings, error) {
	s, ok := profiles[*profileFlag]
	if !ok {
		return s, fmt.Errorf("-soak.profile %q: want short or full", *profileFlag)
	}
	if *filesFlag > 0 {
		s.Files = *filesFlag
	}
	if *killsFlag > 0 {
		s.Kills = *killsFlag
	}
	if *outageFlag > 0 {
		s.Outage = *outageFlag
	}
	if *maxSizeFlag > 0 {
		s.MaxSize = max(*maxSizeFlag, s.MinSize)
	}
	if *durationFlag > 0 {
		s.Duration = *durationFlag
	}
	s.Seed = *seedFlag
	if s.Seed == 0 {
		s.Seed = rand.Uint64()
	}
	if *breakFlag != "" {
		s.Break = map[breakage]bool{}
		for _, b := range strings.Split(*breakFlag, ",") {
			switch b := breakage(strings.TrimSpace(b)); {
			case b == "all":
				for _, k := range breakages {
					s.Break[k] = true
				}
			case slices.Contains(breakages, b):
				s.Break[b] = true
			default:
				return s, fmt.Errorf("-soak.break %q: want all or some of %v", b, breakages)
			}
		}
	}
	return s, nil
}

// breakage is one way -soak.break makes a check fire: each breaks the
// outcome the check guards, once, with the real components, so a run with
// it must fail on that check.
type breakage string

const (
	breakFlash    breakage = "flash"    // a served file leaves the watch folder for flashFor (1.2 s) with no ledger item, 4 times (one inside the MinIO restart): URL failures
	breakDrain    breakage = "drain"    // the archive is locked through the drain and an archived original is put back: drain timed out
	breakOrphan   breakage = "orphan"   // an upload for an offloaded key, then a MinIO restart: orphaned multipart uploads
	breakLedger   breakage = "ledger"   // four ledger items get a wrong checksum, size, path or host: ledger items that disagree with what was written
	breakS3Only   breakage = "s3only"   // an archived original is deleted while its object stays: in S3 only
	breakConflict breakage = "conflict" // the agent's log names another file in one conflict: conflict names differ
)

var breakages = []breakage{breakFlash, breakDrain, breakOrphan, breakLedger, breakS3Only, breakConflict}

// How a file arrives in the watch folder.
type writeKind int

const (
	writeRename writeKind = iota // temp name, then rename: what most back-ends do
	writeSlow                    // in place, in chunks with pauses longer than the quiet period, held open
	writeReuse                   // new bytes under the name of a file already offloaded: a conflict to detect
)

func (k writeKind) String() string { return [...]string{"rename", "slow", "reuse"}[k] }

// fileSpec is one file the writer will write; its bytes follow from the
// seed and its index.
type fileSpec struct {
	Index int
	Size  int64
	Kind  writeKind
	Name  string // for writeReuse, chosen at write time among offloaded names
}

// faultKind names a fault in the report.
type faultKind string

const (
	faultKill          faultKind = "agent kill -9 + restart"
	faultS3Outage      faultKind = "S3 outage"
	faultDBOutage      faultKind = "DynamoDB outage"
	faultS3Reset       faultKind = "S3 connection resets"
	faultDBReset       faultKind = "DynamoDB connection resets"
	faultS3Latency     faultKind = "S3 latency"
	faultDBLatency     faultKind = "DynamoDB latency"
	faultS3Timeout     faultKind = "S3 timeouts (blackhole)"
	faultDBTimeout     faultKind = "DynamoDB timeouts (blackhole)"
	faultMinIORestart  faultKind = "MinIO killed and restarted"
	faultArchiveLocked faultKind = "archive folder unwritable"
	faultFlash         faultKind = "flash (a -soak.break, not a fault)"
)

// faultKinds is every kind, in the report's order.
var faultKinds = []faultKind{faultKill, faultS3Outage, faultDBOutage, faultS3Reset, faultDBReset, faultS3Latency,
	faultDBLatency, faultS3Timeout, faultDBTimeout, faultMinIORestart, faultArchiveLocked}

// fault is one scheduled fault: it starts At after the writer starts and
// lasts For (zero for an instant fault such as a kill).
type fault struct {
	Kind faultKind
	At   time.Duration
	For  time.Duration
}

// makePlan draws the files and the fault schedule from the seed.
func makePlan(s settings) ([]fileSpec, []fault) {
	rng := rand.New(rand.NewPCG(s.Seed, 0x50a4))
	files := make([]fileSpec, s.Files)
	for i := range files {
		// Log-uniform: as many 1–32 KiB files as 2–64 MiB ones, like a
		// photo site's mix of thumbnails-sized uploads and camera originals.
		lo, hi := math.Log(float64(s.MinSize)), math.Log(float64(s.MaxSize))
		size := int64(math.Exp(lo + rng.Float64()*(hi-lo)))
		kind := writeRename
		switch r := rng.Float64(); {
		case i > s.Files/5 && r < 0.03:
			kind = writeReuse
		case r < 0.08:
			kind = writeSlow
		}
		files[i] = fileSpec{Index: i, Size: size, Kind: kind}
		if kind != writeReuse {
			files[i].Name = fmt.Sprintf("%02d/IMG_%05d%s.jpg", rng.IntN(20), i, []string{"", "", "", " copy", " (été)"}[rng.IntN(5)])
		}
	}

	d := s.Duration
	at := func(from, to float64) time.Duration {
		return time.Duration(from*float64(d) + rng.Float64()*(to-from)*float64(d))
	}
	window := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo)+1)) }
	var faults []fault
	for range s.Kills {
		faults = append(faults, fault{Kind: faultKill, At: at(0.05, 0.95)})
	}
	// One full outage of each service, in different thirds of the run.
	faults = append(faults,
		fault{Kind: faultS3Outage, At: at(0.1, 0.3), For: s.Outage},
		fault{Kind: faultDBOutage, At: at(0.45, 0.6), For: s.Outage},
		fault{Kind: faultMinIORestart, At: at(0.35, 0.45)},
		fault{Kind: faultArchiveLocked, At: at(0.6, 0.8), For: window(d/20, d/10)},
	)
	short := func() time.Duration { return window(d/100+time.Second, d/40+2*time.Second) }
	for _, k := range []faultKind{faultS3Reset, faultDBReset, faultS3Latency, faultDBLatency, faultS3Timeout, faultDBTimeout} {
		for range max(1, s.Kills/5) {
			faults = append(faults, fault{Kind: k, At: at(0.05, 0.95), For: short()})
		}
	}
	sort.SliceStable(faults, func(i, j int) bool { return faults[i].At < faults[j].At })
	return files, faults
}
