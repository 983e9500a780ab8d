package soak

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

// version is one set of bytes written under a name.
type version struct {
	Rel       string
	Spec      fileSpec
	Sum       [32]byte
	Head      [32]byte // SHA-256 of the first stacktest.HeadBytes, for the poller's probes
	CRC64NVME string   // as S3 and the ledger encode it
}

// writer plays the site's back-end: it drops the planned files into the
// watch folder over the run and remembers every version it wrote.
type writer struct {
	watch, archive string
	seed           uint64
	quiet          time.Duration
	published      func(v version) // a version is complete and may be served

	mu       sync.Mutex
	versions []version
	byName   map[string][]int // indexes into versions, oldest first
	bytes    int64
	errs     []error
}

// content is the bytes of file index: a stream drawn from the seed, so a
// replay writes the same bytes and nothing needs to be kept in memory.
func content(seed uint64, index int, size int64) io.Reader {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	binary.LittleEndian.PutUint64(key[8:], uint64(index))
	return io.LimitReader(rand.NewChaCha8(key), size)
}

// run writes the files, spread evenly over spread, and returns when every
// one is written (slow ones included) or ctx ends.
func (w *writer) run(ctx context.Context, files []fileSpec, spread time.Duration) {
	rng := rand.New(rand.NewPCG(w.seed, 0x3717e))
	start := time.Now()
	var slow sync.WaitGroup
	defer slow.Wait()
	for i, f := range files {
		due := start.Add(spread * time.Duration(i) / time.Duration(len(files)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(due)):
		}
		if f.Kind == writeReuse {
			if f.Name = w.offloadedName(rng); f.Name == "" {
				// Nothing offloaded yet to reuse: a plain new file instead.
				f.Kind, f.Name = writeRename, fmt.Sprintf("00/IMG_%05d.jpg", f.Index)
			}
		}
		if f.Kind == writeSlow {
			slow.Add(1)
			go func() { defer slow.Done(); w.write(ctx, f) }()
			continue
		}
		w.write(ctx, f)
	}
}

// offloadedName picks a name whose only version is already in the archive,
// so that new bytes under it are a conflict and not a replacement.
func (w *writer) offloadedName(rng *rand.Rand) string {
	w.mu.Lock()
	var candidates []string
	for name, vs := range w.byName {
		if len(vs) == 1 {
			candidates = append(candidates, name)
		}
	}
	w.mu.Unlock()
	rng.Shuffle(len(candidates), func(i, j int) { candidates[i], candidates[j] = candidates[j], candidates[i] })
	for _, name := range candidates {
		if _, err := os.Lstat(filepath.Join(w.archive, filepath.FromSlash(name))); err == nil {
			return name
		}
	}
	return ""
}

func (w *writer) write(ctx context.Context, f fileSpec) {
	dst := filepath.Join(w.watch, filepath.FromSlash(f.Name))
	v, err := w.writeFile(ctx, dst, f)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.errs = append(w.errs, fmt.Errorf("write %s (%s): %w", f.Name, f.Kind, err))
		return
	}
	if w.byName == nil {
		w.byName = map[string][]int{}
	}
	w.byName[f.Name] = append(w.byName[f.Name], len(w.versions))
	w.versions = append(w.versions, v)
	w.bytes += f.Size
	if f.Kind != writeReuse { // published before its rename, see writeFile
		w.published(v)
	}
}

// hashes are what the checks need of a version's bytes, computed as they
// are written.
type hashes struct {
	sum, head hash.Hash
	crc       hash.Hash64
	n         int64
}

func newHashes() *hashes {
	return &hashes{sum: sha256.New(), head: sha256.New(), crc: offload.NewCRC64NVME()}
}

func (h *hashes) Write(b []byte) (int, error) {
	h.sum.Write(b)
	h.crc.Write(b)
	if h.n < stacktest.HeadBytes {
		h.head.Write(b[:min(int64(len(b)), stacktest.HeadBytes-h.n)])
	}
	h.n += int64(len(b))
	return len(b), nil
}

func (h *hashes) version(f fileSpec) version {
	return version{Rel: f.Name, Spec: f, Sum: [32]byte(h.sum.Sum(nil)), Head: [32]byte(h.head.Sum(nil)),
		CRC64NVME: offload.EncodeChecksum(h.crc.Sum64())}
}

func (w *writer) writeFile(ctx context.Context, dst string, f fileSpec) (version, error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return version{}, err
	}
	h := newHashes()
	src := io.TeeReader(content(w.seed, f.Index, f.Size), h)
	if f.Kind == writeSlow {
		// In place, never renamed, held open across pauses longer than the
		// quiet period: only the open-for-writing check stops an upload of
		// half a file.
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return version{}, err
		}
		const chunks = 4
		for c := range chunks {
			n := f.Size / chunks
			if c == chunks-1 {
				n = f.Size - 3*(f.Size/chunks)
			}
			if _, err := io.CopyN(out, src, n); err != nil {
				out.Close()
				return version{}, err
			}
			if c < chunks-1 {
				select {
				case <-ctx.Done():
				case <-time.After(w.quiet * 3 / 2):
				}
			}
		}
		return h.version(f), out.Close()
	}
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return version{}, err
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		return version{}, err
	}
	if err := out.Close(); err != nil {
		return version{}, err
	}
	v := h.version(f)
	if f.Kind == writeReuse {
		// The name is served already, so the poller must know the new
		// bytes from the moment they can appear under it.
		w.published(v)
	} else if _, err := os.Lstat(dst); !errors.Is(err, os.ErrNotExist) {
		return version{}, fmt.Errorf("%s already exists: the plan never reuses a name by accident", dst)
	}
	return v, os.Rename(tmp, dst)
}

// snapshot returns what was written so far.
func (w *writer) snapshot() (versions []version, byName map[string][]int, bytes int64, errs []error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	byName = make(map[string][]int, len(w.byName))
	for k, v := range w.byName {
		byName[k] = append([]int(nil), v...)
	}
	return append([]version(nil), w.versions...), byName, w.bytes, append([]error(nil), w.errs...)
}
