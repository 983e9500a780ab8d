package stacktest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"
)

// Poller requests every URL it is given in a loop, as a browser would
// (following redirects), and records every answer that is not one of the
// URL's known contents. Probe adds single cheap requests in between, for a
// caller that knows when a URL is about to change how it is served.
type Poller struct {
	rate     int64 // bytes per second the loop may read; 0 is no limit
	client   *http.Client
	mu       sync.Mutex
	urls     map[string][]Content
	order    []string
	failures []PollFailure
	checks   int64
	probes   int64
	cancel   context.CancelFunc
	ctx      context.Context
	done     chan struct{}
	once     sync.Once
}

// HeadBytes is how much of a URL's content a Probe reads: a range request
// for the first HeadBytes, so that probing often costs little.
const HeadBytes = 64 << 10

// Content is one set of bytes a URL may answer with: the SHA-256 of all of
// it, and of its first HeadBytes (all of it when shorter).
type Content struct {
	Sum, Head [32]byte
}

// ContentOf returns data's Content.
func ContentOf(data []byte) Content {
	return Content{Sum: sha256.Sum256(data), Head: sha256.Sum256(data[:min(len(data), HeadBytes)])}
}

// PollFailure is one wrong answer to a request made At and failed by End.
// From is the URL of the hop that gave the wrong answer or could not be
// reached (the last one, after redirects), and Status its HTTP status, 0
// when there was no answer. Together they say who failed, so that a failure
// can be excused by its cause rather than by when it happened.
type PollFailure struct {
	At, End time.Time
	URL     string
	From    string
	Status  int
	Cut     bool // the answer began but its body ended early
	Reason  string
	Probe   bool // a Probe's, not the loop's
}

func (f PollFailure) String() string {
	from := ""
	if f.From != "" && f.From != f.URL {
		from = " (from " + f.From + ")"
	}
	return f.At.Format("15:04:05.000") + " GET " + f.URL + from + ": " + f.Reason
}

// NewPoller starts polling with the test's HTTPClient; Stop ends it. A
// rate above zero bounds the bytes per second the loop reads, so that it
// does not starve what it watches.
func NewPoller(t testing.TB, rate int64) *Poller {
	t.Helper()
	client := HTTPClient(t)
	client.Timeout = 30 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	p := &Poller{rate: rate, urls: map[string][]Content{}, ctx: ctx, cancel: cancel, done: make(chan struct{}), client: client}
	go p.loop(ctx)
	return p
}

func (p *Poller) loop(ctx context.Context) {
	defer close(p.done)
	for ctx.Err() == nil {
		p.mu.Lock()
		urls := append([]string(nil), p.order...)
		p.mu.Unlock()
		for _, u := range urls {
			n, ok := p.get(ctx, u, false)
			if ctx.Err() != nil {
				return
			}
			if ok && p.rate > 0 {
				time.Sleep(time.Duration(n) * time.Second / time.Duration(p.rate))
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Probe requests the first HeadBytes of url once, now, and records the
// answer as the loop does. It returns false after Stop.
func (p *Poller) Probe(url string) bool {
	if p.ctx.Err() != nil {
		return false
	}
	p.get(p.ctx, url, true)
	return p.ctx.Err() == nil
}

// get requests url (its head only for a probe), checks the answer and
// records it; it returns the bytes read and whether the answer counts (it
// does not when ctx ended meanwhile).
func (p *Poller) get(ctx context.Context, u string, probe bool) (int64, bool) {
	at := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if probe {
		req.Header.Set("Range", fmt.Sprintf("bytes=0-%d", HeadBytes-1))
	}
	resp, err := p.client.Do(req)
	if ctx.Err() != nil {
		return 0, false
	}
	if err != nil {
		from := u
		var ue *url.Error
		if errors.As(err, &ue) {
			from = ue.URL // the hop that failed
		}
		p.fail(PollFailure{At: at, URL: u, From: from, Reason: err.Error(), Probe: probe})
		return 0, true
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if ctx.Err() != nil {
		return n, false // stopped in the middle of a body: not an answer
	}
	f := PollFailure{At: at, URL: u, From: resp.Request.URL.String(), Status: resp.StatusCode, Probe: probe}
	sum := [32]byte(h.Sum(nil))
	switch {
	case err != nil:
		f.Cut, f.Reason = true, fmt.Sprintf("%s, body cut after %d bytes: %v", resp.Status, n, err)
	case resp.StatusCode != http.StatusOK && !(probe && resp.StatusCode == http.StatusPartialContent):
		f.Reason = resp.Status
	case !p.known(u, sum, resp.StatusCode == http.StatusPartialContent):
		f.Reason = fmt.Sprintf("%s with %d bytes that are none of its known contents", resp.Status, n)
	default:
		p.mu.Lock()
		p.checks++
		if probe {
			p.probes++
		}
		p.mu.Unlock()
		return n, true
	}
	p.fail(f)
	return n, true
}

// Add starts polling url, or adds a content it may now answer with (a
// second version of the same name, say).
func (p *Poller) Add(url string, data []byte) { p.AddContent(url, ContentOf(data)) }

// AddContent is Add with the content's hashes.
func (p *Poller) AddContent(url string, c Content) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.urls[url]; !ok {
		p.order = append(p.order, url)
	}
	p.urls[url] = append(p.urls[url], c)
}

// known reports whether sum is one of url's contents, or of their heads
// for a partial answer.
func (p *Poller) known(url string, sum [32]byte, partial bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.urls[url] {
		if c.Sum == sum || partial && c.Head == sum {
			return true
		}
	}
	return false
}

func (p *Poller) fail(f PollFailure) {
	f.End = time.Now()
	p.mu.Lock()
	p.checks++
	if f.Probe {
		p.probes++
	}
	p.failures = append(p.failures, f)
	p.mu.Unlock()
	// A refused connection fails in microseconds; a browser would not
	// hammer, and neither does the poller.
	time.Sleep(50 * time.Millisecond)
}

// Stop ends polling and returns how many answers it checked and the wrong
// ones among them. Probes are counted in both.
func (p *Poller) Stop() (int64, []PollFailure) {
	p.once.Do(func() { p.cancel(); <-p.done })
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.checks, p.failures
}

// Probes returns how many of the checked answers were Probes'.
func (p *Poller) Probes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.probes
}
